/** Rank measures of an update ΔW (the HD-PiSSA paper's headline quantity). */

import type { HostArray } from "../host_array.ts";
import { gramSingularValues } from "./gram_singular_values.ts";
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
  /**
   * How they were computed: "golub-kahan" (exact to ≈ 1e-15·σ₁) or "gram" (values at or below
   * √(2m·ε)·‖ΔW‖_F are 0; see gram_singular_values.ts).
   */
  method: SingularValueMethod;
}

/** How `effectiveRank` computes singular values ("auto": see `effectiveRank`). */
export type SingularValueMethod = "golub-kahan" | "gram";

/** A side ratio from which the Gram matrix is the faster way to the singular values. */
const GRAM_ASPECT = 2;

/**
 * The singular values of `w`, descending: through AᵀA ("gram") when one side is at least twice the
 * other and the Gram path resolves values down to `resolve`·σ₁ with a factor of 10 to spare, else
 * by Golub–Kahan.
 */
function rankSingularValues(
  w: HostArray,
  resolve: number,
  method: SingularValueMethod | "auto",
): { values: number[]; method: SingularValueMethod } {
  const [rows, cols] = w.shape;
  const aspect = Math.max(rows, cols) / Math.min(rows, cols);
  if (method === "gram" || (method === "auto" && aspect >= GRAM_ASPECT)) {
    const { values, floor } = gramSingularValues(w);
    if (method === "gram" || values[0] === 0 || 10 * floor < resolve * values[0]) {
      return { values: Array.from(values), method: "gram" };
    }
  }
  return { values: Array.from(singularValues(w)), method: "golub-kahan" };
}

/**
 * Numerical and entropy effective rank of a 2-D matrix (default threshold 1e-3, as the spec).
 * `method` "auto" (default) takes the Gram path for matrices with one side at least twice the other
 * (about 4× faster on GPT-2's 3072×768) when its floor √(2m·ε)·‖ΔW‖_F is below a tenth of
 * threshold·σ₁: every value farther than 0.5% from threshold·σ₁ is then counted as Golub–Kahan
 * counts it, and the entropy rank leaves out only values below the floor.
 */
export function effectiveRank(
  delta: HostArray,
  opts: { threshold?: number; method?: SingularValueMethod | "auto" } = {},
): RankReport {
  const threshold = opts.threshold ?? 1e-3;
  const { values: s, method } = rankSingularValues(delta, threshold, opts.method ?? "auto");
  const top = s[0] ?? 0;
  const total = s.reduce((a, b) => a + b, 0);
  if (top === 0) return { rank: 0, entropyRank: 0, threshold, singularValues: s, method };
  const entropy = s.reduce((h, v) => (v > 0 ? h - (v / total) * Math.log(v / total) : h), 0);
  return {
    rank: s.filter((v) => v > threshold * top).length,
    entropyRank: Math.exp(entropy),
    threshold,
    singularValues: s,
    method,
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
 * Σ m·n·min(m, n) of the updates `rankByLayerType` factors by default: about 34 s of Golub–Kahan
 * on one core, 12 s with the Gram path where it applies, 8 s in two workers on GPT-2 small's shapes
 * (the shipped base's 28 matrices take 1% of it, GPT-2 small's 48 three times as much,
 * Qwen2.5-0.5B's 168 sixteen times).
 */
export const RANK_REPORT_WORK = 2.5e10;

/** The module path of a weight after its layer index ("h.3.attn.c_proj.weight" → attn.c_proj). */
function modulePath(name: string): string[] {
  const parts = name.replace(/\.weight$/, "").split(".");
  const index = parts.findLastIndex((p) => /^\d+$/.test(p));
  return parts.slice(index + 1);
}

/**
 * The layer type of each name: its last module name (q_proj, c_attn, …), or its module path after
 * the layer index where two kinds of module share the last name (GPT-2's attn.c_proj and
 * mlp.c_proj, an attention output and an MLP down projection).
 */
export function layerTypes(names: readonly string[]): Map<string, string> {
  const paths = new Map(names.map((n) => [n, modulePath(n)]));
  const pathsOfLast = new Map<string, Set<string>>();
  for (const path of paths.values()) {
    const last = path.at(-1)!;
    pathsOfLast.set(last, (pathsOfLast.get(last) ?? new Set()).add(path.join(".")));
  }
  return new Map(
    [...paths].map(([n, path]) => {
      const last = path.at(-1)!;
      return [n, pathsOfLast.get(last)!.size > 1 ? path.join(".") : last];
    }),
  );
}

/** The work of one matrix's singular values, as `RANK_REPORT_WORK` counts it: m·n·min(m, n). */
export function updateWork(shape: readonly number[]): number {
  const [m, n] = shape;
  return m * n * Math.min(m, n);
}

/**
 * The names to measure within `maxWork`: all of them when they fit, otherwise the same share of
 * every layer type (at least one), spread evenly over the layers.
 */
export function rankSample(
  shapes: Record<string, readonly number[]>,
  names: readonly string[],
  maxWork: number = RANK_REPORT_WORK,
): string[] {
  const work = (n: string) => updateWork(shapes[n]);
  const total = names.reduce((a, n) => a + work(n), 0);
  if (total <= maxWork) return [...names];
  const types = layerTypes(names);
  const byType = Map.groupBy(names, (n) => types.get(n)!);
  return [...byType.values()].flatMap((group) => {
    const keep = Math.max(1, Math.floor((group.length * maxWork) / total));
    return Array.from(
      { length: keep },
      (_, i) => group[Math.floor(((i + 0.5) * group.length) / keep)],
    );
  });
}

/** Options of the rank report: `effectiveRank`'s, and the work budget of `rankSample`. */
export interface RankReportOptions {
  /** Relative threshold of the numerical rank (default 1e-3). */
  threshold?: number;
  /** Budget of Σ m·n·min(m, n) (default `RANK_REPORT_WORK`). */
  maxWork?: number;
  /** How singular values are computed (default "auto", see `effectiveRank`). */
  method?: SingularValueMethod | "auto";
}

/** What the report keeps of one matrix's update. */
export interface UpdateRank {
  /** Numerical rank of ΔW. */
  rank: number;
  /** Entropy effective rank of ΔW. */
  entropyRank: number;
  /** ‖ΔW‖_F / ‖W₀‖_F. */
  relativeChange: number;
}

/** ΔW = W_T − W_0 of one matrix, and ‖ΔW‖_F / ‖W₀‖_F. */
export function updateOf(
  w0: HostArray,
  w1: HostArray,
): { delta: HostArray; relativeChange: number } {
  const data = new Float32Array(w1.data.length);
  let dd = 0, d0 = 0;
  for (let i = 0; i < data.length; i++) {
    const x = (data[i] = w1.data[i] - w0.data[i]);
    dd += x * x;
    d0 += w0.data[i] * w0.data[i];
  }
  return { delta: { ...w1, data }, relativeChange: Math.sqrt(dd) / (Math.sqrt(d0) || 1) };
}

/** The rank measures of one matrix's update W_T − W_0. */
export function measureUpdate(
  w0: HostArray,
  w1: HostArray,
  opts: RankReportOptions = {},
): UpdateRank {
  const { delta, relativeChange } = updateOf(w0, w1);
  const { rank, entropyRank } = effectiveRank(delta, opts);
  return { rank, entropyRank, relativeChange };
}

/**
 * Groups the measured updates (`measured`, keyed by name) by layer type, counting every adapted
 * matrix of the type in `ofMatrices`.
 */
export function groupRanks(
  names: readonly string[],
  measured: ReadonlyMap<string, UpdateRank>,
): LayerTypeRank[] {
  const types = layerTypes(names);
  const adapted = new Map<string, number>();
  for (const n of names) adapted.set(types.get(n)!, (adapted.get(types.get(n)!) ?? 0) + 1);
  const groups = new Map<string, UpdateRank[]>();
  for (const name of names.filter((n) => measured.has(n))) {
    const type = types.get(name)!;
    groups.set(type, [...(groups.get(type) ?? []), measured.get(name)!]);
  }
  const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return [...groups].map(([layerType, g]) => ({
    layerType,
    matrices: g.length,
    ofMatrices: adapted.get(layerType)!,
    meanRank: avg(g.map((u) => u.rank)),
    meanEntropyRank: avg(g.map((u) => u.entropyRank)),
    maxRank: Math.max(...g.map((u) => u.rank)),
    meanRelativeChange: avg(g.map((u) => u.relativeChange)),
  }));
}

/** The names `rankByLayerType` measures: `rankSample` of `names` at `before`'s shapes. */
export function rankReportNames(
  before: Record<string, HostArray>,
  names: readonly string[],
  maxWork?: number,
): string[] {
  const shapes = Object.fromEntries(names.map((n) => [n, before[n].shape]));
  const picked = new Set(rankSample(shapes, names, maxWork));
  return names.filter((n) => picked.has(n));
}

/**
 * Effective rank of W_T − W_0 per matrix, grouped by layer type (`layerTypes`). Past `maxWork`
 * (default `RANK_REPORT_WORK`) it measures an even sample of each type (`rankSample`; `matrices`
 * against `ofMatrices` says how many). The runtime's `rankByLayerTypeInWorkers` spreads the same
 * work over the CPU's cores.
 */
export function rankByLayerType(
  before: Record<string, HostArray>,
  after: Record<string, HostArray>,
  names: readonly string[],
  opts: RankReportOptions = {},
): LayerTypeRank[] {
  const measured = new Map<string, UpdateRank>();
  for (const name of rankReportNames(before, names, opts.maxWork)) {
    measured.set(name, measureUpdate(before[name], after[name], opts));
  }
  return groupRanks(names, measured);
}
