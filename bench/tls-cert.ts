/**
 * @module bench/tls-cert
 * A throwaway CA and a loopback server certificate made with openssl in the work dir, shared by nginx and
 * ocimirror in the TLS read phase so both serve the same chain with the same key type (P-256 ECDSA).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mustRun } from './proc.ts';

export interface BenchCert {
  /** PEM of the CA the readers trust. */
  ca: string;
  cert: string;
  key: string;
}

export async function makeBenchCert(workDir: string, timeoutMs: number): Promise<BenchCert> {
  const file = (name: string) => join(workDir, name);
  const openssl = (args: string[]) => mustRun('openssl', args, { timeoutMs });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl(['req', '-x509', ...ec, '-keyout', file('ca.key'), '-out', file('ca.pem'), '-subj', '/CN=ocimirror bench CA', '-days', '2']);
  await openssl(['req', ...ec, '-keyout', file('tls.key'), '-out', file('tls.csr'), '-subj', '/CN=127.0.0.1']);
  await writeFile(file('tls.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await openssl(['x509', '-req', '-in', file('tls.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'), '-CAcreateserial',
    '-out', file('tls.crt'), '-days', '2', '-extfile', file('tls.ext')]);
  return { ca: file('ca.pem'), cert: file('tls.crt'), key: file('tls.key') };
}
