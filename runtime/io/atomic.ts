/** Crash-safe file writes: temp file in the same folder, fsync, rename, fsync the folder. */

import { dirname } from "node:path";

export { sha256Hex } from "./hash.ts";

/** Writes `bytes` to `path` so that a reader sees the old file or the new one, never a mix. */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const temp = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  try {
    const file = await Deno.open(temp, { write: true, create: true, truncate: true });
    try {
      let written = 0;
      while (written < bytes.length) written += await file.write(bytes.subarray(written));
      await file.sync();
    } finally {
      file.close();
    }
    await Deno.rename(temp, path);
  } catch (e) {
    await Deno.remove(temp).catch(() => {});
    throw e;
  }
  await syncDirectory(dirname(path));
}

/** Makes a rename durable; best effort where the platform cannot open folders. */
async function syncDirectory(dir: string): Promise<void> {
  try {
    const handle = await Deno.open(dir, { read: true });
    try {
      await handle.sync();
    } finally {
      handle.close();
    }
  } catch {
    // Opening a directory for fsync is not supported everywhere (e.g. Windows).
  }
}

/** Writes `text` as UTF-8 to `path` atomically (as `writeFileAtomic`). */
export async function writeTextAtomic(path: string, text: string): Promise<void> {
  await writeFileAtomic(path, new TextEncoder().encode(text));
}
