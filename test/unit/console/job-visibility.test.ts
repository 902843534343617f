/**
 * @module test/unit/console/job-visibility
 * What a console viewer may see of a job: a job about one repository only when its rules let it
 * pull that repository (named by upstream and repository, or by image reference), a sync never,
 * a job naming no repository always; admins see everything.
 */
import { describe, expect, it } from 'vitest';
import type { Config } from '../../../src/config/schema.ts';
import type { Job, JobType } from '../../../src/jobs/index.ts';
import { jobVisibility } from '../../../src/console/job-visibility.ts';

const config = {
  upstreams: [{ name: 'hub', registries: ['docker.io', 'mirror.example'], offline: false }],
  hosted: [{ name: 'registry.internal', maxSize: 0 }],
} as unknown as Config;

/** The viewer may pull docker.io/library/alpine, and only that. */
const viewer = { identity: { admin: false }, canPull: (registry: string, repo: string) => registry === 'docker.io' && repo === 'library/alpine' };

const job = (type: JobType, payload: unknown): Job => ({ id: 1, type, key: null, payload, state: 'queued', attempts: 0, maxAttempts: 3, lastError: null, runAfter: 0, createdAt: 0, startedAt: null, finishedAt: null, progress: null, result: null });

describe('jobVisibility', () => {
  const visible = jobVisibility(viewer, config);

  it('shows a job about a repository the viewer may pull, by upstream and repository or by image', () => {
    expect(visible(job('prefetch', { upstream: 'hub', repo: 'library/alpine', reference: 'latest' }))).toBe(true);
    expect(visible(job('prefetch', { upstream: 'hub', repo: 'library/busybox', reference: 'latest' }))).toBe(false);
    expect(visible(job('delete', { image: 'alpine:3.20' }))).toBe(true);
    expect(visible(job('refresh', { image: 'docker.io/library/busybox:1' }))).toBe(false);
  });

  it('hides jobs of a source no longer configured, unparsable images and syncs', () => {
    expect(visible(job('prefetch', { upstream: 'gone', repo: 'library/alpine', reference: 'latest' }))).toBe(false);
    expect(visible(job('delete', { image: 'Not An Image' }))).toBe(false);
    expect(visible(job('sync', { name: 'console', images: ['alpine'] }))).toBe(false);
  });

  it('shows jobs naming no repository to everyone, and every job to admins', () => {
    expect(visible(job('gc', { reason: 'console' }))).toBe(true);
    expect(visible(job('evict', null))).toBe(true);
    const admin = jobVisibility({ identity: { admin: true }, canPull: () => false }, config);
    expect(admin(job('sync', { name: 'console', images: ['alpine'] }))).toBe(true);
    expect(admin(job('prefetch', { upstream: 'gone', repo: 'x', reference: 'latest' }))).toBe(true);
  });
});
