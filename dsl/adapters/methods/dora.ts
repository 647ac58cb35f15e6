/**
 * DoRA (Liu et al., 2024): W' = m ⊙ V / ‖V‖ with V = W + s·B·A and ‖·‖ the norm of each output
 * row (each row of W [out, in]); the magnitude m [out] starts at ‖W‖ and is trained with A and B.
 * As in the paper (§4.3) and PEFT, ‖V‖ is treated as a constant in the backward pass. PEFT loads
 * the export with `use_dora`.
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
    const { a, b } = loraInit(w, ctx.rank, ctx.seed * 1000 + ctx.index);
    return { base: w, trained: { a, b, m: rowNorms(w) } };
  },
  weight(base, t, _frozen, scale) {
    const v = lowRankWeight(base, t, scale);
    const norm = stopGradient(sqrt(sum(square(v), 1, { keepDims: true })));
    return mul(div(reshape(t.m, [t.m.shape[0], 1]), norm), v);
  },
  trainedElements: (m, n, r) => r * (m + n) + m,
  peft: loraExport(false),
};

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
