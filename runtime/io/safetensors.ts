/** Safetensors files: read (with validation) and atomic writes. The byte format is in safetensors_format.ts. */

import type { HostArray } from "../../dsl/host_array.ts";
import { writeFileAtomic } from "./atomic.ts";
import {
  parseSafetensors,
  type ReadOptions,
  SafetensorsError,
  type SafetensorsFile,
  serializeSafetensors,
  type WriteOptions,
} from "./safetensors_format.ts";

export * from "./safetensors_format.ts";

/** Reads a safetensors file; F16/BF16 are widened to f32 (F16 kept as f16 with `{ f16: true }`). */
export async function readSafetensors(
  path: string,
  opts: ReadOptions = {},
): Promise<Record<string, HostArray>> {
  return (await readSafetensorsFile(path, opts)).tensors;
}

/** Reads tensors, metadata and the stored dtypes. */
export async function readSafetensorsFile(
  path: string,
  opts: ReadOptions = {},
): Promise<SafetensorsFile> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new SafetensorsError(path, `cannot read file (${(e as Error).message})`);
  }
  return await parseSafetensors(bytes, path, opts);
}

/** Writes a safetensors file atomically (temp file, fsync, rename). */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, HostArray>,
  metadata: Record<string, string> = {},
  opts: WriteOptions = {},
): Promise<void> {
  await writeFileAtomic(path, await serializeSafetensors(tensors, metadata, opts));
}
