/**
 * `createTrainer`: HD-PiSSA and its baselines (data-parallel LoRA, PiSSA, full fine-tuning) as
 * compiled training steps. Mode "virtual" runs K shards on one WebGPU device: one program per
 * step computes every shard's loss and gradients, the per-shard updates and their reduction on the
 * device — no host round trip except reading the K losses.
 */

import { type HostArray, isHostArray } from "../dsl/host_array.ts";
import { hdpissaInit, loraInit, pissaInit } from "../dsl/adapters/init.ts";
import {
  adapterDpStep,
  type DpState,
  fullDpStep,
  type HdPissaState,
  hdpissaStep,
  type ShardLoss,
} from "../dsl/adapters/steps.ts";
import { type Svd, svdOf } from "../dsl/linalg/svd.ts";
import { randomizedSvd } from "./linalg/rsvd.ts";
import { add, matmul, mul } from "../dsl/mod.ts";
import type { Tensor } from "../dsl/trace.ts";
import { type DeviceArray, isDeviceArray } from "./device_array.ts";
import { flattenTree, unflattenTree } from "../dsl/pytree.ts";
import { jit, type Jitted, toDevice, toHost } from "./jit.ts";
import type { LoraFactors } from "./models/peft.ts";

export type Method = "hdpissa" | "pissa" | "lora" | "full";

export interface TrainerConfig {
  loss: ShardLoss;
  params: Record<string, HostArray>;
  adapt: string[];
  method: Method;
  devices: number;
  rank: number;
  alpha?: number;
  optimizer: {
    lr: number | ((step: number) => number);
    beta1?: number;
    beta2?: number;
    eps?: number;
    weightDecay?: number;
  };
  mode?: "virtual" | "devices" | "mpi";
  svd?: { method: "exact" | "randomized"; niter?: number; seed?: number };
  seed?: number;
}

export interface TrainerStats {
  step: number;
  /** Bytes one rank sends per step under the method's collective (spec cost model, f32). */
  bytesCommunicated: number;
  kernelsPerStep: number;
}

export class TrainerConfigError extends Error {
  constructor(field: string, message: string) {
    super(`createTrainer: ${field}: ${message}`);
    this.name = "TrainerConfigError";
  }
}

const METHODS: Method[] = ["hdpissa", "pissa", "lora", "full"];
type Tree = Record<string, unknown>;

function validate(cfg: TrainerConfig): void {
  const fail = (field: string, msg: string): never => {
    throw new TrainerConfigError(field, msg);
  };
  if (!METHODS.includes(cfg.method)) {
    fail("method", `must be one of ${METHODS.join(", ")} (got ${cfg.method})`);
  }
  if (!Number.isInteger(cfg.devices) || cfg.devices < 1) {
    fail("devices", `must be an integer ≥ 1 (got ${cfg.devices})`);
  }
  if (cfg.method !== "full" && (!Number.isInteger(cfg.rank) || cfg.rank < 1)) {
    fail("rank", `must be an integer ≥ 1 (got ${cfg.rank})`);
  }
  const mode = cfg.mode ?? "virtual";
  if (mode !== "virtual") {
    fail(
      "mode",
      `"${mode}" needs the distributed runtime, which is not part of this build yet; use "virtual"`,
    );
  }
  if (cfg.svd && cfg.svd.method !== "exact" && cfg.svd.method !== "randomized") {
    fail("svd.method", `must be "exact" or "randomized" (got ${cfg.svd.method})`);
  }
  if (cfg.svd?.niter !== undefined && !(Number.isInteger(cfg.svd.niter) && cfg.svd.niter >= 0)) {
    fail("svd.niter", `must be an integer ≥ 0 (got ${cfg.svd.niter})`);
  }
  if (!Array.isArray(cfg.adapt) || cfg.adapt.length === 0) {
    fail("adapt", "name at least one 2-D weight to adapt");
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
        `"${name}" is ${w.dtype}[${w.shape}]; only 2-D f32 weights W [out, in] used as x·Wᵀ can be adapted`,
      );
    }
    const d = Math.min(...w.shape);
    if (cfg.method === "hdpissa" && (cfg.devices - 1) * cfg.rank >= d) {
      fail(
        "rank",
        `"${name}" has min(m, n) = ${d} components: with ${cfg.devices} devices × rank ${cfg.rank}, device ${
          cfg.devices - 1
        } would own only zero padding (nothing to train); lower rank or devices`,
      );
    }
    if ((cfg.method === "pissa" || cfg.method === "lora") && cfg.rank > d) {
      fail("rank", `rank ${cfg.rank} exceeds min(m, n) = ${d} of "${name}"`);
    }
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

const zeros = (shape: number[]): HostArray => ({
  shape,
  dtype: "f32",
  data: new Float32Array(shape.reduce((a, b) => a * b, 1)),
});

/** Stacks K shard records into one record whose leaves have a leading K axis. */
function stackShards(
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
    const data = first.dtype === "f32" ? new Float32Array(K * size) : new Int32Array(K * size);
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

export interface AdapterExport {
  trained: LoraFactors;
  /** PiSSA's initial factors (the export subtracts them); absent for LoRA. */
  initial?: { a: Record<string, HostArray>; b: Record<string, HostArray> };
}

export interface Trainer {
  readonly rank: number;
  readonly size: number;
  readonly method: Method;
  step(shards: Record<string, HostArray>[]): Promise<{ loss: number[] }>;
  params(): Promise<Record<string, HostArray>>;
  /**
   * LoRA/PiSSA: the trained factors and the initial ones (PiSSA's A₀, B₀; for LoRA the base W is
   * unchanged so no initial factors are needed). Undefined for HD-PiSSA and full fine-tuning,
   * whose result is the dense model.
   */
  adapters(): Promise<AdapterExport | undefined>;
  stats(): TrainerStats;
  /**
   * Everything needed to continue exactly: weights, adapter slices or factors, optimizer state, the
   * step count. Tensor names are pytree paths ("state/mA/…").
   */
  snapshot(): Promise<TrainerSnapshot>;
  /** Restores a snapshot taken from a trainer of the same configuration. */
  restore(snapshot: TrainerSnapshot): Promise<void>;
}

export interface TrainerSnapshot {
  step: number;
  tensors: Record<string, HostArray>;
}

/** Builds the trainer: initialises adapters (SVD on the host, once), uploads state, compiles lazily. */
export async function createTrainer(cfg: TrainerConfig): Promise<Trainer> {
  validate(cfg);
  const K = cfg.devices;
  const r = cfg.rank;
  const hyper = {
    beta1: cfg.optimizer.beta1 ?? 0.9,
    beta2: cfg.optimizer.beta2 ?? 0.999,
    eps: cfg.optimizer.eps ?? 1e-8,
    weightDecay: cfg.optimizer.weightDecay ?? 0,
  };
  const schedule = typeof cfg.optimizer.lr === "number"
    ? (() => cfg.optimizer.lr as number)
    : cfg.optimizer.lr;
  const scale = (cfg.alpha ?? r) / r;
  const adapt = [...cfg.adapt];
  const dims = adapt.map((n) => cfg.params[n].shape as [number, number]);
  const sumMN = dims.reduce((s, [m, n]) => s + m + n, 0);
  const sumProd = dims.reduce((s, [m, n]) => s + m * n, 0);
  const bytes = 4 *
    (cfg.method === "hdpissa"
      ? (K - 1) * r * sumMN
      : cfg.method === "full"
      ? (2 * (K - 1) / K) * sumProd
      : (2 * (K - 1) / K) * r * sumMN);
  let params = { ...cfg.params };
  /** The leading `k` singular triplets: exact (host, f64) or randomised (device products). */
  const factors = async (w: HostArray, k: number): Promise<Svd> =>
    cfg.svd?.method === "randomized"
      ? await randomizedSvd(w, Math.min(k, ...w.shape), {
        niter: cfg.svd.niter ?? 4,
        seed: cfg.svd.seed ?? cfg.seed ?? 0,
      })
      : svdOf(w);
  let steps = 0;
  let kernels = 0;
  /** Everything that changes or is needed across steps, on the device (snapshot = this tree). */
  let live: Record<string, Tree>;
  let run: (lr: HostArray, batch: Record<string, HostArray>) => Promise<DeviceArray>;
  let dense: () => Promise<Record<string, HostArray>>;
  let adapters: () => Promise<AdapterExport | undefined> = () => Promise.resolve(undefined);
  const lrArray = (v: number): HostArray => ({ shape: [], dtype: "f32", data: Float32Array.of(v) });
  const runStep = async (
    f: Jitted,
    args: string[],
    outs: Record<string, string>,
    lr: HostArray,
    batch: unknown,
  ) => {
    const inputs = [...args.map((k) => live[k]), lr, batch];
    if (kernels === 0) kernels = (await f.program(...inputs)).kernels.length;
    const out = await f.onDevice(...inputs);
    for (const [from, to] of Object.entries(outs)) live[to] = out[from];
    return out.losses as DeviceArray;
  };

  if (cfg.method === "hdpissa") {
    const aCat: Record<string, HostArray> = {}, bCat: Record<string, HostArray> = {};
    const state: HdPissaState<HostArray> = { mA: {}, vA: {}, mB: {}, vB: {}, step: zeros([]) };
    for (const [i, name] of adapt.entries()) {
      const [m, n] = dims[i];
      const init = hdpissaInit(cfg.params[name], r, K, await factors(cfg.params[name], K * r));
      aCat[name] = init.aCat;
      bCat[name] = init.bCat;
      state.mA[name] = zeros([K, r, n]), state.vA[name] = zeros([K, r, n]);
      state.mB[name] = zeros([K, m, r]), state.vB[name] = zeros([K, m, r]);
    }
    const f = jit(hdpissaStep(cfg.loss, adapt, r, hyper), { donate: [0, 2] });
    live = await toDevice({ params, slices: { aCat, bCat }, state }) as Record<string, Tree>;
    run = (lr, batch) =>
      runStep(f, ["params", "slices", "state"], { params: "params", state: "state" }, lr, batch);
    dense = async () => await toHost(live.params) as Record<string, HostArray>;
  } else if (cfg.method === "full") {
    const state: DpState<HostArray> = { m: {}, v: {}, step: zeros([]) };
    adapt.forEach((name, i) => (state.m[name] = zeros(dims[i]), state.v[name] = zeros(dims[i])));
    const f = jit(fullDpStep(cfg.loss, adapt, hyper), { donate: [0, 1] });
    live = await toDevice({ params, state }) as Record<string, Tree>;
    run = (lr, batch) =>
      runStep(f, ["params", "state"], { params: "params", state: "state" }, lr, batch);
    dense = async () => await toHost(live.params) as Record<string, HostArray>;
  } else {
    const a: Record<string, HostArray> = {}, b: Record<string, HostArray> = {};
    const state: DpState<HostArray> = { m: {}, v: {}, step: zeros([]) };
    for (const [i, name] of adapt.entries()) {
      const w = cfg.params[name];
      if (cfg.method === "pissa") {
        const init = pissaInit(w, r, cfg.alpha ?? r, await factors(w, r));
        a[name] = init.a, b[name] = init.b;
        params = { ...params, [name]: init.residual };
      } else {
        const init = loraInit(w, r, (cfg.seed ?? 0) * 1000 + i);
        a[name] = init.a, b[name] = init.b;
      }
      const [m, n] = dims[i];
      state.m[`${name}#a`] = zeros([r, n]), state.v[`${name}#a`] = zeros([r, n]);
      state.m[`${name}#b`] = zeros([m, r]), state.v[`${name}#b`] = zeros([m, r]);
    }
    const f = jit(adapterDpStep(cfg.loss, adapt, scale, hyper), { donate: [1, 2] });
    live = await toDevice({ params, adapters: { a, b }, state, initial: { a, b } }) as Record<
      string,
      Tree
    >;
    run = (lr, batch) =>
      runStep(
        f,
        ["params", "adapters", "state"],
        { adapters: "adapters", state: "state" },
        lr,
        batch,
      );
    const merge = jit(
      (p: Record<string, Tensor>, ad: { a: Record<string, Tensor>; b: Record<string, Tensor> }) => {
        const out = { ...p };
        for (const n of adapt) out[n] = add(p[n], mul(scale, matmul(ad.b[n], ad.a[n])));
        return out;
      },
    );
    dense = async () => await merge(live.params, live.adapters) as Record<string, HostArray>;
    type Factors = { a: Record<string, HostArray>; b: Record<string, HostArray> };
    adapters = async () => {
      const host = await toHost({ trained: live.adapters, initial: live.initial }) as {
        trained: Factors;
        initial: Factors;
      };
      return {
        trained: { ...host.trained, rank: r, alpha: cfg.alpha ?? r },
        initial: cfg.method === "pissa" ? host.initial : undefined,
      };
    };
  }

  return {
    rank: 0,
    size: 1,
    method: cfg.method,
    async step(shards) {
      const batch = stackShards(shards, K);
      const lr = schedule(steps);
      if (!(lr >= 0 && Number.isFinite(lr))) {
        throw new TrainerConfigError("optimizer.lr", `schedule gave ${lr} at step ${steps}`);
      }
      const losses = await run(lrArray(lr), batch);
      steps++;
      const host = await toHost(losses) as HostArray;
      return { loss: Array.from(host.data) };
    },
    params: () => dense(),
    adapters: () => adapters(),
    stats: () => ({ step: steps, bytesCommunicated: bytes, kernelsPerStep: kernels }),
    async snapshot() {
      const host = await toHost(live);
      const [leaves] = flattenTree(host, isHostArray, "snapshot");
      const names = leafPaths(host);
      const tensors = Object.fromEntries(names.map((n, i) => [n, leaves[i] as HostArray]));
      return { step: steps, tensors };
    },
    async restore(snap) {
      const names = leafPaths(live);
      const missing = names.filter((n) => !snap.tensors[n]);
      if (missing.length) {
        throw new Error(`restore: snapshot lacks ${missing.slice(0, 5).join(", ")}`);
      }
      const [current, def] = flattenTree(
        live,
        (x): x is DeviceArray => isDeviceArray(x),
        "restore",
      );
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
      const uploaded = await toDevice(unflattenTree(def, leaves));
      current.forEach((c) => (c as DeviceArray).destroy());
      live = uploaded as Record<string, Tree>;
      steps = snap.step;
    },
  };
}

/** "/"-joined paths of a pytree's leaves, in flattening order. */
function leafPaths(tree: unknown, prefix = ""): string[] {
  if (tree && typeof tree === "object" && !isHostArray(tree) && !isDeviceArray(tree)) {
    if (Array.isArray(tree)) return tree.flatMap((x, i) => leafPaths(x, `${prefix}${i}/`));
    return Object.keys(tree).sort().flatMap((k) => leafPaths((tree as Tree)[k], `${prefix}${k}/`));
  }
  return [prefix.slice(0, -1)];
}
