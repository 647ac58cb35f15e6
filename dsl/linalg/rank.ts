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
  /** Number of matrices measured (all of the group's unless `maxWork` sampled it). */
  matrices: number;
  /** Number of matrices of this type adapted (measured or not). */
  ofMatrices: number;
  /** Mean numerical rank of the updates. */
  meanRank: number;
  /** Mean entropy effective rank of the updates. */
  meanEntropyRank: number;
  /** Largest numerical rank of any update in the group. */
  maxRank: number;
  /** ‖W_T − W_0‖_F / ‖W_0‖_F averaged over the matrices. */
  meanRelativeChange: number;
}

/**
 * Σ m·n·min(m, n) of the updates `rankByLayerType` factors by default: about 30 s of singular
 * values on 2 CPU cores (the shipped base's 28 matrices take 1% of it, GPT-2 small's 48 three times
 * as much, Qwen2.5-0.5B's 168 sixteen times).
 */
export const RANK_REPORT_WORK = 2.5e10;

/** The layer type of a weight's name: its last module name (q_proj, c_attn, …). */
const layerTypeOf = (name: string) => name.replace(/\.weight$/, "").split(".").at(-1)!;

/**
 * The names to measure within `maxWork`: all of them when they fit, otherwise the same share of
 * every layer type (at least one), spread evenly over the layers.
 */
export function rankSample(
  shapes: Record<string, readonly number[]>,
  names: readonly string[],
  maxWork: number = RANK_REPORT_WORK,
): string[] {
  const work = (n: string) => {
    const [m, k] = shapes[n];
    return m * k * Math.min(m, k);
  };
  const total = names.reduce((a, n) => a + work(n), 0);
  if (total <= maxWork) return [...names];
  const byType = Map.groupBy(names, layerTypeOf);
  return [...byType.values()].flatMap((group) => {
    const keep = Math.max(1, Math.floor((group.length * maxWork) / total));
    return Array.from(
      { length: keep },
      (_, i) => group[Math.floor(((i + 0.5) * group.length) / keep)],
    );
  });
}

/**
 * Effective rank of W_T − W_0 per matrix, grouped by layer type (the last module name). Past
 * `maxWork` (default `RANK_REPORT_WORK`) it measures an even sample of each type (`rankSample`;
 * `matrices` against `ofMatrices` says how many).
 */
export function rankByLayerType(
  before: Record<string, HostArray>,
  after: Record<string, HostArray>,
  names: readonly string[],
  opts: { threshold?: number; maxWork?: number } = {},
): LayerTypeRank[] {
  const shapes = Object.fromEntries(names.map((n) => [n, before[n].shape]));
  const measured = new Set(rankSample(shapes, names, opts.maxWork));
  const adapted = new Map<string, number>();
  for (const n of names) adapted.set(layerTypeOf(n), (adapted.get(layerTypeOf(n)) ?? 0) + 1);
  const groups = new Map<string, { ranks: number[]; entropy: number[]; change: number[] }>();
  for (const name of names.filter((n) => measured.has(n))) {
    const w0 = before[name], w1 = after[name];
    const delta: HostArray = { ...w1, data: Float32Array.from(w1.data, (v, i) => v - w0.data[i]) };
    const report = effectiveRank(delta, opts);
    const norm = (a: ArrayLike<number>) => Math.sqrt(Array.from(a).reduce((s, v) => s + v * v, 0));
    const type = layerTypeOf(name);
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
    ofMatrices: adapted.get(layerType)!,
    meanRank: avg(g.ranks),
    meanEntropyRank: avg(g.entropy),
    maxRank: Math.max(...g.ranks),
    meanRelativeChange: avg(g.change),
  }));
}
