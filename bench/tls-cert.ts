/**
 * @module bench/tls-cert
 * A throwaway CA and a loopback server certificate in the work dir, shared by nginx and ocimirror in the
 * TLS read phase so both serve the same chain with the same key type (P-256 ECDSA).
 */
import { makeTestCa } from '../test/helpers/test-pki.ts';

export interface BenchCert {
  /** PEM of the CA the readers trust. */
  ca: string;
  cert: string;
  key: string;
}

export async function makeBenchCert(workDir: string): Promise<BenchCert> {
  const ca = await makeTestCa(workDir, 'ocimirror bench CA');
  return { ca: ca.ca, ...(await ca.issue('tls', '127.0.0.1')) };
}
