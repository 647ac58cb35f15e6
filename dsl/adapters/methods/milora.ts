/**
 * MiLoRA (Wang et al., 2024): PiSSA's construction on the r *minor* singular components, so the
 * frozen residual keeps the principal subspace and training adapts the least used directions.
 * Needs every component, so it always takes the exact SVD.
 */

import { miloraInit } from "../init.ts";
import { loraExport, lowRankWeight, rankWithin } from "./low_rank.ts";
import type { ReplicatedMethod } from "./spec.ts";

export const milora: ReplicatedMethod = {
  name: "milora",
  summary: "data-parallel MiLoRA: minor singular components trained, the rest frozen",
  family: "replicated",
  usesRank: true,
  check: (shape, rank) => rankWithin(shape, rank),
  init(w, ctx) {
    const f = miloraInit(w, ctx.rank, ctx.scale, ctx.exact());
    return { base: f.residual, trained: { a: f.a, b: f.b } };
  },
  weight: (base, t, _frozen, scale) => lowRankWeight(base, t, scale),
  trainedElements: (m, n, r) => r * (m + n),
  peft: loraExport(true),
};
