/**
 * @module upstream/transport/no-proxy
 * NO_PROXY as curl, Go and undici read it: hosts that are reached directly although an egress proxy
 * is configured. Entries are separated by commas or spaces; `*` alone matches every host; `name`,
 * `.name` and `*.name` all match the name and its subdomains; `name:port` only that port; an IP
 * address matches itself (IPv6 with or without brackets), and `addr/bits` a CIDR range of them.
 */
import net from 'node:net';

interface HostEntry {
  /** Lower case, no leading dot, no brackets. */
  name: string;
  /** 0 = any port. */
  port: number;
}

const DEFAULT_PORTS: Readonly<Record<string, number>> = { 'http:': 80, 'https:': 443 };

export class NoProxy {
  readonly #all: boolean;
  readonly #hosts: HostEntry[] = [];
  readonly #ranges = new net.BlockList();
  #hasRanges = false;

  constructor(spec: string) {
    const entries = spec.split(/[\s,]+/).filter((e) => e !== '');
    this.#all = entries.includes('*');
    for (const entry of entries) this.#add(entry.toLowerCase());
  }

  /** True when requests to `url` go direct. */
  matches(url: URL): boolean {
    if (this.#all) return true;
    const host = url.hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1');
    const port = Number(url.port) || DEFAULT_PORTS[url.protocol] || 0;
    for (const e of this.#hosts) {
      if (e.port !== 0 && e.port !== port) continue;
      if (host === e.name || host.endsWith(`.${e.name}`)) return true;
    }
    const family = net.isIP(host);
    return this.#hasRanges && family !== 0 && this.#ranges.check(host, family === 4 ? 'ipv4' : 'ipv6');
  }

  #add(entry: string): void {
    const cidr = /^\[?([0-9a-f:.]+)\]?\/(\d{1,3})$/.exec(entry);
    if (cidr) {
      const family = net.isIP(cidr[1]!);
      const bits = Number(cidr[2]);
      if (family !== 0 && bits <= (family === 4 ? 32 : 128)) {
        this.#ranges.addSubnet(cidr[1]!, bits, family === 4 ? 'ipv4' : 'ipv6');
        this.#hasRanges = true;
      }
      return;
    }
    // `[v6]:port`, `[v6]`, a bare v6 address (its colons are not a port), `host:port`, `host`.
    const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
    const hostPort = bracketed ?? (net.isIP(entry) === 6 ? null : /^([^:]+):(\d+)$/.exec(entry));
    const name = (hostPort ? hostPort[1]! : entry).replace(/^\*?\./, '');
    if (name === '' || name === '*') return;
    this.#hosts.push({ name, port: hostPort?.[2] !== undefined ? Number(hostPort[2]) : 0 });
  }
}
