/** Creating tensors inside a traced function (constants are lazily broadcast scalars). */

import type { DType } from "../dtype.ts";
import { DslError } from "../errors.ts";
import * as lax from "../lax.ts";
import { formatShape, isValidShape } from "../shape.ts";
import type { Tensor } from "../trace.ts";

function checkShape(op: string, shape: readonly number[]): void {
  if (!isValidShape(shape)) {
    throw new DslError(op, `invalid shape ${formatShape(shape)}`);
  }
}

/** A tensor of `shape` filled with `value` (f32 unless `dtype` says otherwise). */
export function full(shape: readonly number[], value: number, dtype: DType = "f32"): Tensor {
  checkShape("full", shape);
  return lax.splat(value, shape, dtype);
}

/** A tensor of `shape` filled with 0 (f32 unless `dtype` says otherwise). */
export function zeros(shape: readonly number[], dtype: DType = "f32"): Tensor {
  return full(shape, 0, dtype);
}

/** A tensor of `shape` filled with 1 (f32 unless `dtype` says otherwise). */
export function ones(shape: readonly number[], dtype: DType = "f32"): Tensor {
  return full(shape, 1, dtype);
}

/** A tensor of 0s with the shape and dtype of `x`. */
export function zerosLike(x: Tensor): Tensor {
  return full(x.shape, 0, x.dtype);
}

/** A tensor of 1s with the shape and dtype of `x`. */
export function onesLike(x: Tensor): Tensor {
  return full(x.shape, 1, x.dtype);
}

/**
 * numpy `arange(start, stop, step)`, or `arange(stop)`. i32 when every bound is an integer, else
 * f32 (override with `dtype`).
 */
export function arange(start: number, stop?: number, step = 1, dtype?: DType): Tensor {
  if (stop === undefined) [start, stop] = [0, start];
  if (step === 0 || !Number.isFinite(start) || !Number.isFinite(stop) || !Number.isFinite(step)) {
    throw new DslError("arange", `invalid range (${start}, ${stop}, ${step})`);
  }
  const n = Math.max(0, Math.ceil((stop - start) / step));
  const dt: DType = dtype ??
    ([start, stop, step].every(Number.isInteger) ? "i32" : "f32");
  const i = lax.iota([n], 0, dt);
  if (start === 0 && step === 1) return i;
  return lax.add(lax.mul(i, lax.splat(step, [n], dt)), lax.splat(start, [n], dt));
}
