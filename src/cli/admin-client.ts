/**
 * @module cli/admin-client
 * The CLI's side of the admin API: a small JSON client for a running mirror, and waiting for
 * a queued job to finish. Its failures are CliErrors: the mirror unreachable, the token refused,
 * or the request refused, each with its own exit code.
 */
import { request } from 'undici';
import { CliError, EXIT } from './cli-error.ts';

/** --url, else OCIMIRROR_URL, else a mirror on this host's default port. */
export function mirrorUrl(flag: string | undefined): string {
  return flag || process.env.OCIMIRROR_URL || 'http://127.0.0.1:5000';
}

export interface AdminClientOptions {
  url: string;
  token: string | undefined;
}

export interface JobView {
  id: number;
  type: string;
  state: 'queued' | 'running' | 'done' | 'failed';
  attempts: number;
  lastError: string | null;
  progress: Record<string, number> | null;
  result: unknown;
}

export class AdminClient {
  readonly #base: string;
  readonly #token: string | undefined;

  constructor({ url, token }: AdminClientOptions) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(url);
    } catch {
      /* reported below */
    }
    if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
      throw new CliError(`--url '${url}' is not an http(s) URL such as http://127.0.0.1:5000`, EXIT.usage);
    }
    this.#base = url.replace(/\/+$/, '');
    this.#token = token || undefined;
  }

  async call<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
    let res;
    let text: string;
    try {
      res = await request(`${this.#base}/admin/v1${path}`, {
        method,
        headers: {
          ...(this.#token ? { authorization: `Bearer ${this.#token}` } : {}),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      text = await res.body.text();
    } catch (cause) {
      throw new CliError(`cannot reach the mirror at ${this.#base}: ${networkReason(cause)}; is it running there? (--url, OCIMIRROR_URL)`, EXIT.unreachable, { cause });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (res.statusCode >= 400) throw this.refusal(`${method} /admin/v1${path}`, res.statusCode, text);
    return json as T;
  }

  /** The CliError for an error answer (`text` its body) to `what`: the token refused (exit 4), else the request refused (exit 5). */
  refusal(what: string, statusCode: number, text: string): CliError {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    const error = (json as { errors?: Array<{ code?: string; message?: string }> } | undefined)?.errors?.[0];
    const said = error?.message ?? (text.slice(0, 200) || 'no message');
    if (statusCode === 401 || statusCode === 403) {
      const advice = this.#token ? 'the admin token was refused' : 'the admin API needs a token: pass --token or set OCIMIRROR_ADMIN_TOKEN';
      return new CliError(`${advice} (${statusCode} from ${this.#base}: ${said})`, EXIT.unauthorized);
    }
    return new CliError(`the mirror refused ${what}: ${said} (${statusCode}${error?.code ? ` ${error.code}` : ''})`, EXIT.refused);
  }

  /** The base URL and the Authorization header, for requests that stream (bundle export and import). */
  get base(): string {
    return `${this.#base}/admin/v1`;
  }

  get authorization(): Record<string, string> {
    return this.#token ? { authorization: `Bearer ${this.#token}` } : {};
  }

  /** Polls a job until it is done or failed (bounded by `timeoutMs`), reporting each state. */
  async waitForJob(id: number, { intervalMs = 250, timeoutMs = 24 * 3_600_000, onUpdate }: { intervalMs?: number; timeoutMs?: number; onUpdate?: (job: JobView) => void } = {}): Promise<JobView> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const job = await this.call<JobView>('GET', `/jobs/${id}`);
      onUpdate?.(job);
      if (job.state === 'done' || job.state === 'failed') return job;
      if (Date.now() > deadline) throw new CliError(`job ${id} did not finish within ${timeoutMs} ms; it goes on in the mirror (GET /admin/v1/jobs/${id})`, EXIT.jobFailed);
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }
}

/** 'connection refused (ECONNREFUSED)' from what undici threw; happy-eyeballs wraps each address tried in an AggregateError. */
export function networkReason(err: unknown): string {
  const first = err instanceof AggregateError && err.errors.length > 0 ? (err.errors[0] as unknown) : err;
  const code = (first as { code?: unknown })?.code ?? (err as { code?: unknown })?.code;
  const reasons: Record<string, string> = {
    ECONNREFUSED: 'connection refused',
    ENOTFOUND: 'host not found',
    EAI_AGAIN: 'host name lookup failed',
    ETIMEDOUT: 'timed out',
    UND_ERR_CONNECT_TIMEOUT: 'connect timed out',
    ECONNRESET: 'connection reset',
    EHOSTUNREACH: 'host unreachable',
    UND_ERR_SOCKET: 'connection closed',
  };
  if (typeof code === 'string') return `${reasons[code] ?? (first as Error).message ?? code} (${code})`;
  return err instanceof Error ? err.message : String(err);
}
