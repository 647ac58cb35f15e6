/**
 * The matmul autotuner: for each shape class of a program's products (matmul_classes.ts) it times
 * the candidate kernels on this device, keeps the fastest, and caches the choice per adapter, in
 * memory and in a store (a JSON file under Deno), so that a machine pays for it once. `jit(f, { autotune: true })` and
 * `createTrainer({ autotune: true })` use it.
 *
 * Candidates: on a GPU, each shared-memory tiling the device allows and the register-tile kernel;
 * on a CPU adapter, register tiles of a few shapes (the NT tile, the NN row block). Each is timed
 * on the class's first product at its own sizes, on seeded data, after a run that compiles it.
 */

import {
  type CodegenOptions,
  type MatmulChoice,
  type MatmulLayout,
  type MatmulProblem,
  type MatmulTiling,
  tilingProblem,
} from "../compiler/mod.ts";
import { matmul, transpose } from "../dsl/mod.ts";
import type { Tensor } from "../dsl/trace.ts";
import type { Device } from "./device.ts";
import { DeviceArray } from "./device_array.ts";
import { GPU_MATMUL_TILINGS, jit, toDevice } from "./jit.ts";

/** Where tuned choices are kept between processes (`io/autotune_store.ts`: a JSON file). */
export interface TuneStore {
  /** Every stored choice, by key (empty where nothing is stored yet or it cannot be read). */
  load(): Record<string, MatmulChoice>;
  /** Replaces the stored choices (a store that cannot write keeps them in memory only). */
  save(entries: Record<string, MatmulChoice>): void;
}

let defaultStore: TuneStore | undefined;

/** The store `tuneMatmuls` uses where its options name none (the Deno runtime sets a file). */
export function setDefaultTuneStore(store: TuneStore | undefined): void {
  defaultStore = store;
}

/** Options of `tuneMatmuls`. */
export interface AutotuneOptions {
  /** The choices to time (default `matmulCandidates(device)`). */
  candidates?: readonly MatmulChoice[];
  /** Timed runs per candidate, after the one that compiles it (default 5). */
  reps?: number;
  /** Where choices persist (default `setDefaultTuneStore`'s); null: this process only. */
  store?: TuneStore | null;
  /** Seconds a candidate's `reps` runs take (default: wall time until the queue is idle). */
  time?: (run: () => Promise<void>, device: Device) => Promise<number>;
}

/** The tunables a CPU adapter's register tiles are tried with. */
const CPU_CANDIDATES: readonly MatmulChoice[] = [
  {},
  { matmulNtTile: { rows: 8, cols: 16 } },
  { matmulNtTile: { rows: 16, cols: 8 } },
  { matmulRowBlock: 16 },
  { matmulColumnGroups: 2 },
];

/** What the tuner tries on `device`: its tilings one at a time and the register kernel. */
export function matmulCandidates(device: Device): MatmulChoice[] {
  if (device.info.isFallbackAdapter) return [...CPU_CANDIDATES];
  const tilings = GPU_MATMUL_TILINGS.filter((t) => !tilingProblem(t, device.info.limits));
  return [{ matmulTilings: [] }, ...tilings.map((t: MatmulTiling) => ({ matmulTilings: [t] }))];
}

/** Timings per candidate (the fastest counts). */
export const TUNE_TRIALS = 3;
/** How much faster than the first candidate another must be to be chosen. */
const MARGIN = 0.03;

/** Choices made in this process, per store (`null`: none) and key. */
const memory = new Map<TuneStore | null, Map<string, MatmulChoice>>();

/** The adapter a cached choice belongs to. */
function adapterKey(device: Device): string {
  const { vendor, architecture, description, isFallbackAdapter } = device.info;
  return [vendor, architecture, description, isFallbackAdapter ? "fallback" : "gpu"].join("/");
}

/** Seeded operands of `p` in its layout. */
function operands(p: MatmulProblem): { shape: number[]; data: Float32Array; dtype: "f32" }[] {
  const lead = p.batch > 1 ? [p.batch] : [];
  const shapes: Record<MatmulLayout, [number[], number[]]> = {
    nn: [[p.M, p.K], [p.K, p.N]],
    nt: [[p.M, p.K], [p.N, p.K]],
    tn: [[p.K, p.M], [p.K, p.N]],
  };
  return shapes[p.layout].map((s, i) => {
    const shape = [...lead, ...s], size = shape.reduce((a, b) => a * b, 1);
    const data = Float32Array.from({ length: size }, (_, j) => Math.sin(j * 0.61 + i) * 0.5);
    return { shape, data, dtype: "f32" as const };
  });
}

/** `x` with its last two axes swapped. */
const swapped = (x: Tensor) => {
  const r = x.shape.length;
  return transpose(x, [...Array.from({ length: r - 2 }, (_, i) => i), r - 1, r - 2]);
};

/** The product of `layout` (what the class's kernels compute). */
const product = (layout: MatmulLayout) => (a: Tensor, b: Tensor) =>
  layout === "nt" ? matmul(a, swapped(b)) : layout === "tn" ? matmul(swapped(a), b) : matmul(a, b);

async function wallTime(run: () => Promise<void>, device: Device): Promise<number> {
  const t0 = performance.now();
  await run();
  await device.gpu.queue.onSubmittedWorkDone();
  return (performance.now() - t0) / 1000;
}

/**
 * The fastest candidate for each problem's class on `device` (cached ones are not timed again),
 * as a table for `CodegenOptions.matmulTuned`. `base` is the code generator's settings the
 * candidates apply over.
 */
export async function tuneMatmuls(
  device: Device,
  problems: readonly MatmulProblem[],
  base: Partial<CodegenOptions>,
  opts: AutotuneOptions = {},
): Promise<Map<string, MatmulChoice>> {
  const candidates = opts.candidates ?? matmulCandidates(device);
  const reps = opts.reps ?? 5, time = opts.time ?? wallTime;
  const store = opts.store === undefined ? defaultStore ?? null : opts.store;
  if (!memory.has(store)) memory.set(store, new Map());
  const made = memory.get(store)!;
  const prefix = `${adapterKey(device)}|${JSON.stringify(candidates)}|`;
  const stored = store?.load() ?? {};
  const chosen = new Map<string, MatmulChoice>();
  let tuned = false;
  for (const p of problems) {
    const key = prefix + p.cls;
    const known = made.get(key) ?? stored[key];
    if (known) {
      chosen.set(p.cls, known);
      continue;
    }
    const args = await toDevice(operands(p), device) as DeviceArray[];
    // Each candidate's best of three timings; the first candidate (the device's own settings)
    // keeps its place unless another beats it by 3%, so noise does not pick a kernel.
    const seconds: number[] = [];
    for (const choice of candidates) {
      const f = jit(product(p.layout), { device, codegen: { ...base, ...choice } });
      const once = async () => ((await f.onDevice(...args)) as DeviceArray).destroy();
      await once(); // compiles
      let fastest = Infinity;
      for (let trial = 0; trial < TUNE_TRIALS; trial++) {
        fastest = Math.min(
          fastest,
          await time(async () => {
            for (let r = 0; r < reps; r++) await once();
          }, device),
        );
      }
      seconds.push(fastest);
    }
    const best = seconds.reduce(
      (b, t, i) => (t < seconds[b] * (b === 0 ? 1 - MARGIN : 1) ? i : b),
      0,
    );
    args.forEach((a) => a.destroy());
    made.set(key, candidates[best]);
    stored[key] = candidates[best];
    chosen.set(p.cls, candidates[best]);
    tuned = true;
  }
  if (tuned) store?.save(stored);
  return chosen;
}
