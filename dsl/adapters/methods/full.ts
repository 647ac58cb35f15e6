/** Data-parallel full fine-tuning: W itself is trained (mean of shard gradients, Adam(W)). */

import type { ReplicatedMethod } from "./spec.ts";

export const full: ReplicatedMethod = {
  name: "full",
  summary: "data-parallel full fine-tuning of the adapted weights",
  family: "replicated",
  usesRank: false,
  init: (w) => ({ base: null, trained: { w } }),
  weight: (_base, t) => t.w,
  trainedElements: (m, n) => m * n,
};
