/**
 * @module http/log-path
 * The request target as the access log writes it: the path, and of the query only what routes or
 * pages a request (`ns`, `n`, `last`, `digest`, `artifactType`). Any other value is replaced, since
 * clients and scripts do put tokens in query strings; a parameter without `=` is all value.
 */

const KEPT = new Set(['ns', 'n', 'last', 'digest', 'artifactType']);
const REDACTED = 'REDACTED';

export function logPath(url: string | undefined): string | undefined {
  const q = url?.indexOf('?') ?? -1;
  if (url === undefined || q === -1) return url;
  const params = url.slice(q + 1).split('&');
  for (let i = 0; i < params.length; i++) {
    const param = params[i] as string;
    const eq = param.indexOf('=');
    if (eq === -1) {
      if (param !== '') params[i] = REDACTED;
    } else if (!KEPT.has(param.slice(0, eq))) {
      params[i] = `${param.slice(0, eq)}=${REDACTED}`;
    }
  }
  return `${url.slice(0, q)}?${params.join('&')}`;
}
