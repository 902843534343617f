/**
 * @module cli/admin-client
 * The CLI's side of the admin API: a small JSON client for a running mirror, and waiting for
 * a queued job to finish.
 */
import { request } from 'undici';

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
    this.#base = url.replace(/\/+$/, '');
    this.#token = token;
  }

  async call<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
    const res = await request(`${this.#base}/admin/v1${path}`, {
      method,
      headers: {
        ...(this.#token ? { authorization: `Bearer ${this.#token}` } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.body.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (res.statusCode >= 400) {
      const message = (json as { errors?: Array<{ message?: string }> } | undefined)?.errors?.[0]?.message ?? text.slice(0, 200);
      throw new Error(`${method} ${path}: ${res.statusCode} ${message}`);
    }
    return json as T;
  }

  /** Polls a job until it is done or failed (bounded by `timeoutMs`), reporting each state. */
  async waitForJob(id: number, { intervalMs = 250, timeoutMs = 24 * 3_600_000, onUpdate }: { intervalMs?: number; timeoutMs?: number; onUpdate?: (job: JobView) => void } = {}): Promise<JobView> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const job = await this.call<JobView>('GET', `/jobs/${id}`);
      onUpdate?.(job);
      if (job.state === 'done' || job.state === 'failed') return job;
      if (Date.now() > deadline) throw new Error(`job ${id} did not finish within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }
}
