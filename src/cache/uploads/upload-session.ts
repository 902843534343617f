/**
 * @module cache/uploads/upload-session
 * An upload session's record, `<data>/uploads/<id>/session.json`: who it belongs to and how many
 * bytes of its data file were acknowledged to the client. The record is rewritten after each
 * accepted chunk (temp file, then rename), so it always holds the last acknowledged size; bytes
 * in the data file past it belong to a chunk that never completed and are cut off at reopen.
 */
import fsp from 'node:fs/promises';
import { z } from 'zod';
import type { DataPaths } from '../paths.ts';

export interface UploadSession {
  readonly id: string;
  /** The hosted registry name the upload was started in. */
  readonly registry: string;
  readonly repo: string;
  /** Epoch ms. */
  readonly createdAt: number;
  /** Epoch ms of the last accepted chunk (or of the creation): collect() ages sessions by it. */
  readonly updatedAt: number;
  /** Bytes received and acknowledged so far. */
  readonly size: number;
}

const RECORD = z
  .object({
    registry: z.string().min(1),
    repo: z.string().min(1),
    created_at: z.number().int().nonnegative(),
    updated_at: z.number().int().nonnegative(),
    size: z.number().int().nonnegative(),
  })
  .strict();

export async function writeSession(paths: DataPaths, session: UploadSession): Promise<void> {
  const record: z.input<typeof RECORD> = {
    registry: session.registry,
    repo: session.repo,
    created_at: session.createdAt,
    updated_at: session.updatedAt,
    size: session.size,
  };
  const temp = paths.uploadSessionTemp(session.id);
  await fsp.writeFile(temp, JSON.stringify(record));
  await fsp.rename(temp, paths.uploadSession(session.id));
}

/** The session recorded for `id`; undefined when its record is missing or unreadable. */
export async function readSession(paths: DataPaths, id: string): Promise<UploadSession | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(paths.uploadSession(id), 'utf8');
  } catch {
    return undefined;
  }
  let parsed;
  try {
    parsed = RECORD.safeParse(JSON.parse(text));
  } catch {
    return undefined;
  }
  if (!parsed.success) return undefined;
  const r = parsed.data;
  return { id, registry: r.registry, repo: r.repo, createdAt: r.created_at, updatedAt: r.updated_at, size: r.size };
}
