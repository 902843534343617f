/**
 * @module jobs
 * The durable background queue: job rows in SQLite, the runner that works them, and the scheduler
 * that enqueues periodic ones.
 */
export * from './job-types.ts';
export * from './job-store.ts';
export * from './job-runner.ts';
export * from './scheduler.ts';
export * from './job-deferred.ts';
