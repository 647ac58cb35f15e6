/**
 * Bootstrap confidence intervals for exact-match accuracy over several training seeds. A method's
 * result is a table of per-item correctness, one row per seed (the items need not be the same
 * across rows). Each replicate resamples the seeds with replacement, then each drawn seed's
 * items with replacement, and takes the mean of all drawn items: the interval carries both the
 * seed-to-seed spread (which dominates when training sometimes fails to take off) and the
 * sampling of test items. Seeded, so a report is reproducible.
 */

import { Rng } from "../data/rng.ts";

/** Options of the bootstrap functions. */
export interface BootstrapOptions {
  /** Replicates (default 2000). */
  resamples?: number;
  /** Coverage of the interval (default 0.95). */
  level?: number;
  /** Seed of the resampling (default 0). */
  seed?: number;
}

/** A point estimate and its percentile bootstrap interval. */
export interface Interval {
  /** The statistic on the data as observed. */
  mean: number;
  /** Lower end of the interval. */
  lo: number;
  /** Upper end of the interval. */
  hi: number;
}

const mean = (xs: readonly number[]) => xs.reduce((a, x) => a + x, 0) / xs.length;

/** Every item of every seed, pooled: the observed accuracy. */
function pooled(runs: readonly (readonly boolean[])[]): number {
  return mean(runs.flat().map(Number));
}

/** One replicate: seeds drawn with replacement, then each drawn seed's items. */
function resampledAccuracy(runs: readonly (readonly boolean[])[], rng: Rng): number {
  let hits = 0;
  let total = 0;
  for (let s = 0; s < runs.length; s++) {
    const items = runs[rng.int(0, runs.length - 1)];
    for (let i = 0; i < items.length; i++) hits += +items[rng.int(0, items.length - 1)];
    total += items.length;
  }
  return hits / total;
}

/** The `level` percentile interval of `replicate()` around `observed`. */
function percentileInterval(
  observed: number,
  replicate: () => number,
  opts: BootstrapOptions,
): Interval {
  const { resamples = 2000, level = 0.95 } = opts;
  const values = Array.from({ length: resamples }, replicate).sort((a, b) => a - b);
  const at = (q: number) => values[Math.min(resamples - 1, Math.max(0, Math.floor(q * resamples)))];
  return { mean: observed, lo: at((1 - level) / 2), hi: at(1 - (1 - level) / 2) };
}

function checkRuns(runs: readonly (readonly boolean[])[], what: string): void {
  if (runs.length === 0 || runs.some((r) => r.length === 0)) {
    throw new Error(`${what}: needs at least one seed, each with at least one item`);
  }
}

/** Accuracy over seeds with its bootstrap interval; `runs[seed][item]` is correctness. */
export function bootstrapAccuracy(
  runs: readonly (readonly boolean[])[],
  opts: BootstrapOptions = {},
): Interval {
  checkRuns(runs, "bootstrapAccuracy");
  const rng = new Rng(opts.seed ?? 0, 17);
  return percentileInterval(pooled(runs), () => resampledAccuracy(runs, rng), opts);
}

/**
 * Accuracy of `a` minus accuracy of `b` with its bootstrap interval: both are resampled
 * independently in each replicate (different methods are independent runs).
 */
export function bootstrapDifference(
  a: readonly (readonly boolean[])[],
  b: readonly (readonly boolean[])[],
  opts: BootstrapOptions = {},
): Interval {
  checkRuns(a, "bootstrapDifference");
  checkRuns(b, "bootstrapDifference");
  const rng = new Rng(opts.seed ?? 0, 18);
  return percentileInterval(
    pooled(a) - pooled(b),
    () => resampledAccuracy(a, rng) - resampledAccuracy(b, rng),
    opts,
  );
}
