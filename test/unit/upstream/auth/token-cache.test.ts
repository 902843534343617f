import { describe, expect, it } from 'vitest';
import { DEFAULT_TOKEN_LIFETIME_MS, parseTokenResponse, TokenCache, tokenLifetime, type BearerToken } from '../../../../src/upstream/auth/token-cache.ts';

const T0 = Date.parse('2025-01-01T00:00:00Z');

function clock(start = T0) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

const token = (value: string, now: number, expiresInS = 300): BearerToken => ({ token: value, ...tokenLifetime(expiresInS, undefined, now) });

describe('parseTokenResponse', () => {
  it('accepts token, or access_token when token is absent', () => {
    expect(parseTokenResponse({ token: 'a' }, T0).token).toBe('a');
    expect(parseTokenResponse({ access_token: 'b' }, T0).token).toBe('b');
    expect(parseTokenResponse({ token: 'a', access_token: 'b' }, T0).token).toBe('a');
    expect(parseTokenResponse({ token: '', access_token: 'b' }, T0).token).toBe('b');
  });

  it('rejects a response without a usable token', () => {
    expect(() => parseTokenResponse({ expires_in: 60 }, T0)).toThrow(/neither "token" nor "access_token"/);
    expect(() => parseTokenResponse('token', T0)).toThrow(/not a JSON object/);
    expect(() => parseTokenResponse(null, T0)).toThrow();
  });
});

describe('tokenLifetime', () => {
  it('defaults to 60 seconds when expires_in is absent or not a positive number', () => {
    for (const v of [undefined, null, 0, -5, 'soon', Number.NaN]) {
      expect(tokenLifetime(v, undefined, T0).expiresAt).toBe(T0 + DEFAULT_TOKEN_LIFETIME_MS);
    }
  });

  it('counts expires_in from issued_at when it is plausible', () => {
    const issued = new Date(T0 - 100_000).toISOString();
    expect(tokenLifetime(300, issued, T0).expiresAt).toBe(T0 + 200_000);
  });

  it('counts from now when issued_at is in the future or would make the token already dead (clock skew)', () => {
    expect(tokenLifetime(300, new Date(T0 + 60_000).toISOString(), T0).expiresAt).toBe(T0 + 300_000);
    expect(tokenLifetime(300, new Date(T0 - 3_600_000).toISOString(), T0).expiresAt).toBe(T0 + 300_000);
    expect(tokenLifetime(300, 'yesterday', T0).expiresAt).toBe(T0 + 300_000);
  });

  it('goes stale 30 s before expiry, or a fifth of the lifetime for short-lived tokens', () => {
    expect(tokenLifetime(300, undefined, T0).staleAt).toBe(T0 + 270_000);
    expect(tokenLifetime(60, undefined, T0).staleAt).toBe(T0 + 48_000);
  });
});

describe('TokenCache', () => {
  it('hands out a cached token until it goes stale, then forgets it', () => {
    const c = clock();
    const cache = new TokenCache({ now: c.now });
    return (async () => {
      expect(await cache.getOrFetch('k', async () => token('one', c.now()))).toBe('one');
      c.advance(269_000);
      expect(cache.get('k')).toBe('one');
      c.advance(1_000);
      expect(cache.get('k')).toBeUndefined();
      expect(cache.size).toBe(0);
    })();
  });

  it('runs one fetch for concurrent requests of the same key and separate fetches for different keys', async () => {
    const c = clock();
    const cache = new TokenCache({ now: c.now });
    let fetches = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const fetch = async () => {
      const n = ++fetches;
      await gate;
      return token(`t${n}`, c.now());
    };
    const waiting = Promise.all([cache.getOrFetch('a', fetch), cache.getOrFetch('a', fetch), cache.getOrFetch('a', fetch)]);
    const other = cache.getOrFetch('b', fetch);
    release();
    expect(await waiting).toEqual(['t1', 't1', 't1']);
    expect(await other).toBe('t2');
    expect(fetches).toBe(2);
  });

  it('gives a failed fetch to every waiter and lets the next request try again', async () => {
    const cache = new TokenCache();
    const failing = () => Promise.reject(new Error('realm down'));
    await expect(Promise.all([cache.getOrFetch('k', failing), cache.getOrFetch('k', failing)])).rejects.toThrow('realm down');
    expect(await cache.getOrFetch('k', async () => token('ok', Date.now()))).toBe('ok');
  });

  it('stops a waiter whose signal aborts without cancelling the shared fetch', async () => {
    const cache = new TokenCache();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const fetch = async () => {
      await gate;
      return token('shared', Date.now());
    };
    const ac = new AbortController();
    const impatient = cache.getOrFetch('k', fetch, ac.signal);
    const patient = cache.getOrFetch('k', fetch);
    ac.abort(new Error('client left'));
    await expect(impatient).rejects.toThrow('client left');
    release();
    expect(await patient).toBe('shared');
    expect(cache.get('k')).toBe('shared');
  });

  it('returns a token that is stale on arrival to its waiters but does not cache it', async () => {
    const cache = new TokenCache({ now: () => T0 });
    const stale: BearerToken = { token: 'brief', expiresAt: T0 + 5_000, staleAt: T0 - 1 };
    expect(await cache.getOrFetch('k', async () => stale)).toBe('brief');
    expect(cache.size).toBe(0);
  });

  it('invalidates only the token that failed, not a fresher one', async () => {
    const cache = new TokenCache({ now: () => T0 });
    await cache.getOrFetch('k', async () => token('new', T0));
    cache.invalidate('k', 'old');
    expect(cache.get('k')).toBe('new');
    cache.invalidate('k', 'new');
    expect(cache.get('k')).toBeUndefined();
  });

  it('keeps at most maxEntries tokens, dropping the oldest', async () => {
    const cache = new TokenCache({ maxEntries: 2, now: () => T0 });
    for (const k of ['a', 'b', 'c']) await cache.getOrFetch(k, async () => token(k, T0));
    expect(cache.size).toBe(2);
    expect(cache.get('a')).toBeUndefined();
    expect(cache.get('c')).toBe('c');
  });

  it('validates maxEntries', () => {
    expect(() => new TokenCache({ maxEntries: 0 })).toThrow(/Expected maxEntries to be a positive integer, got 0/);
  });
});
