/** Rank measures of an update ΔW (the HD-PiSSA paper's headline quantity). */

import type { HostArray } from "../host_array.ts";
import { svdOf } from "./svd.ts";

export interface RankReport {
  /** Numerical rank: #{σᵢ > threshold·σ₁}. */
  rank: number;
  /** Entropy effective rank (Roy & Vetterli 2007): exp(−Σ pᵢ log pᵢ), pᵢ = σᵢ/Σσ. */
  entropyRank: number;
  /** The relative threshold used. */
  threshold: number;
  singularValues: number[];
}

/** Numerical and entropy effective rank of a 2-D matrix (default threshold 1e-3, as the spec). */
export function effectiveRank(delta: HostArray, opts: { threshold?: number } = {}): RankReport {
  const threshold = opts.threshold ?? 1e-3;
  const s = Array.from(svdOf(delta).s);
  const top = s[0] ?? 0;
  const total = s.reduce((a, b) => a + b, 0);
  if (top === 0) return { rank: 0, entropyRank: 0, threshold, singularValues: s };
  const entropy = s.reduce((h, v) => (v > 0 ? h - (v / total) * Math.log(v / total) : h), 0);
  return {
    rank: s.filter((v) => v > threshold * top).length,
    entropyRank: Math.exp(entropy),
    threshold,
    singularValues: s,
  };
}
