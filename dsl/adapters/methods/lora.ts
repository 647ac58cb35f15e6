/** Data-parallel LoRA: W + s·B·A with A Kaiming-uniform and B = 0, so training starts at W. */

import { loraInit } from "../init.ts";
import { loraExport, lowRankWeight, rankWithin } from "./low_rank.ts";
import type { ReplicatedMethod } from "./spec.ts";

export const lora: ReplicatedMethod = {
  name: "lora",
  summary: "data-parallel LoRA: W + s·B·A, A Kaiming-uniform, B = 0",
  family: "replicated",
  usesRank: true,
  check: (shape, rank) => rankWithin(shape, rank),
  init(w, ctx) {
    const { a, b } = loraInit(w, ctx.rank, ctx.seed * 1000 + ctx.index, ctx.fanInFanOut);
    return { base: w, trained: { a, b } };
  },
  weight: (base, t, _frozen, scale) => lowRankWeight(base, t, scale),
  trainedElements: (m, n, r) => r * (m + n),
  peft: loraExport(false),
};
