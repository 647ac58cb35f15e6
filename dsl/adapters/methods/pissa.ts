/**
 * Data-parallel PiSSA: the adapter starts as the r principal singular components of W and the
 * frozen base is the residual W − s·B·A.
 */

import { pissaInit } from "../init.ts";
import { loraExport, lowRankWeight, rankWithin } from "./low_rank.ts";
import type { ReplicatedMethod } from "./spec.ts";

export const pissa: ReplicatedMethod = {
  name: "pissa",
  summary: "data-parallel PiSSA: principal components trained, residual frozen",
  family: "replicated",
  usesRank: true,
  check: (shape, rank) => rankWithin(shape, rank),
  svdComponents: (rank) => rank,
  async init(w, ctx) {
    // α' = s·r gives the scale s whether it is α/r or rsLoRA's α/√r.
    const f = pissaInit(w, ctx.rank, ctx.scale * ctx.rank, await ctx.leading(ctx.rank));
    return { base: f.residual, trained: { a: f.a, b: f.b } };
  },
  weight: (base, t, _frozen, scale) => lowRankWeight(base, t, scale),
  trainedElements: (m, n, r) => r * (m + n),
  peft: loraExport(true),
};
