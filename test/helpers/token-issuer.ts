/**
 * @module test/helpers/token-issuer
 * A token server for docker-registry's `auth: token` mode (Debian ships none), following the Docker
 * token authentication spec: `GET /token?service=…&scope=…` with optional Basic credentials answers
 * `{ token, access_token, expires_in, issued_at }` holding an RS256 JWT.
 *
 * distribution 2.8 verifies the JWT's `x5c` header chain against `rootcertbundle`, so the issuer makes a
 * self-signed certificate with the openssl CLI and puts that same certificate in both places.
 *
 * Credentials: right ones get every action asked for; wrong ones get 401. Anonymous callers get a token
 * like Docker Hub gives for public repositories: with `anonymousPull` it grants `pull` only, otherwise it
 * grants nothing, and the registry then answers 401 `insufficient_scope` to the request the token is for.
 */
import { execFile } from 'node:child_process';
import { createPrivateKey, createSign, randomUUID, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

export interface TokenIssuerOptions {
  username?: string;
  password?: string;
  service?: string;
  issuer?: string;
  /** Token lifetime in seconds. */
  expiresIn?: number;
  /** Grant `pull` to anonymous callers (default: anonymous tokens grant nothing). */
  anonymousPull?: boolean;
}

export interface TokenIssuer {
  /** The `realm` for docker-registry's config and WWW-Authenticate challenges: `http://127.0.0.1:<port>/token`. */
  realm: string;
  service: string;
  issuer: string;
  /** PEM certificate to use as docker-registry's `rootcertbundle`. */
  certFile: string;
  /** Requests the issuer has answered (any outcome), so tests can prove a client caches tokens. */
  readonly requests: number;
  stop(): Promise<void>;
}

interface Access { type: string; name: string; actions: string[] }

const b64url = (data: Buffer | string) => Buffer.from(data).toString('base64url');

/** `repository:library/alpine:pull,push` → access entry. Scopes may repeat or be space-separated (spec). */
function parseScopes(scopes: string[]): Access[] {
  return scopes.flatMap((s) => s.split(' ')).filter(Boolean).map((s) => {
    const first = s.indexOf(':');
    const last = s.lastIndexOf(':');
    return { type: s.slice(0, first), name: s.slice(first + 1, last), actions: s.slice(last + 1).split(',') };
  });
}

function signJwt(key: KeyObject, certDer: Buffer, claims: object): string {
  const header = b64url(JSON.stringify({ typ: 'JWT', alg: 'RS256', x5c: [certDer.toString('base64')] }));
  const payload = `${header}.${b64url(JSON.stringify(claims))}`;
  return `${payload}.${createSign('sha256').update(payload).sign(key).toString('base64url')}`;
}

export async function startTokenIssuer(opts: TokenIssuerOptions = {}): Promise<TokenIssuer> {
  const {
    username = 'ocimirror',
    password = 'ocimirror-pass',
    service = 'ocimirror-test-registry',
    issuer = 'ocimirror-test-issuer',
    expiresIn = 300,
    anonymousPull = false,
  } = opts;
  const dir = await mkdtemp(join(tmpdir(), 'ocimirror-token-'));
  const keyFile = join(dir, 'key.pem');
  const certFile = join(dir, 'cert.pem');
  await promisify(execFile)('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=ocimirror-test-token-issuer',
    '-keyout', keyFile, '-out', certFile,
  ], { timeout: 20_000 });
  const key = createPrivateKey(await readFile(keyFile));
  const certDer = new X509Certificate(await readFile(certFile)).raw;
  let requests = 0;

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    requests++;
    const url = new URL(req.url ?? '/', 'http://localhost');
    const send = (status: number, body: object, headers: Record<string, string> = {}) =>
      res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
    if (req.method !== 'GET' || url.pathname !== '/token') return send(404, { details: 'not found' });

    const auth = req.headers.authorization;
    let subject = '';
    if (auth) {
      const [user, pass] = Buffer.from(auth.replace(/^Basic /i, ''), 'base64').toString().split(/:(.*)/s);
      if (!/^Basic /i.test(auth) || user !== username || pass !== password) {
        return send(401, { details: 'invalid credentials' }, { 'www-authenticate': 'Basic realm="ocimirror-test-issuer"' });
      }
      subject = user;
    }
    const access = parseScopes(url.searchParams.getAll('scope'))
      .map((a) => (subject ? a : { ...a, actions: anonymousPull ? a.actions.filter((x) => x === 'pull') : [] }))
      .filter((a) => a.actions.length > 0);
    const now = Math.floor(Date.now() / 1000);
    const token = signJwt(key, certDer, {
      iss: issuer, sub: subject, aud: service, exp: now + expiresIn, nbf: now, iat: now, jti: randomUUID(), access,
    });
    send(200, { token, access_token: token, expires_in: expiresIn, issued_at: new Date(now * 1000).toISOString() });
  };

  const server = createServer(handle);
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    certFile,
    get requests() {
      return requests;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
