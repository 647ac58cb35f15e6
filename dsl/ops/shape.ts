/** Shape manipulation ops: views for the compiler, copies in the reference. */

import { type DType, promoteDTypes } from "../dtype.ts";
import { DslError } from "../errors.ts";
import { formatAval } from "../graph.ts";
import * as lax from "../lax.ts";
import { formatShape, isValidShape, sizeOf } from "../shape.ts";
import type { Tensor } from "../trace.ts";
import {
  asTensor,
  broadcastAll,
  normalizeAxes,
  normalizeOneAxis,
  type TensorLike,
} from "./coerce.ts";

/** Reshape; one dimension may be −1 and is inferred. */
export function reshape(x: TensorLike, shape: readonly number[]): Tensor {
  const t = asTensor(x, "reshape");
  const unknown = shape.filter((d) => d === -1).length;
  const known = sizeOf(shape.filter((d) => d !== -1));
  const resolved = shape.map((d) => (d === -1 ? (known === 0 ? 0 : t.size / known) : d));
  if (unknown > 1 || !isValidShape(resolved) || sizeOf(resolved) !== t.size) {
    throw new DslError(
      "reshape",
      `cannot reshape ${formatAval(t)} (${t.size} elements) to ${formatShape(shape)}`,
      [formatAval(t)],
    );
  }
  return lax.reshape(t, resolved);
}

/** Permutes axes; reverses them when `perm` is omitted. Negative entries count from the end. */
export function transpose(x: TensorLike, perm?: readonly number[]): Tensor {
  const t = asTensor(x, "transpose");
  const p = perm === undefined
    ? t.shape.map((_, i) => t.ndim - 1 - i)
    : perm.map((a) => (a < 0 ? a + t.ndim : a));
  const valid = p.length === t.ndim && [...p].sort((a, b) => a - b).every((a, i) => a === i);
  if (!valid) {
    throw new DslError(
      "transpose",
      `${JSON.stringify(perm)} is not a permutation of the axes of ${formatAval(t)}`,
      [formatAval(t)],
    );
  }
  return lax.transpose(t, p);
}

/** numpy `broadcast_to`. */
export function broadcastTo(x: TensorLike, shape: readonly number[]): Tensor {
  const t = asTensor(x, "broadcastTo");
  const ok = isValidShape(shape) && shape.length >= t.ndim &&
    t.shape.every((d, i) => d === 1 || d === shape[shape.length - t.ndim + i]);
  if (!ok) {
    throw new DslError(
      "broadcastTo",
      `cannot broadcast ${formatAval(t)} to ${formatShape(shape)}`,
      [formatAval(t)],
    );
  }
  const lead = shape.length - t.ndim;
  return lax.broadcast(lax.reshape(t, [...new Array(lead).fill(1), ...t.shape]), shape);
}

/** Inserts size-1 axes at the given positions of the result. */
export function expandDims(x: TensorLike, axis: number | readonly number[]): Tensor {
  const t = asTensor(x, "expandDims");
  const list = typeof axis === "number" ? [axis] : [...axis];
  const rank = t.ndim + list.length;
  const axes = list.map((a) => normalizeOneAxis("expandDims", t, a, rank));
  if (new Set(axes).size !== axes.length) {
    throw new DslError("expandDims", `repeated axis in ${JSON.stringify(list)}`, [formatAval(t)]);
  }
  const shape: number[] = [];
  let j = 0;
  for (let i = 0; i < rank; i++) shape.push(axes.includes(i) ? 1 : t.shape[j++]);
  return lax.reshape(t, shape);
}

/** Removes size-1 axes (all of them when `axis` is omitted). */
export function squeeze(x: TensorLike, axis?: number | readonly number[]): Tensor {
  const t = asTensor(x, "squeeze");
  const axes = axis === undefined
    ? t.shape.flatMap((d, i) => (d === 1 ? [i] : []))
    : normalizeAxes("squeeze", t, axis);
  for (const a of axes) {
    if (t.shape[a] !== 1) {
      throw new DslError("squeeze", `axis ${a} of ${formatAval(t)} has size ${t.shape[a]}, not 1`, [
        formatAval(t),
      ]);
    }
  }
  return lax.reshape(t, t.shape.filter((_, i) => !axes.includes(i)));
}

/**
 * Python-style slicing along the leading axes: negative bounds count from the end, bounds are
 * clamped to the axis, `ends[i]` may be null for "to the end"; missing axes are taken whole.
 */
export function slice(
  x: TensorLike,
  starts: readonly number[],
  ends?: readonly (number | null | undefined)[],
): Tensor {
  const t = asTensor(x, "slice");
  if (starts.length > t.ndim || (ends && ends.length > t.ndim)) {
    throw new DslError(
      "slice",
      `${Math.max(starts.length, ends?.length ?? 0)} bounds for ${formatAval(t)}`,
      [formatAval(t)],
    );
  }
  const clampIndex = (v: number, d: number) => Math.min(d, Math.max(0, v < 0 ? v + d : v));
  const s = t.shape.map((d, i) => clampIndex(starts[i] ?? 0, d));
  const e = t.shape.map((d, i) => Math.max(s[i], clampIndex(ends?.[i] ?? d, d)));
  return lax.slice(t, s, e);
}

/** Pads with a constant: `widths[i] = [before, after]` for each leading axis. */
export function pad(
  x: TensorLike,
  widths: readonly (readonly [number, number])[],
  value = 0,
): Tensor {
  const t = asTensor(x, "pad");
  const lo = t.shape.map((_, i) => widths[i]?.[0] ?? 0);
  const hi = t.shape.map((_, i) => widths[i]?.[1] ?? 0);
  if (widths.length > t.ndim || [...lo, ...hi].some((p) => !Number.isInteger(p) || p < 0)) {
    throw new DslError("pad", `invalid widths ${JSON.stringify(widths)}`, [formatAval(t)]);
  }
  return lax.pad(t, lo, hi, value);
}

function commonDType(xs: readonly Tensor[]): DType {
  return xs.map((x) => x.dtype).reduce(promoteDTypes);
}

/** Joins tensors along an existing axis. */
export function concat(xs: readonly TensorLike[], axis = 0): Tensor {
  if (xs.length === 0) throw new DslError("concat", "needs at least one tensor");
  const ts = xs.map((x) => asTensor(x, "concat"));
  const dtype = commonDType(ts);
  const a = normalizeOneAxis("concat", ts[0], axis);
  const ok = ts.every((t) =>
    t.ndim === ts[0].ndim && t.shape.every((d, i) => i === a || d === ts[0].shape[i])
  );
  if (!ok) {
    const shapes = ts.map(formatAval);
    throw new DslError(
      "concat",
      `shapes ${shapes.join(", ")} differ outside axis ${axis}`,
      shapes,
    );
  }
  return lax.concat(ts.map((t) => lax.cast(t, dtype)), a);
}

/** Joins tensors along a new axis. */
export function stack(xs: readonly TensorLike[], axis = 0): Tensor {
  if (xs.length === 0) throw new DslError("stack", "needs at least one tensor");
  const ts = broadcastAll("stack", xs.map((x) => asTensor(x, "stack")));
  return concat(ts.map((t) => expandDims(t, axis)), axis);
}

/**
 * Takes slices of `table` along `axis` at `indices` (i32); the result has the index shape in place
 * of that axis. Negative indices count from the end; out-of-range indices are clamped.
 */
export function take(table: TensorLike, indices: TensorLike | number[], axis = 0): Tensor {
  const t = asTensor(table, "take");
  const idx = Array.isArray(indices)
    ? lax.constant({ shape: [indices.length], dtype: "i32", data: Int32Array.from(indices) })
    : typeof indices === "number"
    ? lax.scalar(indices, "i32")
    : asTensor(indices, "take");
  if (idx.dtype !== "i32") {
    throw new DslError("take", `indices must be i32 (got ${formatAval(idx)})`, [
      formatAval(t),
      formatAval(idx),
    ]);
  }
  return lax.gather(t, idx, normalizeOneAxis("take", t, axis));
}

/** Adds `updates` into a copy of `operand` at `indices` along `axis` (duplicates accumulate). */
export function scatterAdd(
  operand: TensorLike,
  indices: TensorLike,
  updates: TensorLike,
  axis = 0,
): Tensor {
  const t = asTensor(operand, "scatterAdd");
  const a = normalizeOneAxis("scatterAdd", t, axis);
  return lax.scatterAdd(
    t,
    asTensor(indices, "scatterAdd"),
    lax.cast(asTensor(updates, "scatterAdd"), t.dtype),
    a,
  );
}

/** One-hot encoding along a new last axis of size `depth`. */
export function oneHot(
  indices: TensorLike,
  depth: number,
  opts: { dtype?: DType } = {},
): Tensor {
  const idx = asTensor(indices, "oneHot");
  if (idx.dtype !== "i32") {
    throw new DslError("oneHot", `indices must be i32 (got ${formatAval(idx)})`, [
      formatAval(idx),
    ]);
  }
  const shape = [...idx.shape, depth];
  const classes = lax.iota(shape, shape.length - 1, "i32");
  const expanded = lax.broadcast(lax.reshape(idx, [...idx.shape, 1]), shape);
  return lax.cast(lax.equal(expanded, classes), opts.dtype ?? "f32");
}
