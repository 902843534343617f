/**
 * @module auth
 * Builds client authentication from the `auth` config: accounts (htpasswd), robot tokens (in the
 * metadata database), accounts named by client certificates, access rules, the token signer and
 * the failed-attempt limiter.
 */
import type { Config } from '../config/schema.ts';
import type { RobotTokenQueries } from '../cache/metadata/robot-token-queries.ts';
import type { Logger } from '../util/logger.ts';
import { Authenticator } from './authenticator.ts';
import { CertificateAccounts } from './certificate-accounts.ts';
import { FailureLimiter } from './failure-limiter.ts';
import { HtpasswdAccounts } from './htpasswd.ts';
import { RobotTokens } from './robot-tokens.ts';
import { AccessRules } from './rules.ts';
import { loadTokenKey, TokenService } from './token-service.ts';

export interface ClientAuthParts {
  authenticator: Authenticator;
  robots: RobotTokens;
  close(): void;
}

export function createClientAuth(config: NonNullable<Config['auth']>, dataDir: string, rows: RobotTokenQueries, log: Logger, now: () => number): ClientAuthParts {
  const accounts = config.htpasswd === undefined ? undefined : new HtpasswdAccounts(config.htpasswd, log);
  const robots = new RobotTokens(rows, now);
  const tokens = new TokenService({ key: loadTokenKey(config.tokenKey, dataDir), service: config.service, ttlMs: config.tokenTTL, now });
  const authenticator = new Authenticator({
    accounts,
    certificates: new CertificateAccounts(config.certificates),
    robots,
    tokens,
    rules: new AccessRules(config.rules, config.groups),
    anonymous: config.anonymous,
    limiter: new FailureLimiter({ now }),
    log,
    now,
  });
  return { authenticator, robots, close: () => accounts?.close() };
}
