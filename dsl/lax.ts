/**
 * Low-level ops: one function per primitive, strict shapes and dtypes (no broadcasting, no
 * promotion), like jax.lax. VJP rules are written with these; the numpy-style ops in `ops/` build
 * on them.
 */

import type { DType } from "./dtype.ts";
import { allocData, type HostArray } from "./host_array.ts";
import { bind, constantTensor, type Tensor } from "./trace.ts";

const unary = (op: string) => (x: Tensor): Tensor => bind(op, [x]);
const binary = (op: string) => (a: Tensor, b: Tensor): Tensor => bind(op, [a, b]);

export const neg = unary("neg");
export const abs = unary("abs");
export const exp = unary("exp");
export const log = unary("log");
export const sqrt = unary("sqrt");
export const recip = unary("recip");
export const tanh = unary("tanh");
export const sigmoid = unary("sigmoid");
export const erf = unary("erf");
export const sin = unary("sin");
export const cos = unary("cos");
export const stopGradient = unary("stopGradient");

export const add = binary("add");
export const sub = binary("sub");
export const mul = binary("mul");
export const div = binary("div");
export const pow = binary("pow");
export const maximum = binary("maximum");
export const less = binary("less");
export const equal = binary("equal");

export function where(cond: Tensor, a: Tensor, b: Tensor): Tensor {
  return bind("where", [cond, a, b]);
}

/**
 * x itself, kept distinct from x by every pass: what is computed from it is recomputed rather
 * than shared with the same computation on x (a gradient rule recomputing a row statistic in its
 * own kernel instead of making the forward pass store it).
 */
export function recomputeBarrier(x: Tensor): Tensor {
  return bind("checkpointBarrier", [x]);
}

export function cast(x: Tensor, dtype: DType): Tensor {
  return x.dtype === dtype ? x : bind("cast", [x], { dtype });
}

export function sum(x: Tensor, axes: readonly number[]): Tensor {
  return axes.length === 0 ? x : bind("sum", [x], { axes: [...axes] });
}

export function max(x: Tensor, axes: readonly number[]): Tensor {
  return axes.length === 0 ? x : bind("max", [x], { axes: [...axes] });
}

export function argmax(x: Tensor, axis: number): Tensor {
  return bind("argmax", [x], { axis });
}

/** Batched matmul: [...B, M, K] × [...B, K, N] with identical batch dims. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  return bind("matmul", [a, b]);
}

export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  return sameShape(x.shape, shape) ? x : bind("reshape", [x], { shape: [...shape] });
}

export function transpose(x: Tensor, perm: readonly number[]): Tensor {
  return perm.every((p, i) => p === i) ? x : bind("transpose", [x], { perm: [...perm] });
}

/** Same-rank broadcast: every dim of x is 1 or equal to the target's. */
export function broadcast(x: Tensor, shape: readonly number[]): Tensor {
  return sameShape(x.shape, shape) ? x : bind("broadcast", [x], { shape: [...shape] });
}

export function slice(x: Tensor, starts: readonly number[], ends: readonly number[]): Tensor {
  if (starts.every((s) => s === 0) && ends.every((e, i) => e === x.shape[i])) return x;
  return bind("slice", [x], { starts: [...starts], ends: [...ends] });
}

export function pad(
  x: Tensor,
  lo: readonly number[],
  hi: readonly number[],
  value = 0,
): Tensor {
  if (lo.every((p) => p === 0) && hi.every((p) => p === 0)) return x;
  return bind("pad", [x], { lo: [...lo], hi: [...hi], value });
}

export function concat(xs: readonly Tensor[], axis: number): Tensor {
  return xs.length === 1 ? xs[0] : bind("concat", xs, { axis });
}

export function gather(table: Tensor, indices: Tensor, axis: number): Tensor {
  return bind("gather", [table, indices], { axis });
}

export function scatterAdd(
  operand: Tensor,
  indices: Tensor,
  updates: Tensor,
  axis: number,
): Tensor {
  return bind("scatterAdd", [operand, indices, updates], { axis });
}

export function iota(shape: readonly number[], axis: number, dtype: DType = "i32"): Tensor {
  return bind("iota", [], { shape: [...shape], axis, dtype });
}

export function constant(value: HostArray): Tensor {
  return constantTensor(value);
}

/** A scalar constant of the given dtype. */
export function scalar(value: number, dtype: DType = "f32"): Tensor {
  return constantTensor({ shape: [], dtype, data: allocData(dtype, 1).fill(value) });
}

/** `value` broadcast to `shape` (a lazily expanded scalar: no memory in the compiled program). */
export function splat(value: number, shape: readonly number[], dtype: DType = "f32"): Tensor {
  const s = scalar(value, dtype);
  return shape.length === 0 ? s : broadcast(reshape(s, shape.map(() => 1)), shape);
}

/** A scalar constant broadcast to the shape and dtype of `like`. */
export function splatLike(value: number, like: Tensor): Tensor {
  return splat(value, like.shape, like.dtype);
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export const bitAnd = binary("bitAnd");
export const bitOr = binary("bitOr");
export const bitXor = binary("bitXor");
export const shiftLeft = binary("shiftLeft");
export const shiftRightLogical = binary("shiftRightLogical");
