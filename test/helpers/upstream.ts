/**
 * @module test/helpers/upstream
 * The one call most integration tests start with: a real docker-registry loaded with the fixture images,
 * behind a fault proxy that counts upstream requests. Point the code under test at `url` (the proxy);
 * use `registry.url` to look at the upstream without being counted.
 */
import { makeFixtures, type FixtureSet } from './images.ts';
import { startFaultProxy, type FaultProxy } from './fault-proxy.ts';
import { pushFixtures } from './push.ts';
import { startRegistry, type RegistryAuthMode, type RegistryServer } from './registry-server.ts';

export interface UpstreamOptions {
  auth?: RegistryAuthMode;
  /** Payload size of the `large` image's layer (default 8 MiB). */
  largeBytes?: number;
}

export interface Upstream {
  registry: RegistryServer;
  fixtures: FixtureSet;
  proxy: FaultProxy;
  /** The fault proxy's URL. */
  url: string;
  stop(): Promise<void>;
}

export async function startUpstream(opts: UpstreamOptions = {}): Promise<Upstream> {
  const { auth, largeBytes } = opts;
  const starting = startRegistry({ auth });
  try {
    const [fixtures, registry] = await Promise.all([makeFixtures({ largeBytes }), starting]);
    // Pushed straight to the registry, so the proxy's records start empty.
    await pushFixtures(registry.url, fixtures, fixtures.images, registry.credentials);
    const proxy = await startFaultProxy(registry.url);
    return {
      registry,
      fixtures,
      proxy,
      url: proxy.url,
      async stop() {
        await proxy.stop();
        await registry.stop();
      },
    };
  } catch (err) {
    await starting.then((r) => r.stop(), () => {});
    throw err;
  }
}
