/** Reductions with numpy axis conventions (negative axes, `keepDims`; no axes = all axes). */

import * as lax from "../lax.ts";
import type { Tensor } from "../trace.ts";
import {
  asTensor,
  computeInF32,
  normalizeAxes,
  normalizeOneAxis,
  type TensorLike,
} from "./coerce.ts";
import { isFinite, where } from "./elementwise.ts";
import { customVjp } from "../custom_vjp.ts";

/** One axis or several; negative axes count from the end. */
export type Axes = number | readonly number[];
/** Options of the reductions. */
export interface ReduceOptions {
  /** Keep reduced axes as size-1 dimensions (default false). */
  keepDims?: boolean;
}

function numeric(x: TensorLike, op: string): Tensor {
  const t = asTensor(x, op);
  return t.dtype === "bool" ? lax.cast(t, "i32") : t;
}

function finish(r: Tensor, x: Tensor, axes: number[], keepDims?: boolean): Tensor {
  return keepDims ? lax.reshape(r, x.shape.map((d, i) => (axes.includes(i) ? 1 : d))) : r;
}

/** Sum over `axes` (all when omitted). bool counts as i32. */
export function sum(x: TensorLike, axes?: Axes, opts: ReduceOptions = {}): Tensor {
  const t = numeric(x, "sum");
  const ax = normalizeAxes("sum", t, axes);
  return finish(lax.sum(t, ax), t, ax, opts.keepDims);
}

/** Arithmetic mean over `axes`, computed in f32 (f16 input gives an f16 mean; integers f32). */
export function mean(x: TensorLike, axes?: Axes, opts: ReduceOptions = {}): Tensor {
  const [t, back] = computeInF32(numeric(x, "mean"), "mean");
  const ax = normalizeAxes("mean", t, axes);
  const count = ax.reduce((n, a) => n * t.shape[a], 1);
  const s = lax.sum(t, ax);
  return back(finish(lax.div(s, lax.splatLike(count, s)), t, ax, opts.keepDims));
}

/** Maximum over `axes`; the gradient is shared equally among tied maxima. */
export function max(x: TensorLike, axes?: Axes, opts: ReduceOptions = {}): Tensor {
  const t = numeric(x, "max");
  const ax = normalizeAxes("max", t, axes);
  return finish(lax.max(t, ax), t, ax, opts.keepDims);
}

/** Minimum over `axes`. */
export function min(x: TensorLike, axes?: Axes, opts: ReduceOptions = {}): Tensor {
  const t = numeric(x, "min");
  const ax = normalizeAxes("min", t, axes);
  return finish(lax.neg(lax.max(lax.neg(t), ax)), t, ax, opts.keepDims);
}

/** Index of the first maximum along `axis` (i32). */
export function argmax(x: TensorLike, axis = -1, opts: ReduceOptions = {}): Tensor {
  const t = numeric(x, "argmax");
  const a = normalizeOneAxis("argmax", t, axis);
  return finish(lax.argmax(t, a), t, [a], opts.keepDims);
}

/**
 * log Σ exp(x), stable: the maximum is subtracted first (held constant for the gradient, which is
 * exact because the result does not depend on the shift). Rows of −∞ give −∞. The gradient,
 * exp(x − result), is recomputed from x where it is read: no buffer of exponentials is kept for
 * the backward pass, and the forward pass is one row-wise kernel (a cross-entropy's loss).
 */
export function logsumexp(x: TensorLike, axes?: Axes, opts: ReduceOptions = {}): Tensor {
  const [t, back] = computeInF32(numeric(x, "logsumexp"), "logsumexp");
  const ax = normalizeAxes("logsumexp", t, axes);
  const keptShape = t.shape.map((d, i) => (ax.includes(i) ? 1 : d));
  const out = customVjp(
    (u) => {
      const rawMax = lax.stopGradient(lax.reshape(lax.max(u, ax), keptShape));
      const shift = where(isFinite(rawMax), rawMax, 0);
      const shifted = lax.sub(u, lax.broadcast(shift, u.shape));
      const summed = lax.reshape(lax.sum(lax.exp(shifted), ax), keptShape);
      return lax.add(lax.log(summed), shift);
    },
    (g, [u], y) => [
      lax.mul(
        lax.broadcast(g, u.shape),
        lax.exp(lax.sub(u, lax.broadcast(y, u.shape))),
      ),
    ],
  )(t);
  return back(opts.keepDims ? out : lax.reshape(out, t.shape.filter((_, i) => !ax.includes(i))));
}
