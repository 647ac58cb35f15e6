/**
 * 16-bit floats on the host: IEEE half and bfloat16, rounded to nearest even as torch rounds, and
 * two per u32 word (element 2i in the low half) as the device stores a packed input
 * (compiler/codegen/packed.ts).
 */

import type { PackedFormat } from "../../compiler/mod.ts";
import { isFloat16Data } from "../../dsl/mod.ts";

/** IEEE half bits → f32 value. */
export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

const scratch = new DataView(new ArrayBuffer(4));

/** f32 → IEEE half, round to nearest even (as torch's .half()). */
export function f32ToF16(x: number): number {
  scratch.setFloat32(0, x, true);
  const bits = scratch.getUint32(0, true);
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let v = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && (v & 1))) v++;
    return sign | v;
  }
  let v = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (v & 1))) v++;
  return sign | v;
}

/** f32 → bfloat16, round to nearest even. */
export function f32ToBf16(x: number): number {
  scratch.setFloat32(0, x, true);
  return bf16OfBits(scratch.getUint32(0, true));
}

/** The bfloat16 of the f32 with these bits (round to nearest even; a NaN stays a quiet NaN). */
function bf16OfBits(bits: number): number {
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff)) return (bits >>> 16) | 0x40;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** bfloat16 bits → f32 value (exact). */
export function bf16ToF32(h: number): number {
  scratch.setUint32(0, h << 16, true);
  return scratch.getFloat32(0, true);
}

/** `data` rounded to `format` and packed two per word (the device layout of a packed input). */
export function packHalves(
  format: PackedFormat,
  data: ArrayLike<number>,
): Uint32Array<ArrayBuffer> {
  const n = data.length;
  const words = new Uint32Array(Math.max(1, Math.ceil(n / 2)));
  if (format === "f16" && isFloat16Data(data)) {
    // Already half: its bytes are the packed layout (element 2i in the low half of word i).
    new Uint16Array(words.buffer).set(new Uint16Array(data.buffer, data.byteOffset, n));
    return words;
  }
  if (format === "bf16" && data instanceof Float32Array) {
    // The bits directly: no DataView round trip per element (a vocabulary table has 10⁸).
    const bits = new Uint32Array(data.buffer, data.byteOffset, n);
    for (let i = 0; i < n; i += 2) {
      words[i >> 1] = (bf16OfBits(bits[i]) | (i + 1 < n ? bf16OfBits(bits[i + 1]) << 16 : 0)) >>> 0;
    }
    return words;
  }
  const round = format === "bf16" ? f32ToBf16 : f32ToF16;
  for (let i = 0; i < n; i += 2) {
    words[i >> 1] = (round(data[i]) | (i + 1 < n ? round(data[i + 1]) << 16 : 0)) >>> 0;
  }
  return words;
}

/** The first `count` elements of packed `words`, widened to f32. */
export function unpackHalves(
  format: PackedFormat,
  words: Uint32Array,
  count: number,
): Float32Array {
  const out = new Float32Array(count);
  const widen = format === "bf16" ? bf16ToF32 : f16ToF32;
  for (let i = 0; i < count; i++) {
    const w = words[i >> 1];
    out[i] = widen(i & 1 ? w >>> 16 : w & 0xffff);
  }
  return out;
}

/** `data` as `format` would store it: each value rounded to the 16-bit format, in f32. */
export function roundedTo(format: PackedFormat, data: ArrayLike<number>): Float32Array {
  return unpackHalves(format, packHalves(format, data), data.length);
}
