/**
 * @module config/listen
 * The listen address as written in the config ('0.0.0.0:5000', ':5000', '[::]:5000').
 */

/** 'host:port', ':port', '[::1]:port' → parts; undefined when malformed. */
export function parseListen(text: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-f:.]+)\]|([^:[\]]*)):(\d{1,5})$/i.exec(text.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}
