/**
 * The safetensors format (Hugging Face): u64 little-endian header size, a JSON header of
 * { name: { dtype, shape, data_offsets } , __metadata__ }, then the tensors' bytes back to back.
 * Reading validates every field the way the reference implementation does (offsets in order, no
 * holes, sizes matching shapes); writing is atomic and records a SHA-256 of the data section.
 */

import { type HostArray, newFloat16Array } from "../../dsl/host_array.ts";
import { sha256Hex } from "./hash.ts";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "./half.ts";

/** The element types a safetensors file may store that this reader and writer support. */
export type StorageDType = "F32" | "F16" | "BF16" | "I32";
const BYTES: Record<StorageDType, number> = { F32: 4, F16: 2, BF16: 2, I32: 4 };
/** Metadata key holding the hex SHA-256 of the data section, checked on read when present. */
export const CHECKSUM_KEY = "sha256";
const MAX_HEADER = 100_000_000;

/** A safetensors file or byte buffer that cannot be read or written; the message names it. */
export class SafetensorsError extends Error {
  /** Makes the error, prefixing `message` with the file (or source) it concerns. */
  constructor(source: string, message: string) {
    super(`safetensors (${source}): ${message}`);
    this.name = "SafetensorsError";
  }
}

/** The contents of a safetensors file. */
export interface SafetensorsFile {
  /** The tensors by name (F16/BF16 widened to f32). */
  tensors: Record<string, HostArray>;
  /** The header's `__metadata__` entries. */
  metadata: Record<string, string>;
  /** Storage dtype of each tensor as it was in the file. */
  dtypes: Record<string, StorageDType>;
}

function decode(dtype: StorageDType, bytes: Uint8Array, count: number): Float32Array | Int32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === "I32") {
    const out = new Int32Array(count);
    for (let i = 0; i < count; i++) out[i] = view.getInt32(4 * i, true);
    return out;
  }
  const out = new Float32Array(count);
  if (dtype === "F32") { for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, true); }
  else if (dtype === "F16") {
    for (let i = 0; i < count; i++) out[i] = f16ToF32(view.getUint16(2 * i, true));
  } else {
    for (let i = 0; i < count; i++) out[i] = bf16ToF32(view.getUint16(2 * i, true));
  }
  return out;
}

function encode(dtype: StorageDType, a: HostArray): Uint8Array {
  const n = a.data.length;
  const out = new Uint8Array(n * BYTES[dtype]);
  const view = new DataView(out.buffer);
  for (let i = 0; i < n; i++) {
    const x = a.data[i];
    if (dtype === "F32") view.setFloat32(4 * i, x, true);
    else if (dtype === "I32") view.setInt32(4 * i, x, true);
    else if (dtype === "F16") view.setUint16(2 * i, f32ToF16(x), true);
    else view.setUint16(2 * i, f32ToBf16(x), true);
  }
  return out;
}

/** Parses and validates safetensors bytes. `source` names the file in errors. */
export async function parseSafetensors(
  bytes: Uint8Array,
  source = "<bytes>",
  opts: ReadOptions = {},
): Promise<SafetensorsFile> {
  const fail = (msg: string): never => {
    throw new SafetensorsError(source, msg);
  };
  if (bytes.length < 8) fail(`file is ${bytes.length} bytes: too short for the 8-byte header size`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerSize = Number(view.getBigUint64(0, true));
  if (headerSize > MAX_HEADER) fail(`header size ${headerSize} is implausible (corrupt file?)`);
  if (8 + headerSize > bytes.length) {
    fail(
      `header size ${headerSize} runs past the end of the ${bytes.length}-byte file (truncated?)`,
    );
  }
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(
      new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + headerSize)),
    );
  } catch (e) {
    return fail(`header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    fail("header is not a JSON object");
  }
  const data = bytes.subarray(8 + headerSize);
  const metadata: Record<string, string> = {};
  const raw = header.__metadata__;
  if (raw !== undefined) {
    if (typeof raw !== "object" || raw === null) fail("__metadata__ must be an object of strings");
    for (const [k, v] of Object.entries(raw as object)) {
      if (typeof v !== "string") fail(`__metadata__.${k} must be a string`);
      metadata[k] = v as string;
    }
  }
  const entries: {
    name: string;
    dtype: StorageDType;
    shape: number[];
    begin: number;
    end: number;
  }[] = [];
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const t = info as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof t !== "object" || t === null) fail(`tensor "${name}": entry is not an object`);
    if (typeof t.dtype !== "string" || !(t.dtype in BYTES)) {
      fail(
        `tensor "${name}": dtype ${JSON.stringify(t.dtype)} is not supported (F32, F16, BF16, I32)`,
      );
    }
    const shape = t.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
      fail(
        `tensor "${name}": shape ${JSON.stringify(shape)} is not a list of non-negative integers`,
      );
    }
    const offsets = t.data_offsets;
    if (
      !Array.isArray(offsets) || offsets.length !== 2 ||
      !offsets.every((o) => Number.isInteger(o) && o >= 0) || offsets[0] > offsets[1]
    ) {
      fail(
        `tensor "${name}": data_offsets ${
          JSON.stringify(offsets)
        } must be [begin, end] with begin ≤ end`,
      );
    }
    const dtype = t.dtype as StorageDType;
    const [begin, end] = offsets as number[];
    const count = (shape as number[]).reduce((a, b) => a * b, 1);
    if (end - begin !== count * BYTES[dtype]) {
      fail(
        `tensor "${name}": ${end - begin} bytes do not match ${dtype}[${shape}] (${
          count * BYTES[dtype]
        } bytes)`,
      );
    }
    entries.push({ name, dtype, shape: shape as number[], begin, end });
  }
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const e of entries) {
    if (e.begin !== cursor) {
      fail(
        `tensor "${e.name}" starts at byte ${e.begin}, expected ${cursor} (overlap or hole in the data)`,
      );
    }
    cursor = e.end;
  }
  if (cursor !== data.length) {
    fail(
      `tensors cover ${cursor} data bytes but the file holds ${data.length} (truncated or padded file)`,
    );
  }
  const expected = metadata[CHECKSUM_KEY];
  if (expected !== undefined && (await sha256Hex(data)) !== expected) {
    fail("checksum mismatch: the data section does not match the recorded sha256 (corrupt file)");
  }
  const tensors: Record<string, HostArray> = {};
  const dtypes: Record<string, StorageDType> = {};
  for (const e of entries) {
    const values = decode(
      e.dtype,
      data.subarray(e.begin, e.end),
      (e.end - e.begin) / BYTES[e.dtype],
    );
    tensors[e.name] = e.dtype === "F16" && opts.f16
      ? { shape: e.shape, dtype: "f16", data: newFloat16Array(values) } // exact: halves widened
      : { shape: e.shape, dtype: e.dtype === "I32" ? "i32" : "f32", data: values };
    dtypes[e.name] = e.dtype;
  }
  return { tensors, metadata, dtypes };
}

/** Options of `parseSafetensors` and `readSafetensors`. */
export interface ReadOptions {
  /** F16 tensors as f16 arrays (Float16Array) instead of f32 ones (default false). */
  f16?: boolean;
}

/** Options of `serializeSafetensors` and `writeSafetensors`. */
export interface WriteOptions {
  /** Storage dtype for f32 tensors (default F32); f16 tensors are F16, i32 ones I32. */
  floatDType?: "F32" | "F16" | "BF16";
  /** Skip the SHA-256 entry (it is recorded by default). */
  checksum?: boolean;
}

/** Serialises tensors (sorted by name, 8-byte aligned header) with metadata and a checksum. */
export async function serializeSafetensors(
  tensors: Record<string, HostArray>,
  metadata: Record<string, string> = {},
  opts: WriteOptions = {},
): Promise<Uint8Array> {
  const names = Object.keys(tensors).sort();
  const chunks: Uint8Array[] = [];
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const name of names) {
    const a = tensors[name];
    if (a.data.length !== a.shape.reduce((x, y) => x * y, 1)) {
      throw new SafetensorsError(
        name,
        `data length ${a.data.length} does not match shape [${a.shape}]`,
      );
    }
    const dtype: StorageDType = a.dtype === "f32"
      ? opts.floatDType ?? "F32"
      : a.dtype === "f16"
      ? "F16"
      : "I32";
    if (a.dtype === "bool") {
      throw new SafetensorsError(name, `dtype ${a.dtype} cannot be stored (f32, f16 or i32)`);
    }
    const bytes = encode(dtype, a);
    header[name] = { dtype, shape: a.shape, data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  const data = new Uint8Array(offset);
  let at = 0;
  for (const c of chunks) {
    data.set(c, at);
    at += c.length;
  }
  const meta = { ...metadata };
  if (opts.checksum !== false) meta[CHECKSUM_KEY] = await sha256Hex(data);
  const json = JSON.stringify({ __metadata__: meta, ...header });
  let headerBytes = new TextEncoder().encode(json);
  const padded = Math.ceil(headerBytes.length / 8) * 8;
  if (padded !== headerBytes.length) {
    headerBytes = new TextEncoder().encode(json + " ".repeat(padded - headerBytes.length));
  }
  const out = new Uint8Array(8 + headerBytes.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  out.set(data, 8 + headerBytes.length);
  return out;
}
