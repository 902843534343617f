/**
 * @module util/basic-auth
 * The `Basic` credentials header (RFC 7617: base64 of `user:password` in UTF-8), built in one place for the
 * upstream client, the egress proxy and the token route that turns a password grant into it.
 */
export function basicAuthorization(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
}
