/** Rank measures of an update ΔW (the HD-PiSSA paper's headline quantity). */

import type { HostArray } from "../host_array.ts";
import { singularValues } from "./svd.ts";

/** Rank measures of one matrix, from its singular values. */
export interface RankReport {
  /** Numerical rank: #{σᵢ > threshold·σ₁}. */
  rank: number;
  /** Entropy effective rank (Roy & Vetterli 2007): exp(−Σ pᵢ log pᵢ), pᵢ = σᵢ/Σσ. */
  entropyRank: number;
  /** The relative threshold used. */
  threshold: number;
  /** All singular values, descending. */
  singularValues: number[];
}

/** Numerical and entropy effective rank of a 2-D matrix (default threshold 1e-3, as the spec). */
export function effectiveRank(delta: HostArray, opts: { threshold?: number } = {}): RankReport {
  const threshold = opts.threshold ?? 1e-3;
  const s = Array.from(singularValues(delta));
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

/** Rank statistics of the updates of every matrix of one layer type. */
export interface LayerTypeRank {
  /** Module name shared by these matrices (q_proj, up_proj, c_attn, …). */
  layerType: string;
  /** Number of matrices in the group. */
  matrices: number;
  /** Mean numerical rank of the updates. */
  meanRank: number;
  /** Mean entropy effective rank of the updates. */
  meanEntropyRank: number;
  /** Largest numerical rank of any update in the group. */
  maxRank: number;
  /** ‖W_T − W_0‖_F / ‖W_0‖_F averaged over the matrices. */
  meanRelativeChange: number;
}

/** Effective rank of W_T − W_0 per matrix, grouped by layer type (the last module name). */
export function rankByLayerType(
  before: Record<string, HostArray>,
  after: Record<string, HostArray>,
  names: readonly string[],
  opts: { threshold?: number } = {},
): LayerTypeRank[] {
  const groups = new Map<string, { ranks: number[]; entropy: number[]; change: number[] }>();
  for (const name of names) {
    const w0 = before[name], w1 = after[name];
    const delta: HostArray = { ...w1, data: Float32Array.from(w1.data, (v, i) => v - w0.data[i]) };
    const report = effectiveRank(delta, opts);
    const norm = (a: ArrayLike<number>) => Math.sqrt(Array.from(a).reduce((s, v) => s + v * v, 0));
    const type = name.replace(/\.weight$/, "").split(".").at(-1)!;
    const g = groups.get(type) ?? { ranks: [], entropy: [], change: [] };
    g.ranks.push(report.rank);
    g.entropy.push(report.entropyRank);
    g.change.push(norm(delta.data) / (norm(w0.data) || 1));
    groups.set(type, g);
  }
  const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return [...groups].map(([layerType, g]) => ({
    layerType,
    matrices: g.ranks.length,
    meanRank: avg(g.ranks),
    meanEntropyRank: avg(g.entropy),
    maxRank: Math.max(...g.ranks),
    meanRelativeChange: avg(g.change),
  }));
}
