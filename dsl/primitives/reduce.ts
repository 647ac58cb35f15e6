/**
 * Reductions over a set of axes (the axes are dropped; keepDims is a reshape in the ops layer).
 * The reference sums f32 in f64 and rounds once (correctly rounded but for double rounding), so it
 * is an oracle for every summation order a device uses; docs/dsl.md gives the device's order and
 * error bound.
 */

import { isFloat } from "../dtype.ts";
import type { AbstractValue } from "../graph.ts";
import type { HostArray } from "../host_array.ts";
import * as lax from "../lax.ts";
import { definePrimitive, type EvalContext, fail, requireDTypes } from "../primitive.ts";
import { alloc, forEachIndex } from "../reference.ts";
import { stridesOf } from "../shape.ts";
import type { Tensor } from "../trace.ts";

interface ReduceParams {
  axes: number[];
}

function reduceRule(op: string, [x]: readonly AbstractValue[], axes: number[]): AbstractValue {
  requireDTypes(op, [x], ["f32", "f16", "i32"]);
  const seen = new Set<number>();
  for (const a of axes) {
    if (!Number.isInteger(a) || a < 0 || a >= x.shape.length || seen.has(a)) {
      fail(op, `invalid axes ${JSON.stringify(axes)} for rank ${x.shape.length}`, [x]);
    }
    seen.add(a);
  }
  return { shape: x.shape.filter((_, i) => !seen.has(i)), dtype: x.dtype };
}

/** Output shape with reduced axes kept as 1 (for broadcasting the output back). */
export function keptShape(inShape: readonly number[], axes: readonly number[]): number[] {
  return inShape.map((d, i) => (axes.includes(i) ? 1 : d));
}

function broadcastBack(t: Tensor, inShape: readonly number[], axes: readonly number[]): Tensor {
  return lax.broadcast(lax.reshape(t, keptShape(inShape, axes)), inShape);
}

function reduceEval(
  x: HostArray,
  axes: number[],
  ctx: EvalContext,
  init: number,
  step: (acc: number, v: number) => number,
): HostArray {
  const outShape = x.shape.filter((_, i) => !axes.includes(i));
  const out = alloc(outShape, x.dtype, ctx);
  // f32 accumulates in f64 and rounds once when stored: the oracle's error is one rounding, far
  // below any order the device sums in. i32 wraps at every step, as on the device.
  const acc = new Float64Array(out.data.length).fill(init);
  const wrap = isFloat(x.dtype) ? (v: number) => v : (v: number) => v | 0;
  const outStrides = stridesOf(keptShape(x.shape, axes));
  forEachIndex(x.shape, (flat, index) => {
    let o = 0;
    for (let i = 0; i < index.length; i++) if (!axes.includes(i)) o += index[i] * outStrides[i];
    acc[o] = wrap(step(acc[o], x.data[flat]));
  });
  out.data.set(acc);
  return out;
}

definePrimitive<ReduceParams>({
  name: "sum",
  abstractEval: (inputs, { axes }) => reduceRule("sum", inputs, axes),
  vjp: (g, { inputs: [x], params }) => [broadcastBack(g, x.shape, params.axes)],
  evaluate: ([x], { axes }, ctx) => reduceEval(x, axes, ctx, 0, (acc, v) => acc + v),
  wgsl: { kind: "reduce", reduction: "sum" },
});

definePrimitive<ReduceParams>({
  name: "max",
  abstractEval: (inputs, { axes }) => reduceRule("max", inputs, axes),
  // Ties share the cotangent equally (as JAX does): each maximal element gets g / count.
  vjp(g, { inputs: [x], output, params: { axes } }) {
    const isMax = lax.cast(lax.equal(x, broadcastBack(output, x.shape, axes)), x.dtype);
    const count = lax.sum(isMax, axes);
    return [lax.mul(broadcastBack(lax.div(g, count), x.shape, axes), isMax)];
  },
  evaluate: ([x], { axes }, ctx) =>
    reduceEval(
      x,
      axes,
      ctx,
      isFloat(x.dtype) ? -Infinity : -2147483648,
      // Once the accumulator is NaN it stays NaN (NaN propagates, as in numpy and JAX).
      (acc, v) => (Number.isNaN(acc) ? acc : v > acc || Number.isNaN(v) ? v : acc),
    ),
  wgsl: { kind: "reduce", reduction: "max" },
});

definePrimitive<{ axis: number }>({
  name: "argmax",
  abstractEval([x], { axis }) {
    requireDTypes("argmax", [x], ["f32", "f16", "i32"]);
    if (!Number.isInteger(axis) || axis < 0 || axis >= x.shape.length) {
      fail("argmax", `invalid axis ${axis}`, [x]);
    }
    if (x.shape[axis] === 0) fail("argmax", "cannot take argmax of an empty axis", [x]);
    return { shape: x.shape.filter((_, i) => i !== axis), dtype: "i32" };
  },
  // First index of the maximum; a NaN counts as the maximum (numpy's convention).
  evaluate([x], { axis }, ctx) {
    const outShape = x.shape.filter((_, i) => i !== axis);
    const out = alloc(outShape, "i32", ctx);
    const best = new Float64Array(out.data.length).fill(-Infinity);
    const seen = new Uint8Array(out.data.length);
    const outStrides = stridesOf(keptShape(x.shape, [axis]));
    forEachIndex(x.shape, (flat, index) => {
      let o = 0;
      for (let i = 0; i < index.length; i++) if (i !== axis) o += index[i] * outStrides[i];
      const v = x.data[flat];
      if (!seen[o] || (!Number.isNaN(best[o]) && (v > best[o] || Number.isNaN(v)))) {
        best[o] = v;
        out.data[o] = index[axis];
        seen[o] = 1;
      }
    });
    return out;
  },
  wgsl: { kind: "reduce", reduction: "argmax" },
});
