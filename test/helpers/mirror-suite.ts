/**
 * @module test/helpers/mirror-suite
 * One real upstream (behind its fault proxy) and one in-process mirror in front of it, shared by
 * the tests of a describe block: started before them, stopped after, with the proxy's faults and
 * counts cleared after each test so no test inherits another's stall or tally.
 */
import { afterAll, afterEach, beforeAll } from 'vitest';
import type { RawConfig } from '../../src/config/schema.ts';
import { startUpstream, type Upstream } from './upstream.ts';
import { mirrorConfig, startTestMirror, type TestMirror, type TestMirrorOptions } from './mirror.ts';

export interface MirrorSuite {
  readonly upstream: Upstream;
  readonly m: TestMirror;
}

/** Registers the hooks in the calling describe block; the getters are valid inside its tests. */
export function useMirrorSuite(config: (upstreamUrl: string) => RawConfig = mirrorConfig, opts: TestMirrorOptions = {}): MirrorSuite {
  let upstream: Upstream | undefined;
  let m: TestMirror | undefined;
  beforeAll(async () => {
    upstream = await startUpstream();
    m = await startTestMirror(config(upstream.url), opts);
  });
  afterAll(async () => {
    await m?.stop();
    await upstream?.stop();
  });
  afterEach(() => {
    upstream?.proxy.clear();
    upstream?.proxy.reset();
  });
  return {
    get upstream() {
      if (!upstream) throw new Error('the upstream is only there inside the suite\'s tests');
      return upstream;
    },
    get m() {
      if (!m) throw new Error('the mirror is only there inside the suite\'s tests');
      return m;
    },
  };
}
