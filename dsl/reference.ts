/**
 * Helpers for the CPU reference evaluation of primitives. f32 values are stored in Float32Array
 * (every store rounds to f32, as on the device); the f64 mode keeps Float64Array for gradient
 * checks; i32 and bool use Int32Array with wrap-around integer arithmetic.
 */

import { type DType, isFloat } from "./dtype.ts";
import { allocData, type HostArray } from "./host_array.ts";
import type { EvalContext } from "./primitive.ts";
import { sizeOf } from "./shape.ts";

export function alloc(shape: readonly number[], dtype: DType, ctx: EvalContext): HostArray {
  return { shape: [...shape], dtype, data: allocData(dtype, sizeOf(shape), ctx.precision) };
}

/**
 * Rounds an accumulator to the evaluation precision (f32 sums accumulate in f32; f16 ones too, as
 * on the device, and round to f16 when stored).
 */
export function rounder(dtype: DType, ctx: EvalContext): (x: number) => number {
  if (!isFloat(dtype)) return (x) => x | 0;
  return ctx.precision === "f64" ? (x) => x : Math.fround;
}

export function mapElements(
  inputs: readonly HostArray[],
  outDtype: DType,
  ctx: EvalContext,
  fn: (...xs: number[]) => number,
): HostArray {
  const out = alloc(inputs[0].shape, outDtype, ctx);
  const n = out.data.length;
  const d = out.data;
  if (inputs.length === 1) {
    const a = inputs[0].data;
    for (let i = 0; i < n; i++) d[i] = fn(a[i]);
  } else if (inputs.length === 2) {
    const a = inputs[0].data, b = inputs[1].data;
    for (let i = 0; i < n; i++) d[i] = fn(a[i], b[i]);
  } else {
    const a = inputs[0].data, b = inputs[1].data, c = inputs[2].data;
    for (let i = 0; i < n; i++) d[i] = fn(a[i], b[i], c[i]);
  }
  return out;
}

/**
 * Visits every multi-index of `shape` in row-major order, calling `fn(flatIndex, index)`.
 * `index` is reused between calls.
 */
export function forEachIndex(
  shape: readonly number[],
  fn: (flat: number, index: number[]) => void,
): void {
  const n = sizeOf(shape);
  const index = new Array<number>(shape.length).fill(0);
  for (let flat = 0; flat < n; flat++) {
    fn(flat, index);
    for (let ax = shape.length - 1; ax >= 0; ax--) {
      if (++index[ax] < shape[ax]) break;
      index[ax] = 0;
    }
  }
}

/**
 * Error function to about 1e-15: Maclaurin series for |x| < 2, otherwise 1 − erfc with Numerical
 * Recipes' Chebyshev fit of erfc (relative error < 1.2e-7 of erfc(x) < 5e-3, so < 6e-10 in erf).
 */
export function erf(x: number): number {
  const z = Math.abs(x);
  if (z < 2) {
    let term = x, sum = x;
    for (let n = 1; n < 60 && Math.abs(term) > 1e-17 * Math.abs(sum); n++) {
      term *= (-x * x) / n;
      sum += term / (2 * n + 1);
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  const t = 1 / (1 + 0.5 * z);
  const erfc = t * Math.exp(
    -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
                  t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
                                  t * (-0.82215223 + t * 0.17087277)))))))),
  );
  return x >= 0 ? 1 - erfc : erfc - 1;
}

/** f32 → i32 conversion as WGSL does it: truncate toward zero, saturate, NaN → 0. */
export function f32ToI32(x: number): number {
  if (Number.isNaN(x)) return 0;
  if (x >= 2147483647) return 2147483647;
  if (x <= -2147483648) return -2147483648;
  return Math.trunc(x);
}
