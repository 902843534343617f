/**
 * @module bench/auth-mirror
 * An ocimirror with client accounts on, for the manifest-by-tag phase: one htpasswd account (bcrypt cost 10,
 * as `htpasswd -B` is usually run, so a credential verified per request instead of once would show in the
 * rate) allowed to pull everything, nothing for anonymous clients. Its own data dir; `small:latest` is pulled
 * once with the credentials so the tag is cached before wrk, and a bearer token is fetched once from
 * /auth/token for the token variant.
 */
import { join } from 'node:path';
import { MANIFEST_ACCEPT } from '../test/helpers/images.ts';
import { startOcimirror, type OcimirrorProc } from './ocimirror.ts';
import { mustRun, type Cleanup } from './proc.ts';

const USER = 'bench';
const PASSWORD = 'bench-password-not-secret';
const SERVICE = 'ocimirror-bench';

export interface AuthMirror {
  om: OcimirrorProc;
  /** `Basic …` for the account. */
  basic: string;
  /** `Bearer …` from /auth/token, fetched once with the Basic credentials. */
  bearer: string;
}

export async function startAuthMirror(o: { upstreamUrl: string; workDir: string; nodeArgs?: string[]; manifestPath: string }, cleanup: Cleanup): Promise<AuthMirror> {
  const htpasswd = join(o.workDir, 'htpasswd');
  await mustRun('htpasswd', ['-Bbc', '-C', '10', htpasswd, USER, PASSWORD], { timeoutMs: 30_000 });
  const om = await startOcimirror({
    name: 'ocimirror-auth',
    upstreamUrl: o.upstreamUrl,
    dataDir: join(o.workDir, 'ocimirror-auth-data'),
    workDir: o.workDir,
    nodeArgs: o.nodeArgs,
    // A token outlives the warm-up and the measured run, so no run re-fetches one.
    auth: { htpasswd, anonymous: 'none', rules: [{ accounts: [USER], repositories: ['**'], roles: ['pull'] }], tokenTTL: '1h', service: SERVICE },
  }, cleanup);
  const basic = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;
  const primed = await fetch(om.url + o.manifestPath, { headers: { Accept: MANIFEST_ACCEPT, Authorization: basic } });
  await primed.arrayBuffer();
  if (!primed.ok) throw new Error(`priming ${o.manifestPath} on the auth mirror: HTTP ${primed.status}`);
  const tokenRes = await fetch(`${om.url}/auth/token?service=${SERVICE}&scope=repository:small:pull`, { headers: { Authorization: basic } });
  if (!tokenRes.ok) throw new Error(`/auth/token on the auth mirror: HTTP ${tokenRes.status} ${await tokenRes.text()}`);
  const { token } = (await tokenRes.json()) as { token: string };
  return { om, basic, bearer: `Bearer ${token}` };
}
