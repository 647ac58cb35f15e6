/**
 * View-like primitives (reshape, transpose, broadcast, slice, pad, concat). The reference copies;
 * the compiler turns them into index arithmetic inside the consuming kernel.
 */

import type { AbstractValue } from "../graph.ts";
import type { HostArray } from "../host_array.ts";
import * as lax from "../lax.ts";
import { definePrimitive, type EvalContext, fail } from "../primitive.ts";
import { alloc, forEachIndex } from "../reference.ts";
import { formatShape, isValidShape, sizeOf, stridesOf } from "../shape.ts";

/** Copies `x` into a new array of `outShape`, reading input element `source(index)` (or -1 → fill). */
function gatherCopy(
  x: HostArray,
  outShape: readonly number[],
  ctx: EvalContext,
  source: (index: number[]) => number,
  fill = 0,
): HostArray {
  const out = alloc(outShape, x.dtype, ctx);
  forEachIndex(outShape, (flat, index) => {
    const s = source(index);
    out.data[flat] = s < 0 ? fill : x.data[s];
  });
  return out;
}

function dot(index: readonly number[], strides: readonly number[]): number {
  let s = 0;
  for (let i = 0; i < index.length; i++) s += index[i] * strides[i];
  return s;
}

definePrimitive<{ shape: number[] }>({
  name: "reshape",
  abstractEval([x], { shape }) {
    if (!isValidShape(shape) || sizeOf(shape) !== sizeOf(x.shape)) {
      fail("reshape", `cannot reshape to ${formatShape(shape ?? [])}`, [x]);
    }
    return { shape, dtype: x.dtype };
  },
  vjp: (g, { inputs: [x] }) => [lax.reshape(g, x.shape)],
  evaluate([x], { shape }, ctx) {
    const out = alloc(shape, x.dtype, ctx);
    out.data.set(x.data);
    return out;
  },
  wgsl: {
    kind: "inline",
    emit({ index, inputs: [x], output, read, flatten, unravel }) {
      // Adding or removing size-1 axes needs no division: align the other axes directly.
      const keep = (shape: readonly number[]) => shape.flatMap((d, i) => (d === 1 ? [] : [i]));
      const [inAxes, outAxes] = [keep(x.shape), keep(output.shape)];
      const aligned = inAxes.length === outAxes.length &&
        inAxes.every((a, i) => x.shape[a] === output.shape[outAxes[i]]);
      if (aligned) {
        const inIndex = x.shape.map(() => "0i");
        inAxes.forEach((a, i) => (inIndex[a] = index[outAxes[i]]));
        return read(0, inIndex);
      }
      return read(0, unravel(flatten(index, output.shape), x.shape));
    },
  },
});

export function invertPermutation(perm: readonly number[]): number[] {
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => (inv[p] = i));
  return inv;
}

definePrimitive<{ perm: number[] }>({
  name: "transpose",
  abstractEval([x], { perm }) {
    const ok = Array.isArray(perm) && perm.length === x.shape.length &&
      [...perm].sort((a, b) => a - b).every((p, i) => p === i);
    if (!ok) fail("transpose", `invalid permutation ${JSON.stringify(perm)}`, [x]);
    return { shape: perm.map((p) => x.shape[p]), dtype: x.dtype };
  },
  vjp: (g, { params: { perm } }) => [lax.transpose(g, invertPermutation(perm))],
  evaluate([x], { perm }, ctx) {
    const strides = stridesOf(x.shape);
    const permuted = perm.map((p) => strides[p]);
    return gatherCopy(x, perm.map((p) => x.shape[p]), ctx, (index) => dot(index, permuted));
  },
  wgsl: {
    kind: "inline",
    emit({ index, params: { perm }, read }) {
      const inIndex = new Array<string>(perm.length);
      perm.forEach((p, i) => (inIndex[p] = index[i]));
      return read(0, inIndex);
    },
  },
});

definePrimitive<{ shape: number[] }>({
  name: "broadcast",
  abstractEval([x], { shape }) {
    const ok = isValidShape(shape) && shape.length === x.shape.length &&
      x.shape.every((d, i) => d === shape[i] || d === 1);
    if (!ok) fail("broadcast", `cannot broadcast to ${formatShape(shape ?? [])}`, [x]);
    return { shape, dtype: x.dtype };
  },
  vjp(g, { inputs: [x] }) {
    const axes = x.shape.flatMap((d, i) => (d === 1 && g.shape[i] !== 1 ? [i] : []));
    return [lax.reshape(lax.sum(g, axes), x.shape)];
  },
  evaluate([x], { shape }, ctx) {
    const strides = stridesOf(x.shape).map((s, i) => (x.shape[i] === 1 ? 0 : s));
    return gatherCopy(x, shape, ctx, (index) => dot(index, strides));
  },
  wgsl: {
    kind: "inline",
    emit: ({ index, inputs: [x], read }) =>
      read(0, index.map((ix, i) => (x.shape[i] === 1 ? "0i" : ix))),
  },
});

definePrimitive<{ starts: number[]; ends: number[] }>({
  name: "slice",
  abstractEval([x], { starts, ends }) {
    const r = x.shape.length;
    const ok = starts.length === r && ends.length === r &&
      starts.every((s, i) => Number.isInteger(s) && s >= 0 && s <= ends[i]) &&
      ends.every((e, i) => Number.isInteger(e) && e <= x.shape[i]);
    if (!ok) {
      fail("slice", `invalid bounds starts=${formatShape(starts)} ends=${formatShape(ends)}`, [x]);
    }
    return { shape: starts.map((s, i) => ends[i] - s), dtype: x.dtype };
  },
  vjp: (g, { inputs: [x], params: { starts, ends } }) => [
    lax.pad(g, starts, ends.map((e, i) => x.shape[i] - e)),
  ],
  evaluate([x], { starts, ends }, ctx) {
    const strides = stridesOf(x.shape);
    const base = dot(starts, strides);
    return gatherCopy(x, starts.map((s, i) => ends[i] - s), ctx, (ix) => base + dot(ix, strides));
  },
  wgsl: {
    kind: "inline",
    emit: ({ index, params: { starts }, read }) =>
      read(0, index.map((ix, i) => (starts[i] === 0 ? ix : `(${ix} + ${starts[i]}i)`))),
  },
});

definePrimitive<{ lo: number[]; hi: number[]; value: number }>({
  name: "pad",
  abstractEval([x], { lo, hi, value }) {
    const r = x.shape.length;
    const ok = lo.length === r && hi.length === r &&
      [...lo, ...hi].every((p) => Number.isInteger(p) && p >= 0) && typeof value === "number";
    if (!ok) fail("pad", `invalid padding lo=${formatShape(lo)} hi=${formatShape(hi)}`, [x]);
    return { shape: x.shape.map((d, i) => d + lo[i] + hi[i]), dtype: x.dtype };
  },
  vjp: (g, { inputs: [x], params: { lo } }) => [
    lax.slice(g, lo, lo.map((l, i) => l + x.shape[i])),
  ],
  evaluate([x], { lo, hi, value }, ctx) {
    const strides = stridesOf(x.shape);
    return gatherCopy(x, x.shape.map((d, i) => d + lo[i] + hi[i]), ctx, (index) => {
      let s = 0;
      for (let i = 0; i < index.length; i++) {
        const j = index[i] - lo[i];
        if (j < 0 || j >= x.shape[i]) return -1;
        s += j * strides[i];
      }
      return s;
    }, value);
  },
  wgsl: {
    kind: "inline",
    emit({ index, inputs: [x], params: { lo, hi, value }, read, bind, literal }) {
      const inner = index.map((ix, i) => (lo[i] === 0 ? ix : bind(`(${ix} - ${lo[i]}i)`)));
      const conds = inner.flatMap((ix, i) =>
        lo[i] === 0 && hi[i] === 0 ? [] : [`(${ix} >= 0i && ${ix} < ${x.shape[i]}i)`]
      );
      const clamped = inner.map((ix, i) => `clamp(${ix}, 0i, ${Math.max(0, x.shape[i] - 1)}i)`);
      const valid = conds.length ? conds.join(" && ") : "true";
      return `select(${literal(value, x.dtype)}, ${read(0, clamped)}, ${valid})`;
    },
  },
});

definePrimitive<{ axis: number }>({
  name: "concat",
  abstractEval(inputs: readonly AbstractValue[], { axis }) {
    if (inputs.length === 0) fail("concat", "needs at least one operand");
    const first = inputs[0];
    if (!Number.isInteger(axis) || axis < 0 || axis >= first.shape.length) {
      fail("concat", `invalid axis ${axis}`, inputs);
    }
    for (const x of inputs) {
      if (x.dtype !== first.dtype) fail("concat", "operands must have the same dtype", inputs);
      const ok = x.shape.length === first.shape.length &&
        x.shape.every((d, i) => i === axis || d === first.shape[i]);
      if (!ok) fail("concat", `shapes differ outside axis ${axis}`, inputs);
    }
    const shape = [...first.shape];
    shape[axis] = inputs.reduce((n, x) => n + x.shape[axis], 0);
    return { shape, dtype: first.dtype };
  },
  vjp(g, { inputs, params: { axis }, needs }) {
    let offset = 0;
    return inputs.map((x, k) => {
      const starts = g.shape.map((_, i) => (i === axis ? offset : 0));
      const ends = g.shape.map((d, i) => (i === axis ? offset + x.shape[axis] : d));
      offset += x.shape[axis];
      return needs[k] ? lax.slice(g, starts, ends) : null;
    });
  },
  evaluate(inputs, { axis }, ctx) {
    const shape = [...inputs[0].shape];
    shape[axis] = inputs.reduce((n, x) => n + x.shape[axis], 0);
    const out = alloc(shape, inputs[0].dtype, ctx);
    const outStrides = stridesOf(shape);
    let offset = 0;
    for (const x of inputs) {
      forEachIndex(x.shape, (flat, index) => {
        out.data[dot(index, outStrides) + offset * outStrides[axis]] = x.data[flat];
      });
      offset += x.shape[axis];
    }
    return out;
  },
  wgsl: {
    kind: "inline",
    emit({ index, inputs, params: { axis }, read, bind }) {
      // Read every operand at a clamped position and select the one whose range holds the index.
      const ends: number[] = [];
      inputs.reduce((end, x) => (ends.push(end + x.shape[axis]), end + x.shape[axis]), 0);
      const at = bind(index[axis]);
      let result = "";
      for (let k = inputs.length - 1; k >= 0; k--) {
        const start = k === 0 ? 0 : ends[k - 1];
        const local = `clamp(${at} - ${start}i, 0i, ${Math.max(0, inputs[k].shape[axis] - 1)}i)`;
        const value = read(k, index.map((ix, i) => (i === axis ? local : ix)));
        result = k === inputs.length - 1
          ? value
          : `select(${result}, ${value}, ${at} < ${ends[k]}i)`;
      }
      return result;
    },
  },
});
