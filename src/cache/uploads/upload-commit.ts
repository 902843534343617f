/**
 * @module cache/uploads/upload-commit
 * Moves a verified upload's data file into the content-addressed store as a committed blob
 * (file + `blobs` row), or finds the blob already there.
 *
 * Unlike a fill (blob-store commit, then the row), the rename and the row are made in one
 * synchronous step, with nothing awaited between them: gc removes a blob file it finds without
 * a row unless BlobCache knows a fill or reader of that digest, and an upload is neither, so a
 * gap between rename and row would let gc delete a blob the client is about to be told exists.
 * The blob directory is fsync'd afterwards; a crash before that can leave the row without its
 * file, which start-up reconcile drops (the client got no 201 and pushes again).
 */
import { renameSync } from 'node:fs';
import fsp from 'node:fs/promises';
import type { Logger } from '../../util/logger.ts';
import type { Digest } from '../../registry/digest.ts';
import type { BlobStore } from '../blobs/blob-store.ts';
import type { Metadata } from '../metadata/metadata.ts';

/**
 * Runs inside the SQLite transaction that records the blob (alone when the blob was already
 * stored): the hosted layer links the blob to its repository here, so a committed upload is
 * never left unlinked. Throwing undoes the commit and the upload keeps its data.
 */
export type CommitHook = (blob: { digest: string; size: number }) => void;

export interface CommitTarget {
  store: BlobStore;
  metadata: Metadata;
  log: Logger;
}

/**
 * Commits `dataPath` (`size` bytes whose sha256 is `digest`) as a blob. 'existed': the store
 * already held it, and `dataPath` is left for the caller to remove; 'committed': `dataPath`
 * has become the blob file.
 */
export async function commitUpload(target: CommitTarget, dataPath: string, digest: Digest, size: number, onCommit?: CommitHook): Promise<'committed' | 'existed'> {
  const { store, metadata } = target;
  const handle = await fsp.open(dataPath, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  const dir = store.paths.blobDir(digest.hex);
  await fsp.mkdir(dir, { recursive: true });
  const fileThere = await store.exists(digest.hex);
  const blob = { digest: digest.value, size };
  // From here to the end of the transaction nothing is awaited (see the module comment).
  const row = metadata.getBlob(digest.value);
  if (row !== undefined && row.size === size && fileThere) {
    if (onCommit) metadata.transaction(() => onCommit(blob));
    return 'existed';
  }
  const file = store.paths.blobFile(digest.hex);
  renameSync(dataPath, file);
  try {
    metadata.transaction(() => {
      metadata.putBlob({ digest: digest.value, size, mediaType: null });
      onCommit?.(blob);
    });
  } catch (err) {
    // Back into the session, so the closing PUT can be retried (e.g. once the disk has room).
    renameSync(file, dataPath);
    throw err;
  }
  try {
    const d = await fsp.open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch (err) {
    // The rename and the row stand; only their durability across a power loss is in doubt.
    target.log.warn({ digest: digest.value, err: (err as Error).message }, 'could not sync the blob directory after committing an upload');
  }
  return 'committed';
}
