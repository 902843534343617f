/**
 * @module config/units
 * Human units used in the config file: durations ('30s', '5m', '7d') and sizes ('512MiB', '50GiB').
 * Plain numbers are accepted too (milliseconds / bytes); `0` means "off" wherever a feature can be off.
 */

const DURATION_UNITS: Record<string, number> = {
  ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000,
};

const SIZE_UNITS: Record<string, number> = {
  b: 1, k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12,
  kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40,
};

/** Parses '1h30m', '30s', '250ms', '7d' or a number of milliseconds; returns undefined when malformed. */
export function parseDuration(input: string | number): number | undefined {
  if (typeof input === 'number') return Number.isFinite(input) && input >= 0 ? input : undefined;
  const text = input.trim().toLowerCase();
  if (text === '0') return 0;
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/gy;
  let total = 0;
  let consumed = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    total += Number(m[1]) * (DURATION_UNITS[m[2] as string] as number);
    consumed = re.lastIndex;
  }
  return consumed === text.length && consumed > 0 ? Math.round(total) : undefined;
}

/** Parses '50GiB', '512 MiB', '1.5GB', '0' or a number of bytes; returns undefined when malformed. */
export function parseSize(input: string | number): number | undefined {
  if (typeof input === 'number') return Number.isFinite(input) && input >= 0 ? Math.floor(input) : undefined;
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(input.trim());
  if (!m) return undefined;
  const unit = (m[2] ?? '').toLowerCase() || 'b';
  const factor = SIZE_UNITS[unit];
  return factor === undefined ? undefined : Math.floor(Number(m[1]) * factor);
}

/** '1.5 GiB' style rendering for logs and the CLI. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return `${i === 0 ? value : value.toFixed(1)} ${units[i]}`;
}
