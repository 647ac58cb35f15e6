/**
 * DoRA (Liu et al., 2024): W' = m ⊙ V / ‖V‖ with V = W + s·B·A and ‖·‖ the norm over each output
 * feature's weights (each row of W [out, in]); the magnitude m [out] starts at ‖W‖ and is trained
 * with A and B. As in the paper (§4.3) and PEFT, ‖V‖ is treated as a constant in the backward pass.
 * PEFT loads the export with `use_dora`. For a weight stored [in, out] (GPT-2's Conv1D) the output
 * features are the columns: m is kept as a row [1, out] and the norms run down the columns, and
 * the shape of m says which way it broadcasts.
 */

import { div, mul, sqrt, square, stopGradient } from "../../ops/elementwise.ts";
import { sum } from "../../ops/reduce.ts";
import { reshape } from "../../ops/shape.ts";
import type { HostArray } from "../../host_array.ts";
import { loraInit } from "../init.ts";
import { loraExport, lowRankWeight, rankWithin } from "./low_rank.ts";
import type { ReplicatedMethod } from "./spec.ts";

export const dora: ReplicatedMethod = {
  name: "dora",
  summary: "data-parallel DoRA: magnitude ⊙ direction of W + s·B·A",
  family: "replicated",
  usesRank: true,
  check: (shape, rank) => rankWithin(shape, rank),
  init(w, ctx) {
    const { a, b } = loraInit(w, ctx.rank, ctx.seed * 1000 + ctx.index, ctx.fanInFanOut);
    return { base: w, trained: { a, b, m: ctx.fanInFanOut ? columnNorms(w) : rowNorms(w) } };
  },
  weight(base, t, _frozen, scale) {
    const v = lowRankWeight(base, t, scale);
    // m [out] scales rows; m [1, out] (a weight stored [in, out]) scales columns.
    const byColumn = t.m.shape.length === 2;
    const norm = stopGradient(sqrt(sum(square(v), byColumn ? 0 : 1, { keepDims: true })));
    return mul(div(byColumn ? t.m : reshape(t.m, [t.m.shape[0], 1]), norm), v);
  },
  trainedElements: (out, inp, r) => r * (out + inp) + out,
  peft: loraExport(false),
};

/** ‖W[:, j]‖ for every column j as a row [1, n], in f64 then rounded once. */
function columnNorms(w: HostArray): HostArray {
  const [m, n] = w.shape;
  const sums = new Float64Array(n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) sums[j] += w.data[i * n + j] ** 2;
  return { shape: [1, n], dtype: "f32", data: Float32Array.from(sums, Math.sqrt) };
}

/** ‖W[i, :]‖ for every row i, in f64 then rounded once. */
function rowNorms(w: HostArray): HostArray {
  const [m, n] = w.shape;
  const out = new Float32Array(m);
  for (let i = 0; i < m; i++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += w.data[i * n + j] ** 2;
    out[i] = Math.sqrt(s);
  }
  return { shape: [m], dtype: "f32", data: out };
}
