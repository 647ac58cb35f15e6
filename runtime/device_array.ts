/** Arrays that live on a WebGPU device between calls (no host round trip). */

import { type DType, type HostArray, isFloat, isFloat16Data, newFloat16Array } from "../dsl/mod.ts";
import { packedBytes, type PackedFormat } from "../compiler/mod.ts";
import type { Device } from "./device.ts";
import { packHalves, unpackHalves } from "./io/half.ts";

/**
 * An array held in a GPU buffer of one device, with its shape and dtype. An f32 array may be
 * stored packed in a 16-bit format (`storage`): half the bytes, widened by every kernel that reads
 * it, and read back as f32.
 */
export class DeviceArray {
  private buf: GPUBuffer | undefined;
  /** Wraps `buffer`, which the array then owns. */
  constructor(
    readonly device: Device,
    buffer: GPUBuffer,
    readonly shape: readonly number[],
    readonly dtype: DType,
    /** The 16-bit format of a packed f32 array (undefined: 4 bytes per element). */
    readonly storage?: PackedFormat,
  ) {
    this.buf = buffer;
  }

  /** Number of elements. */
  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /** The GPU buffer; throws if the array was donated to a computation or destroyed. */
  get buffer(): GPUBuffer {
    if (!this.buf) {
      throw new Error(
        `DeviceArray ${this.dtype}[${this.shape}] was donated or destroyed and cannot be used`,
      );
    }
    return this.buf;
  }

  /** Bytes of its buffer's contents. */
  get bytes(): number {
    return storageBytes(this.size, this.storage);
  }

  /** Whether the buffer was donated, invalidated or destroyed. */
  get deleted(): boolean {
    return this.buf === undefined;
  }

  /** Marks the array as consumed (its buffer now belongs to another array). */
  invalidate(): void {
    this.buf = undefined;
  }

  /** Releases the buffer (back to the device's pool). */
  destroy(): void {
    if (this.buf) this.device.recycle(this.buf);
    this.buf = undefined;
  }

  /** Copies the values back to the host. */
  async toHost(): Promise<HostArray> {
    return (await readArrays([this]))[0];
  }
}

/** True when `x` is a DeviceArray. */
export function isDeviceArray(x: unknown): x is DeviceArray {
  return x instanceof DeviceArray;
}

/**
 * Reads several device arrays with one submission and concurrent mapAsync calls (each sync point
 * costs milliseconds, so reads are batched).
 */
export async function readArrays(arrays: readonly DeviceArray[]): Promise<HostArray[]> {
  if (arrays.length === 0) return [];
  const device = arrays[0].device;
  device.check();
  const gpu = device.gpu;
  const encoder = gpu.createCommandEncoder({ label: "readback" });
  const staging = arrays.map((a) => {
    const bytes = a.bytes;
    const s = gpu.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      label: "staging",
    });
    encoder.copyBufferToBuffer(a.buffer, 0, s, 0, bytes);
    return s;
  });
  gpu.queue.submit([encoder.finish()]);
  await Promise.all(staging.map((s) => s.mapAsync(GPUMapMode.READ)));
  device.check();
  return arrays.map((a, i) => {
    const raw = staging[i].getMappedRange();
    const wide = a.storage
      ? unpackHalves(a.storage, new Uint32Array(raw), a.size)
      : isFloat(a.dtype)
      ? new Float32Array(raw.slice(0, a.size * 4))
      : new Int32Array(raw.slice(0, a.size * 4));
    // f16 values come back as half (from packed words, or from an f32 slot holding them).
    const data = a.dtype === "f16" ? newFloat16Array(wide) : wide;
    staging[i].unmap();
    staging[i].destroy();
    return { shape: [...a.shape], dtype: a.dtype, data };
  });
}

/** Bytes of a buffer holding `elements` 4-byte elements, or packed ones (at least 4). */
export function storageBytes(elements: number, storage?: PackedFormat): number {
  return storage ? packedBytes(elements) : Math.max(4, elements * 4);
}

/** What to write into a buffer holding `a` in `storage`: its words packed, or `hostData(a)`. */
export function uploadData(
  a: Pick<HostArray, "dtype" | "data">,
  storage?: PackedFormat,
): Uint32Array<ArrayBuffer> | Float32Array<ArrayBuffer> | Int32Array<ArrayBuffer> {
  return storage ? packHalves(storage, a.data) : hostData(a);
}

/**
 * A host array's values as the typed array a device buffer of its dtype holds: the array itself
 * where it already is one (uploads of a model's weights copy nothing on the host), else a copy.
 */
export function hostData(
  a: Pick<HostArray, "dtype" | "data">,
): Float32Array<ArrayBuffer> | Int32Array<ArrayBuffer> {
  const d = a.data;
  // f16 values in f32 words, rounded to half where the data is not half already.
  if (a.dtype === "f16") return Float32Array.from(d, isFloat16Data(d) ? Number : Math.f16round);
  if (isFloat(a.dtype)) {
    return d instanceof Float32Array && d.buffer instanceof ArrayBuffer
      ? d as Float32Array<ArrayBuffer>
      : Float32Array.from(d);
  }
  return d instanceof Int32Array && d.buffer instanceof ArrayBuffer
    ? d as Int32Array<ArrayBuffer>
    : Int32Array.from(d);
}
