/**
 * What every runtime mode of `createTrainer` shares: the configuration and its validation, the
 * trainer's interface, snapshots, the spec's communication cost model and shard batching.
 */

import { allocData, type HostArray, isHostArray } from "../dsl/host_array.ts";
import { effectiveParams, type ShardLoss, type Trained } from "../dsl/adapters/steps.ts";
import { type Svd, svdOf } from "../dsl/linalg/svd.ts";
import { type DeviceArray, isDeviceArray } from "./device_array.ts";
import { flattenTree, unflattenTree } from "../dsl/pytree.ts";
import type { Tensor } from "../dsl/trace.ts";
import type { Device } from "./device.ts";
import { jit, toDevice } from "./jit.ts";
import { type CodegenOptions, PACKED_FORMATS, type PackedFormat } from "../compiler/mod.ts";
import { randomizedSvd } from "./linalg/rsvd.ts";
import type { StepPlan } from "./step_plan.ts";
import type { KernelTiming } from "./executor.ts";
import type { AutotuneOptions } from "./autotune.ts";
import type { AdapterExport, MethodSpec, ReplicatedMethod } from "../dsl/adapters/methods/spec.ts";
import { METHODS, methodSpec } from "../dsl/adapters/methods/registry.ts";

/** A built-in fine-tuning method (see dsl/adapters/methods/): HD-PiSSA and the baselines. */
export type Method = "hdpissa" | "hd-milora" | "pissa" | "milora" | "lora" | "dora" | "full";

/** Everything `createTrainer` needs: the model, the method and its sizes, and the optimizer. */
export interface TrainerConfig {
  /** Scalar loss of (all parameters, one shard's batch). */
  loss: ShardLoss;
  /** Initial values of every parameter, by name. */
  params: Record<string, HostArray>;
  /** Names of the 2-D f32 weights W [out, in] to train; the others stay frozen. */
  adapt: string[];
  /**
   * Adapted weights stored [in, out] and applied as x·W (GPT-2's Conv1D; PEFT's `fan_in_fan_out`;
   * `conv1dWeights(config)` lists a model's). LoRA then puts its random factor on the input side
   * and DoRA keeps one magnitude per output feature, as PEFT does; the SVD-initialised methods and
   * full fine-tuning are the same either way. Default: none.
   */
  fanInFanOut?: string[];
  /** Which method trains them: a built-in's name, or a method record (see `MethodSpec`). */
  method: Method | MethodSpec;
  /** Number of shards K (devices of the method), each with its own batch per step. */
  devices: number;
  /** Adapter rank r (per device for HD-PiSSA); ignored by "full". */
  rank: number;
  /**
   * Code-generator overrides for the step's compilation, over the device's own (`codegenFor`):
   * for instance a GPU adapter's settings (`gpuCodegen`), to read the kernels a GPU would run.
   */
  codegen?: Partial<CodegenOptions>;
  /**
   * Time the candidate matmul kernels of the step's shape classes on this device when it compiles
   * and use the fastest (runtime/autotune.ts; cached per adapter on disk).
   */
  autotune?: boolean | AutotuneOptions;
  /** PiSSA/LoRA scale numerator: the adapter is scaled by alpha / rank (default rank). */
  alpha?: number;
  /** rsLoRA: scale the LoRA-family adapters by alpha / √rank instead of alpha / rank. */
  rsLora?: boolean;
  /** Adam(W) settings: a learning rate or schedule, and optional betas, eps and weight decay. */
  optimizer: {
    lr: number | ((step: number) => number);
    beta1?: number;
    beta2?: number;
    eps?: number;
    weightDecay?: number;
  };
  /** Where shards run: all on one device ("virtual", default), one device each, or MPI ranks. */
  mode?: "virtual" | "devices" | "mpi";
  /**
   * The initial SVD: exact on the host, randomised with `niter` power iterations, or "auto"
   * (default): exact where that is cheap, randomised otherwise (`svdMethodFor`).
   */
  svd?: { method: SvdMethod; niter?: number; seed?: number };
  /** Seed of LoRA's initialisation (and of the randomised SVD when it has none). */
  seed?: number;
  /** Distributed modes: hash W on every replica every N steps and stop on any difference. */
  verifyReplicasEvery?: number;
  /** Mode "mpi": a collective in flight longer than this stops the job (default 600 000 ms). */
  collectiveTimeoutMs?: number;
  /** Mode "mpi": the MPI library to load (default: OpenMPI's libmpi.so.40, then MPICH's). */
  mpiLibrary?: string;
  /**
   * How the frozen weights live on the device: f32 (default), or packed in 16 bits (bf16, f16;
   * half the bytes, widened in every kernel that reads them). Frozen weights are the parameters
   * the method keeps exactly as given: every one that is not adapted, and LoRA's base W. Adapted
   * weights that a method updates (HD-PiSSA's W, full fine-tuning), bases a method computes
   * (PiSSA's residual), adapters and optimizer state stay f32. Values are rounded to nearest
   * even, so "bf16" is lossless for a checkpoint stored in BF16.
   */
  frozenStorage?: "f32" | PackedFormat;
}

/** Counters of a trainer: steps taken, communication volume, kernels and timings. */
export interface TrainerStats {
  /** Steps taken. */
  step: number;
  /**
   * Bytes one rank (device) sends per step: in mode "virtual" the spec's cost model; in the
   * distributed modes what the last step's collectives sent (ring algorithms), which the tests
   * check against the cost model.
   */
  bytesCommunicated: number;
  /** Kernels one step dispatches on one device. */
  kernelsPerStep: number;
  /** Distributed modes, per step (mean over the steps taken): bytes this rank sent and received. */
  bytesSent?: number;
  /** Distributed modes: bytes this rank received per step (mean over the steps taken). */
  bytesReceived?: number;
  /**
   * Seconds per step computing on the device(s). The phases run one after another (the
   * collective waits for the Adam step, phase 2 for the collective), so this and
   * `communicationSeconds` add up to the step and never overlap.
   */
  computeSeconds?: number;
  /** Seconds per step with a collective in flight. */
  communicationSeconds?: number;
  /** Replicas (devices) in the whole job and in this process. */
  replicas?: number;
  /** Replicas (devices) in this process. */
  localReplicas?: number;
}

/** An invalid trainer configuration (or step input); the message names the field. */
export class TrainerConfigError extends Error {
  /** Makes the error for `field` with the given explanation. */
  constructor(field: string, message: string) {
    super(`createTrainer: ${field}: ${message}`);
    this.name = "TrainerConfigError";
  }
}

export type Tree = Record<string, unknown>;

/** The method record `cfg.method` names; a clear error for an unknown name. */
export function methodOf(cfg: TrainerConfig): MethodSpec {
  const spec = methodSpec(cfg.method);
  if (!spec || (spec.family !== "replicated" && spec.family !== "sharded")) {
    throw new TrainerConfigError(
      "method",
      `must be one of ${Object.keys(METHODS).join(", ")} or a method record (got ${
        typeof cfg.method === "string" ? cfg.method : JSON.stringify(cfg.method)
      })`,
    );
  }
  return spec;
}

/** The adapter scale s: alpha / rank, or alpha / √rank with rsLoRA (alpha defaults to rank). */
export function adapterScale(cfg: TrainerConfig): number {
  const alpha = cfg.alpha ?? cfg.rank;
  return alpha / (cfg.rsLora ? Math.sqrt(cfg.rank) : cfg.rank);
}

export function validate(cfg: TrainerConfig): void {
  const fail = (field: string, msg: string): never => {
    throw new TrainerConfigError(field, msg);
  };
  const method = methodOf(cfg);
  if (!Number.isInteger(cfg.devices) || cfg.devices < 1) {
    fail("devices", `must be an integer ≥ 1 (got ${cfg.devices})`);
  }
  if (method.usesRank && (!Number.isInteger(cfg.rank) || cfg.rank < 1)) {
    fail("rank", `must be an integer ≥ 1 (got ${cfg.rank})`);
  }
  const mode = cfg.mode ?? "virtual";
  if (!["virtual", "devices", "mpi"].includes(mode)) {
    fail("mode", `must be "virtual", "devices" or "mpi" (got ${mode})`);
  }
  const every = cfg.verifyReplicasEvery;
  if (every !== undefined && !(Number.isInteger(every) && every >= 1)) {
    fail("verifyReplicasEvery", `must be an integer ≥ 1 (got ${every})`);
  }
  const timeout = cfg.collectiveTimeoutMs;
  if (timeout !== undefined && !(timeout > 0 && Number.isFinite(timeout))) {
    fail("collectiveTimeoutMs", `must be a positive number of milliseconds (got ${timeout})`);
  }
  if (cfg.svd && !SVD_METHODS.includes(cfg.svd.method)) {
    fail("svd.method", `must be "auto", "exact" or "randomized" (got ${cfg.svd.method})`);
  }
  if (cfg.svd?.niter !== undefined && !(Number.isInteger(cfg.svd.niter) && cfg.svd.niter >= 0)) {
    fail("svd.niter", `must be an integer ≥ 0 (got ${cfg.svd.niter})`);
  }
  if (!Array.isArray(cfg.adapt) || cfg.adapt.length === 0) {
    fail("adapt", "name at least one 2-D weight to adapt");
  }
  for (const name of cfg.fanInFanOut ?? []) {
    if (!cfg.adapt.includes(name)) {
      fail("fanInFanOut", `"${name}" is not one of the adapted weights (adapt)`);
    }
  }
  const storage = cfg.frozenStorage;
  if (storage !== undefined && storage !== "f32" && !PACKED_FORMATS.includes(storage)) {
    fail("frozenStorage", `must be "f32", "bf16" or "f16" (got ${JSON.stringify(storage)})`);
  }
  for (const name of cfg.adapt) {
    const w = cfg.params[name];
    if (!w) {
      fail(
        "adapt",
        `"${name}" is not a parameter (have: ${Object.keys(cfg.params).slice(0, 6).join(", ")}, …)`,
      );
    }
    if (w.shape.length !== 2 || w.dtype !== "f32") {
      fail(
        "adapt",
        `"${name}" is ${w.dtype}[${w.shape}]; only 2-D f32 weights (W [out, in] used as x·Wᵀ, or stored [in, out] and named in fanInFanOut) can be adapted`,
      );
    }
    const problem = method.usesRank
      ? method.check?.(w.shape as [number, number], cfg.rank, cfg.devices)
      : undefined;
    if (problem) fail("rank", `"${name}": ${problem}`);
  }
  if (cfg.alpha !== undefined && !(cfg.alpha > 0 && Number.isFinite(cfg.alpha))) {
    fail(
      "alpha",
      `must be a finite number > 0 (got ${cfg.alpha}); the adapter scale is s = alpha / rank`,
    );
  }
  const lr = cfg.optimizer?.lr;
  if (typeof lr === "number" && !(lr > 0 && Number.isFinite(lr))) {
    fail("optimizer.lr", `must be > 0 (got ${lr})`);
  }
  if (typeof lr !== "number" && typeof lr !== "function") {
    fail("optimizer.lr", "must be a number or a schedule function");
  }
}

export const zeros = (shape: number[]): HostArray => ({
  shape,
  dtype: "f32",
  data: new Float32Array(shape.reduce((a, b) => a * b, 1)),
});

/** Adam's hyper-parameters with the reference defaults. */
export function adamHyper(cfg: TrainerConfig) {
  return {
    beta1: cfg.optimizer.beta1 ?? 0.9,
    beta2: cfg.optimizer.beta2 ?? 0.999,
    eps: cfg.optimizer.eps ?? 1e-8,
    weightDecay: cfg.optimizer.weightDecay ?? 0,
  };
}

/** The learning rate at each step; a clear error for a schedule that gives a bad value. */
export function learningRate(cfg: TrainerConfig): (step: number) => HostArray {
  const schedule = typeof cfg.optimizer.lr === "number"
    ? (() => cfg.optimizer.lr as number)
    : cfg.optimizer.lr;
  return (step) => {
    const lr = schedule(step);
    if (!(lr >= 0 && Number.isFinite(lr))) {
      throw new TrainerConfigError("optimizer.lr", `schedule gave ${lr} at step ${step}`);
    }
    return { shape: [], dtype: "f32", data: Float32Array.of(lr) };
  };
}

/**
 * The cost model: bytes one device sends per step (f32). Sharded (HD-) methods all-gather ΔA, ΔB:
 * (K−1)·r·Σ(m+n); replicated methods ring-all-reduce their trained tensors' gradients:
 * 2(K−1)/K·Σ trainedElements (r·(m+n) for LoRA/PiSSA, m·n for full fine-tuning).
 */
export function costModelBytes(cfg: TrainerConfig): number {
  const K = cfg.devices, r = cfg.rank;
  const method = methodOf(cfg);
  const dims = cfg.adapt.map((n) => cfg.params[n].shape as [number, number]);
  if (method.family === "sharded") {
    return 4 * (K - 1) * r * dims.reduce((s, [m, n]) => s + m + n, 0);
  }
  const elements = cfg.adapt.reduce((s, name) => {
    const [out, inp] = outIn(cfg, name);
    return s + method.trainedElements(out, inp, r);
  }, 0);
  return 4 * (2 * (K - 1) / K) * elements;
}

/** An adapted weight's (output, input) widths: its shape, swapped when stored [in, out]. */
export function outIn(cfg: TrainerConfig, name: string): [number, number] {
  const [m, n] = cfg.params[name].shape;
  return cfg.fanInFanOut?.includes(name) ? [n, m] : [m, n];
}

/** How the initial SVD is computed: see `svdMethodFor`. */
export type SvdMethod = "auto" | "exact" | "randomized";
export const SVD_METHODS: readonly SvdMethod[] = ["auto", "exact", "randomized"];

/** Sketch columns the randomised SVD adds beyond the wanted k (its default oversampling). */
export const OVERSAMPLE = 10;
/** m·n·min(m, n) up to which "auto" takes the exact SVD: 512³, about a second on one core. */
const EXACT_AUTO_MAX = 512 ** 3;

/**
 * The SVD "auto" picks for the leading `k` triplets of an m×n matrix: exact (Golub–Kahan on the
 * host, f64) when its cost m·n·min(m, n) is at most 512³ or when k plus oversampling is half the
 * spectrum or more; otherwise randomised top-(k + 10) with power iterations on the device.
 */
export function svdMethodFor(
  method: SvdMethod,
  shape: readonly number[],
  k: number,
): "exact" | "randomized" {
  if (method !== "auto") return method;
  const [m, n] = shape;
  const small = Math.min(m, n);
  return m * n * small <= EXACT_AUTO_MAX || k + OVERSAMPLE >= small / 2 ? "exact" : "randomized";
}

/** The leading `k` singular triplets of W: exact (host, f64) or randomised (device products). */
export async function leadingFactors(cfg: TrainerConfig, w: HostArray, k: number): Promise<Svd> {
  return svdMethodFor(cfg.svd?.method ?? "auto", w.shape, k) === "randomized"
    ? await randomizedSvd(w, Math.min(k, ...w.shape), {
      niter: cfg.svd?.niter ?? 4,
      oversample: OVERSAMPLE,
      seed: cfg.svd?.seed ?? cfg.seed ?? 0,
    })
    : svdOf(w);
}

/** Stacks K shard records into one record whose leaves have a leading K axis. */
export function stackShards(
  shards: readonly Record<string, HostArray>[],
  K: number,
): Record<string, HostArray> {
  if (!Array.isArray(shards) || shards.length !== K) {
    throw new TrainerConfigError(
      "step",
      `expected ${K} shard batches (one per device), got ${shards?.length}`,
    );
  }
  const keys = Object.keys(shards[0]).sort();
  const out: Record<string, HostArray> = {};
  for (const key of keys) {
    const first = shards[0][key];
    const size = first.data.length;
    const data = allocData(first.dtype, K * size);
    shards.forEach((s, k) => {
      const leaf = s[key];
      if (!leaf || leaf.shape.join() !== first.shape.join() || leaf.dtype !== first.dtype) {
        throw new TrainerConfigError(
          "step",
          `shard ${k} field "${key}" must be ${first.dtype}[${first.shape}] like shard 0`,
        );
      }
      data.set(leaf.data, k * size);
    });
    out[key] = { shape: [K, ...first.shape], dtype: first.dtype, data };
  }
  return out;
}

export type { AdapterExport } from "../dsl/adapters/methods/spec.ts";

/** A running training job, as `createTrainer` returns it. */
export interface Trainer {
  /** This process's rank (0 outside mode "mpi"). */
  readonly rank: number;
  /** Number of processes in the job (1 outside mode "mpi"). */
  readonly size: number;
  /** The name of the method being trained. */
  readonly method: string;
  /** Runs one step on one batch per local shard; returns each shard's loss. */
  step(shards: Record<string, HostArray>[]): Promise<{ loss: number[] }>;
  /**
   * Runs one step like `step` but leaves its losses where they are (mode "virtual": on the
   * device), so the host can encode the next step while the device runs this one; read them with
   * `readLosses`. A `step` in between reads only its own losses.
   */
  enqueue(shards: Record<string, HostArray>[]): Promise<void>;
  /**
   * The losses of the steps queued by `enqueue` since the last read, oldest first (one row of
   * shard losses per step), read back together in one sync point.
   */
  readLosses(): Promise<number[][]>;
  /** The current dense parameters (adapters merged into W for LoRA/PiSSA). */
  params(): Promise<Record<string, HostArray>>;
  /**
   * The current dense parameters where the trainer keeps them on the device (mode "virtual", a
   * sharded method such as HD-PiSSA, whose W is the trained weight): its own arrays, frozen ones
   * in `frozenStorage`, to be read (e.g. by `generate`) and not kept past the next step or restore.
   * Absent where dense weights exist only after a merge or on another process.
   */
  deviceParams?(): Record<string, DeviceArray>;
  /**
   * LoRA/PiSSA: the trained factors and the initial ones (PiSSA's A₀, B₀; for LoRA the base W is
   * unchanged so no initial factors are needed). Undefined for HD-PiSSA and full fine-tuning,
   * whose result is the dense model.
   */
  adapters(): Promise<AdapterExport | undefined>;
  /** Counters of the steps taken so far. */
  stats(): TrainerStats;
  /**
   * Mode "virtual": the device memory and work of a step on these shards, from its compiled
   * program, without running it (`deno task train --dry-run`).
   */
  plan?(shards: Record<string, HostArray>[]): Promise<StepPlan>;
  /**
   * Mode "virtual": each kernel of a step on these shards run alone and timed (for finding hot
   * kernels); the state is read, never updated.
   */
  profile?(shards: Record<string, HostArray>[]): Promise<KernelTiming[]>;
  /**
   * Everything needed to continue exactly: weights, adapter slices or factors, optimizer state, the
   * step count. Tensor names are pytree paths ("state/mA/…").
   */
  snapshot(): Promise<TrainerSnapshot>;
  /** Restores a snapshot taken from a trainer of the same configuration (any mode). */
  restore(snapshot: TrainerSnapshot): Promise<void>;
  /**
   * Every rank's `values` (same length on each), concatenated in rank order — for decisions every
   * rank must take alike (stop, non-finite loss). Mode "mpi" runs a small collective that every
   * rank must call; it is not counted in `bytesCommunicated`. Other modes return `values`.
   */
  gatherScalars(values: number[]): Promise<number[]>;
  /**
   * Waits for every rank (mode "mpi"; immediate otherwise). `timeoutMs: Infinity` waits without the
   * collective timeout: for work one rank does alone, such as rank 0's evaluation.
   */
  barrier(opts?: { timeoutMs?: number }): Promise<void>;
  /** Ends the job's collectives (mode "mpi": MPI_Finalize) and frees the device state. */
  close(): Promise<void>;
}

/** A trainer's full state at a step, as named host tensors (a checkpoint). */
export interface TrainerSnapshot {
  /** Steps taken when the snapshot was made. */
  step: number;
  /** Every tensor of the state, by pytree path. */
  tensors: Record<string, HostArray>;
}

/** "/"-joined paths of a pytree's leaves, in flattening order. */
export function leafPaths(tree: unknown, prefix = ""): string[] {
  if (tree && typeof tree === "object" && !isHostArray(tree) && !isDeviceArray(tree)) {
    if (Array.isArray(tree)) return tree.flatMap((x, i) => leafPaths(x, `${prefix}${i}/`));
    return Object.keys(tree).sort().flatMap((k) => leafPaths((tree as Tree)[k], `${prefix}${k}/`));
  }
  return [prefix.slice(0, -1)];
}

/** A host pytree's leaves by path (the snapshot format, the same in every mode). */
export function snapshotTensors(host: unknown): Record<string, HostArray> {
  const [leaves] = flattenTree(host, isHostArray, "snapshot");
  const names = leafPaths(host);
  return Object.fromEntries(names.map((n, i) => [n, leaves[i] as HostArray]));
}

/** The snapshot's tensors arranged as the device tree `live`, checked leaf by leaf. */
export function restoredTree(live: unknown, snap: TrainerSnapshot): unknown {
  const names = leafPaths(live);
  const missing = names.filter((n) => !snap.tensors[n]);
  if (missing.length) {
    throw new Error(`restore: snapshot lacks ${missing.slice(0, 5).join(", ")}`);
  }
  const [current, def] = flattenTree(live, (x): x is DeviceArray => isDeviceArray(x), "restore");
  const leaves = names.map((n, i) => {
    const t = snap.tensors[n];
    const c = current[i] as DeviceArray;
    if (t.shape.join() !== c.shape.join() || t.dtype !== c.dtype) {
      throw new Error(
        `restore: ${n} is ${t.dtype}[${t.shape}], the trainer needs ${c.dtype}[${c.shape}]`,
      );
    }
    return t;
  });
  return unflattenTree(def, leaves);
}

const isArrayLeaf = (x: unknown): x is HostArray | DeviceArray =>
  isHostArray(x) || isDeviceArray(x);

/**
 * Uploads a live tree (`replicatedTree`/`shardedTree`), keeping the frozen weights in
 * `cfg.frozenStorage`. A leaf is frozen when it sits under `params/` (never under the trained
 * tensors), is not one the method writes (`updated`, such as HD-PiSSA's adapted W), and holds
 * exactly the values given in `cfg.params`. The values decide it, not the object: a base a method
 * computes (PiSSA's residual) stays f32. An MPI rank that received LoRA's base W from its owner
 * packs it just as the owner does.
 */
export async function uploadLive(
  tree: unknown,
  cfg: TrainerConfig,
  updated: readonly string[],
  device?: Device,
): Promise<Record<string, Tree>> {
  const format = cfg.frozenStorage;
  if (format === undefined || format === "f32") {
    return await toDevice(tree, device) as Record<string, Tree>;
  }
  const [leaves] = flattenTree(tree, isArrayLeaf, "upload");
  const paths = leafPaths(tree);
  const frozen = (i: number) => {
    const name = paths[i].startsWith("params/") ? paths[i].slice(7) : undefined;
    const given = name === undefined || updated.includes(name) ? undefined : cfg.params[name];
    return given !== undefined && given.dtype === "f32" && sameValues(leaves[i], given);
  };
  const storage = (i: number) => (frozen(i) ? format : undefined);
  return await toDevice(tree, device, { storage }) as Record<string, Tree>;
}

/** Whether a host leaf holds exactly `given`'s values (the same object, or an equal copy). */
function sameValues(leaf: HostArray | DeviceArray, given: HostArray): boolean {
  if (leaf === given) return true;
  if (!isHostArray(leaf) || leaf.data.length !== given.data.length) return false;
  for (let i = 0; i < given.data.length; i++) {
    if (!Object.is(leaf.data[i], given.data[i])) return false;
  }
  return true;
}

/** A snapshot uploaded in the shape and storage of the device tree `live` (see restoredTree). */
export async function uploadRestored(
  live: unknown,
  snap: TrainerSnapshot,
  device?: Device,
): Promise<Record<string, Tree>> {
  const [current] = flattenTree(live, isDeviceArray, "restore");
  const storage = (i: number) => (current[i] as DeviceArray).storage;
  return await toDevice(restoredTree(live, snap), device, { storage }) as Record<string, Tree>;
}

/** Frees every device array of a tree. */
export function destroyTree(tree: unknown): void {
  const [leaves] = flattenTree(tree, (x): x is DeviceArray => isDeviceArray(x), "destroy");
  leaves.forEach((l) => (l as DeviceArray).destroy());
}

/** A compiled merge: every adapted weight replaced by the replicated method's weight. */
export function mergeWeights(method: ReplicatedMethod, scale: number, device?: Device) {
  return jit(
    (p: Record<string, Tensor>, trained: Trained<Tensor>, frozen: Trained<Tensor>) =>
      effectiveParams(method, p, trained, frozen, scale),
    { device },
  );
}
