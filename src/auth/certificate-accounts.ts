/**
 * @module auth/certificate-accounts
 * Which account a client certificate names (mutual TLS with `tls.clientCA`): the first entry of
 * `auth.certificates` whose `cn` pattern (`*` any run of characters) matches the subject CN, as
 * that entry's `account`, or as the CN itself when the entry names none. The default list,
 * `[{ cn: '*' }]`, makes the CN the account name; an empty list turns certificate accounts off.
 */

export interface CertificateMapping {
  readonly cn: string;
  readonly account?: string | undefined;
}

export const DEFAULT_CERTIFICATE_MAPPINGS: readonly CertificateMapping[] = [{ cn: '*' }];

function compileCnPattern(pattern: string): RegExp {
  const parts = pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\/]/g, '\\$&'));
  return new RegExp(`^${parts.join('.*')}$`, 's');
}

export class CertificateAccounts {
  readonly #entries: Array<{ re: RegExp; account: string | undefined }>;

  constructor(mappings: readonly CertificateMapping[] = DEFAULT_CERTIFICATE_MAPPINGS) {
    this.#entries = mappings.map((m) => ({ re: compileCnPattern(m.cn), account: m.account }));
  }

  /** The account `cn` names, or undefined when no entry matches (or the certificate has no CN). */
  accountFor(cn: string | undefined): string | undefined {
    if (cn === undefined || cn === '') return undefined;
    for (const { re, account } of this.#entries) if (re.test(cn)) return account ?? cn;
    return undefined;
  }
}
