/**
 * @module test/unit/config/units
 * Human units in the config file: durations ('250ms', '30s', '5m', '12h', '7d', '1w', '1h30m')
 * and sizes (decimal 'kB/MB/GB/TB' and binary 'KiB/MiB/GiB/TiB'), plain numbers meaning
 * milliseconds and bytes. Anything else is `undefined`, which the schema turns into an error
 * naming the key.
 */
import { describe, expect, it } from 'vitest';
import { formatBytes, parseDuration, parseSize } from '../../../src/config/units.ts';

describe('parseDuration', () => {
  it('reads each unit', () => {
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration('12h')).toBe(43_200_000);
    expect(parseDuration('7d')).toBe(604_800_000);
    expect(parseDuration('1w')).toBe(604_800_000);
  });

  it('adds up compound durations', () => {
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('1m30s500ms')).toBe(90_500);
    expect(parseDuration('1d12h')).toBe(129_600_000);
  });

  it('reads fractions and rounds to whole milliseconds', () => {
    expect(parseDuration('1.5h')).toBe(5_400_000);
    expect(parseDuration('0.5s')).toBe(500);
    expect(parseDuration('1.0004s')).toBe(1000);
  });

  it('tells minutes from milliseconds', () => {
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration('5ms')).toBe(5);
    expect(parseDuration('1m5s')).toBe(65_000);
  });

  it('is case-insensitive and ignores surrounding whitespace', () => {
    expect(parseDuration(' 30S ')).toBe(30_000);
    expect(parseDuration('1H30M')).toBe(5_400_000);
  });

  it('reads zero, bare numbers and numeric strings as milliseconds', () => {
    expect(parseDuration('0')).toBe(0);
    expect(parseDuration('0s')).toBe(0);
    expect(parseDuration(0)).toBe(0);
    expect(parseDuration(1500)).toBe(1500);
    expect(parseDuration('1500')).toBe(1500);
  });

  it('refuses malformed text', () => {
    for (const text of ['', ' ', 'soon', 's', '5x', '5 s', '1h 30m', '1h30', 'm5', '-5s', '+5s', '1e3s', '5mm', '5sm5', '.5s', '5.s', '∞s']) {
      expect(parseDuration(text), JSON.stringify(text)).toBeUndefined();
    }
  });

  it('refuses negative and non-finite numbers', () => {
    for (const n of [-1, Number.NaN, Number.POSITIVE_INFINITY]) expect(parseDuration(n), String(n)).toBeUndefined();
  });
});

describe('parseSize', () => {
  it('reads binary units as powers of 1024', () => {
    expect(parseSize('1KiB')).toBe(1024);
    expect(parseSize('512MiB')).toBe(512 * 2 ** 20);
    expect(parseSize('50GiB')).toBe(50 * 2 ** 30);
    expect(parseSize('2TiB')).toBe(2 * 2 ** 40);
  });

  it('reads decimal units as powers of 1000, with or without the B', () => {
    expect(parseSize('10kb')).toBe(10_000);
    expect(parseSize('10k')).toBe(10_000);
    expect(parseSize('1.5GB')).toBe(1_500_000_000);
    expect(parseSize('3M')).toBe(3_000_000);
    expect(parseSize('1TB')).toBe(1e12);
  });

  it('allows a space before the unit and any case', () => {
    expect(parseSize('512 MiB')).toBe(512 * 2 ** 20);
    expect(parseSize(' 64mib ')).toBe(64 * 2 ** 20);
  });

  it('reads bare numbers, numeric strings and B as bytes', () => {
    expect(parseSize('0')).toBe(0);
    expect(parseSize(0)).toBe(0);
    expect(parseSize('1024')).toBe(1024);
    expect(parseSize('1024B')).toBe(1024);
    expect(parseSize(4096)).toBe(4096);
  });

  it('rounds fractional bytes down', () => {
    expect(parseSize('1.5KiB')).toBe(1536);
    expect(parseSize('0.5b')).toBe(0);
    expect(parseSize(10.9)).toBe(10);
  });

  it('refuses unknown units and malformed text', () => {
    for (const text of ['', 'GiB', '10 parsecs', '1.5.3GB', '-1', '-1GiB', '1 G i B', '1gi', '1e3', '1,000', 'lots']) {
      expect(parseSize(text), JSON.stringify(text)).toBeUndefined();
    }
  });

  it('refuses negative and non-finite numbers', () => {
    for (const n of [-1, Number.NaN, Number.POSITIVE_INFINITY]) expect(parseSize(n), String(n)).toBeUndefined();
  });
});

describe('formatBytes', () => {
  it('renders bytes in the largest binary unit below 1024', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1024)).toBe('1.0 KiB');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(64 * 2 ** 20)).toBe('64.0 MiB');
    expect(formatBytes(50 * 2 ** 30)).toBe('50.0 GiB');
    expect(formatBytes(3 * 2 ** 40)).toBe('3.0 TiB');
    expect(formatBytes(2 ** 52)).toBe('4096.0 TiB');
  });

  it('round-trips through parseSize for whole binary units', () => {
    expect(parseSize(formatBytes(512 * 2 ** 20).replace(' ', ''))).toBe(512 * 2 ** 20);
  });
});
