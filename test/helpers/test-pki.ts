/**
 * @module test/helpers/test-pki
 * A throwaway CA and the certificates it signs, made with openssl in a directory the caller owns and
 * removes: `ca.crt` and `ca.key`, then `<name>.crt` and `<name>.key` per certificate. Every key is P-256
 * ECDSA and every certificate lasts two days, so nothing a test or a benchmark run makes outlives it.
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

/** The extension of a server certificate for a listener on loopback, by address or by name. */
export const LOOPBACK_SERVER_EXT = 'subjectAltName=IP:127.0.0.1,DNS:localhost';

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

export interface IssuedCert {
  cert: string;
  key: string;
}

export interface TestCa {
  /** PEM of the CA certificate, for clients to trust. */
  ca: string;
  /** A key and a certificate for `cn` signed by this CA, with the extension `ext` (a loopback server's by default). */
  issue(name: string, cn: string, ext?: string): Promise<IssuedCert>;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  try {
    await promisify(execFile)('openssl', args, { cwd: dir, timeout: 30_000 });
  } catch (err) {
    throw new Error(`openssl ${args.join(' ')} failed: ${(err as { stderr?: string }).stderr ?? err}`, { cause: err });
  }
}

export async function makeTestCa(dir: string, cn = 'ocimirror test CA'): Promise<TestCa> {
  await openssl(dir, ['req', '-x509', ...EC_KEY, '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', `/CN=${cn}`, '-days', '2']);
  return {
    ca: path.join(dir, 'ca.crt'),
    async issue(name, certCn, ext = LOOPBACK_SERVER_EXT) {
      await writeFile(path.join(dir, `${name}.ext`), `${ext}\n`);
      await openssl(dir, ['req', ...EC_KEY, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${certCn}`]);
      await openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`]);
      return { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) };
    },
  };
}
