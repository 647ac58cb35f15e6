/**
 * Indexing primitives: `gather` (take along an axis) and its transpose `scatterAdd`.
 *
 * Index semantics, identical on every backend: a negative index counts from the end once
 * (i + n), then indices are clamped to [0, n − 1] — a device kernel cannot raise, so out-of-range
 * reads are defined rather than undefined (JAX clamps gathers the same way).
 */

import type { AbstractValue } from "../graph.ts";
import * as lax from "../lax.ts";
import { definePrimitive, fail } from "../primitive.ts";
import { alloc, forEachIndex, rounder } from "../reference.ts";
import { formatShape, shapesEqual, stridesOf } from "../shape.ts";

export function normalizeIndex(i: number, n: number): number {
  const j = i < 0 ? i + n : i;
  return j < 0 ? 0 : j >= n ? n - 1 : j;
}

function gatherShape(table: AbstractValue, indices: AbstractValue, axis: number): number[] {
  return [
    ...table.shape.slice(0, axis),
    ...indices.shape,
    ...table.shape.slice(axis + 1),
  ];
}

function checkGather(op: string, inputs: readonly AbstractValue[], axis: number): void {
  const [table, indices] = inputs;
  if (indices.dtype !== "i32") fail(op, "indices must be i32", inputs);
  if (!Number.isInteger(axis) || axis < 0 || axis >= table.shape.length) {
    fail(op, `invalid axis ${axis}`, inputs);
  }
  if (table.shape[axis] === 0) fail(op, "cannot index an empty axis", inputs);
}

/**
 * Maps each output index of a gather to the flat table index it reads. `outIndex` has the gather's
 * output rank: [table dims before axis, index dims, table dims after axis].
 */
function gatherSource(
  tableShape: readonly number[],
  indexData: ArrayLike<number>,
  indexShape: readonly number[],
  axis: number,
) {
  const tableStrides = stridesOf(tableShape);
  const istr = stridesOf(indexShape);
  const indexRank = indexShape.length;
  return (outIndex: readonly number[]) => {
    let flatIndex = 0;
    for (let i = 0; i < indexRank; i++) flatIndex += outIndex[axis + i] * istr[i];
    const row = normalizeIndex(indexData[flatIndex], tableShape[axis]);
    let s = row * tableStrides[axis];
    for (let i = 0; i < axis; i++) s += outIndex[i] * tableStrides[i];
    for (let i = axis + 1; i < tableShape.length; i++) {
      s += outIndex[i - 1 + indexRank] * tableStrides[i];
    }
    return s;
  };
}

definePrimitive<{ axis: number }>({
  name: "gather",
  abstractEval(inputs, { axis }) {
    checkGather("gather", inputs, axis);
    return { shape: gatherShape(inputs[0], inputs[1], axis), dtype: inputs[0].dtype };
  },
  vjp(g, { inputs: [table, indices], params: { axis }, needs }) {
    if (!needs[0]) return [null, null];
    const zeros = lax.splat(0, table.shape, table.dtype);
    return [lax.scatterAdd(zeros, indices, g, axis), null];
  },
  evaluate([table, indices], { axis }, ctx) {
    const shape = gatherShape(table, indices, axis);
    const out = alloc(shape, table.dtype, ctx);
    const source = gatherSource(table.shape, indices.data, indices.shape, axis);
    forEachIndex(shape, (flat, index) => {
      out.data[flat] = table.data[source(index)];
    });
    return out;
  },
  wgsl: {
    kind: "inline",
    emit({ index, inputs: [table, indices], params: { axis }, read, bind }) {
      const r = indices.shape.length;
      const n = table.shape[axis];
      const raw = bind(read(1, index.slice(axis, axis + r)));
      const row = bind(`clamp(select(${raw}, ${raw} + ${n}i, ${raw} < 0i), 0i, ${n - 1}i)`);
      return read(0, [...index.slice(0, axis), row, ...index.slice(axis + r)]);
    },
  },
});

definePrimitive<{ axis: number }>({
  name: "scatterAdd",
  abstractEval(inputs, { axis }) {
    checkGather("scatterAdd", inputs, axis);
    const [operand, indices, updates] = inputs;
    if (updates.dtype !== operand.dtype) {
      fail("scatterAdd", "updates must have the operand's dtype", inputs);
    }
    const expected = gatherShape(operand, indices, axis);
    if (!shapesEqual(updates.shape, expected)) {
      fail("scatterAdd", `updates must have shape ${formatShape(expected)}`, inputs);
    }
    return { shape: operand.shape, dtype: operand.dtype };
  },
  vjp(g, { inputs: [, indices], params: { axis }, needs }) {
    return [needs[0] ? g : null, null, needs[2] ? lax.gather(g, indices, axis) : null];
  },
  // Duplicate indices accumulate, in row-major order of `updates`.
  evaluate([operand, indices, updates], { axis }, ctx) {
    const out = alloc(operand.shape, operand.dtype, ctx);
    out.data.set(operand.data);
    const round = rounder(operand.dtype, ctx);
    const source = gatherSource(operand.shape, indices.data, indices.shape, axis);
    forEachIndex(updates.shape, (flat, index) => {
      const s = source(index);
      out.data[s] = round(out.data[s] + updates.data[flat]);
    });
    return out;
  },
  wgsl: { kind: "scatter" },
});
