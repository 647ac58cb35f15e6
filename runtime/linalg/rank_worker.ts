/**
 * The worker of `rankByLayerTypeInWorkers`: measures the updates it is sent, one message each, and
 * replies with the numerical and entropy ranks (or the error's message).
 */

import type { HostArray } from "../../dsl/host_array.ts";
import { effectiveRank, type SingularValueMethod } from "../../dsl/linalg/rank.ts";

/** One update to measure. */
export interface RankJob {
  /** Index of the job in the caller's list. */
  index: number;
  /** ΔW = W_T − W_0. */
  delta: HostArray;
  /** Relative threshold of the numerical rank. */
  threshold?: number;
  /** How singular values are computed. */
  method?: SingularValueMethod | "auto";
}

/** The measures of one job, or why it failed. */
export type RankReply =
  | { index: number; rank: number; entropyRank: number }
  | { index: number; error: string };

const scope = self as unknown as Worker;

scope.onmessage = (e: MessageEvent<RankJob>) => {
  const { index, delta, threshold, method } = e.data;
  try {
    const { rank, entropyRank } = effectiveRank(delta, { threshold, method });
    scope.postMessage({ index, rank, entropyRank } satisfies RankReply);
  } catch (err) {
    scope.postMessage({ index, error: err instanceof Error ? err.message : String(err) });
  }
};
