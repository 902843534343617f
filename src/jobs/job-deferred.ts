/**
 * @module jobs/job-deferred
 * Thrown by a handler that cannot go on yet for a reason outside the job (an upstream's rate-limit
 * budget under its floor): the job is queued again for `retryAt` without spending an attempt,
 * since waiting is the plan, not a failure.
 */
export class JobDeferred extends Error {
  readonly retryAt: number;

  constructor(retryAt: number, message: string) {
    super(message);
    this.name = 'JobDeferred';
    this.retryAt = retryAt;
  }
}
