/**
 * @module test/unit/cache/inventory
 * The admin inventory counts blob hits and access times recorded since the last batched flush.
 */
import { afterEach, expect, it } from 'vitest';
import { Inventory } from '../../../../src/cache/metadata/inventory.ts';
import { openCacheFixture, T0, type CacheFixture } from '../cache-fixture.ts';

let fx: CacheFixture | undefined;
afterEach(async () => {
  await fx?.close();
  fx = undefined;
});

it('lists hits and the last access recorded since the last flush, not only those already written', async () => {
  fx = await openCacheFixture();
  const layer = await fx.blob('layer');
  fx.metadata.putLink('hub', 'library/app', layer);
  fx.advance(60_000);
  for (let i = 0; i < 3; i++) fx.metadata.recordBlobHit(layer);
  const [repo] = new Inventory(fx.metadata).repositories();
  expect(repo).toMatchObject({ upstream: 'hub', repo: 'library/app', blobs: 1, hits: 3, lastAccess: new Date(T0 + 60_000).toISOString() });
});
