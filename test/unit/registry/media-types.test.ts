/**
 * @module test/unit/registry/media-types
 * Manifest media types and Accept negotiation. distribution-spec v1.1 "Pulling manifests":
 * "The client SHOULD include an Accept header indicating which manifest content types it
 * supports." Accept syntax per RFC 9110 §12.5.1 (`media-range = ( "*\/*" / ( type "/*" ) /
 * ( type "/" subtype ) ) parameters`, comma-separated, may be repeated as several fields, type
 * names case-insensitive per §8.3.1) and weights per §12.4.2 ("a value of 0 means 'not
 * acceptable'"). containerd sends `*\/*` alongside the specific types, so a wildcard accepts
 * any stored manifest.
 */
import { describe, expect, it } from 'vitest';
import {
  ALL_MANIFEST_TYPES,
  DEFAULT_ACCEPT,
  MEDIA_TYPES,
  acceptsMediaType,
  declaredMediaType,
  isIndexType,
  parseAccept,
} from '../../../src/registry/media-types.ts';

describe('parseAccept', () => {
  it('returns nothing for a missing header', () => {
    expect(parseAccept(undefined)).toEqual([]);
    expect(parseAccept([])).toEqual([]);
    expect(parseAccept('')).toEqual([]);
  });

  it('splits one header on commas and trims each type', () => {
    expect(parseAccept(`${MEDIA_TYPES.ociIndex},  ${MEDIA_TYPES.ociManifest} ,${MEDIA_TYPES.dockerManifest}`)).toEqual([
      MEDIA_TYPES.ociIndex,
      MEDIA_TYPES.ociManifest,
      MEDIA_TYPES.dockerManifest,
    ]);
  });

  it('joins several Accept fields in order', () => {
    expect(parseAccept([MEDIA_TYPES.dockerList, `${MEDIA_TYPES.dockerManifest}, */*`])).toEqual([MEDIA_TYPES.dockerList, MEDIA_TYPES.dockerManifest, '*/*']);
  });

  it('drops parameters and lower-cases the type', () => {
    expect(parseAccept('Application/VND.OCI.Image.Manifest.v1+JSON; charset=utf-8, application/json;q=0.5')).toEqual([
      MEDIA_TYPES.ociManifest,
      'application/json',
    ]);
  });

  it('skips empty list elements', () => {
    expect(parseAccept(', ,application/json,,')).toEqual(['application/json']);
  });

  it('leaves out types the client marks not acceptable with q=0 (§12.4.2)', () => {
    expect(parseAccept(`${MEDIA_TYPES.ociIndex};q=0, ${MEDIA_TYPES.ociManifest}`)).toEqual([MEDIA_TYPES.ociManifest]);
    expect(parseAccept(`${MEDIA_TYPES.ociIndex}; Q=0.000, ${MEDIA_TYPES.dockerList};q=0.0;x=y`)).toEqual([]);
    expect(parseAccept(`${MEDIA_TYPES.ociIndex};q=0.001`)).toEqual([MEDIA_TYPES.ociIndex]);
  });
});

describe('acceptsMediaType', () => {
  it('accepts anything when the client sent no Accept', () => {
    expect(acceptsMediaType([], MEDIA_TYPES.dockerSchema1Signed)).toBe(true);
  });

  it('accepts a type the client named, whatever its case', () => {
    expect(acceptsMediaType([MEDIA_TYPES.ociIndex], MEDIA_TYPES.ociIndex)).toBe(true);
    expect(acceptsMediaType([MEDIA_TYPES.ociIndex], 'application/vnd.OCI.image.index.v1+json')).toBe(true);
  });

  it('refuses a type the client did not name', () => {
    expect(acceptsMediaType([MEDIA_TYPES.dockerManifest], MEDIA_TYPES.dockerList)).toBe(false);
    expect(acceptsMediaType([MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest], MEDIA_TYPES.ociIndex)).toBe(false);
  });

  it('accepts anything under */*', () => {
    expect(acceptsMediaType([MEDIA_TYPES.dockerManifest, '*/*'], MEDIA_TYPES.ociIndex)).toBe(true);
  });

  it('accepts any subtype under type/*, and only of that type', () => {
    expect(acceptsMediaType(['application/*'], MEDIA_TYPES.ociIndex)).toBe(true);
    expect(acceptsMediaType(['text/*'], MEDIA_TYPES.ociIndex)).toBe(false);
    expect(acceptsMediaType(['text/*'], 'textual/plain')).toBe(false);
  });

  it('composes with parseAccept for the headers real clients send', () => {
    const docker = parseAccept([MEDIA_TYPES.dockerManifest, MEDIA_TYPES.dockerList, MEDIA_TYPES.ociManifest, MEDIA_TYPES.ociIndex]);
    expect(acceptsMediaType(docker, MEDIA_TYPES.ociIndex)).toBe(true);
    const oldClient = parseAccept(`${MEDIA_TYPES.dockerManifest}, ${MEDIA_TYPES.dockerSchema1Signed}`);
    expect(acceptsMediaType(oldClient, MEDIA_TYPES.dockerList)).toBe(false);
    const refusesIndex = parseAccept(`${MEDIA_TYPES.ociIndex};q=0, ${MEDIA_TYPES.ociManifest}`);
    expect(acceptsMediaType(refusesIndex, MEDIA_TYPES.ociIndex)).toBe(false);
    expect(acceptsMediaType(refusesIndex, MEDIA_TYPES.ociManifest)).toBe(true);
  });
});

describe('isIndexType', () => {
  it('recognises the OCI index and the Docker manifest list, and nothing else', () => {
    expect(isIndexType(MEDIA_TYPES.ociIndex)).toBe(true);
    expect(isIndexType(MEDIA_TYPES.dockerList)).toBe(true);
    for (const t of [MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest, MEDIA_TYPES.dockerSchema1Signed, MEDIA_TYPES.ociEmpty, '']) {
      expect(isIndexType(t), t).toBe(false);
    }
  });
});

describe('DEFAULT_ACCEPT', () => {
  it('asks an upstream for every manifest type the mirror can store', () => {
    expect(parseAccept(DEFAULT_ACCEPT)).toEqual([...ALL_MANIFEST_TYPES]);
    expect(new Set(ALL_MANIFEST_TYPES)).toEqual(new Set([MEDIA_TYPES.ociIndex, MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerList, MEDIA_TYPES.dockerManifest]));
  });
});

describe('declaredMediaType', () => {
  it('reads the mediaType field of a JSON manifest', () => {
    expect(declaredMediaType(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: [] })))).toBe(MEDIA_TYPES.ociIndex);
  });

  it('gives undefined when the field is absent, not a string, or the bytes are not JSON', () => {
    expect(declaredMediaType(Buffer.from('{"schemaVersion":2}'))).toBeUndefined();
    expect(declaredMediaType(Buffer.from('{"mediaType":7}'))).toBeUndefined();
    expect(declaredMediaType(Buffer.from('null'))).toBeUndefined();
    expect(declaredMediaType(Buffer.from('not json'))).toBeUndefined();
    expect(declaredMediaType(Buffer.alloc(0))).toBeUndefined();
  });
});
