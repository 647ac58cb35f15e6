/**
 * `createTrainer`: HD-PiSSA and its baselines (data-parallel LoRA, PiSSA, full fine-tuning) as
 * compiled training steps. Mode "virtual" runs K shards on one WebGPU device: one program per
 * step computes every shard's loss and gradients, the per-shard updates and their reduction on the
 * device — no host round trip except reading the K losses.
 */

import type { HostArray } from "../dsl/host_array.ts";
import { hdpissaInit, loraInit, pissaInit } from "../dsl/adapters/init.ts";
import {
  adapterDpStep,
  type DpState,
  fullDpStep,
  type HdPissaState,
  hdpissaStep,
} from "../dsl/adapters/steps.ts";
import { type DeviceArray, isDeviceArray } from "./device_array.ts";
import { flattenTree } from "../dsl/pytree.ts";
import { availableHostBytes, checkStepMemory, planOf } from "./step_plan.ts";
import { jit, type Jitted, toDevice, toHost } from "./jit.ts";
import { gpu } from "./device.ts";
import { createReplicatedTrainer } from "./dist/replicated.ts";
import {
  adamHyper,
  type AdapterExport,
  costModelBytes,
  destroyTree,
  leadingFactors,
  learningRate,
  mergeAdapters,
  restoredTree,
  snapshotTensors,
  stackShards,
  type Trainer,
  type TrainerConfig,
  type Tree,
  validate,
  zeros,
} from "./trainer_common.ts";

export {
  type AdapterExport,
  type Method,
  type Trainer,
  type TrainerConfig,
  TrainerConfigError,
  type TrainerSnapshot,
  type TrainerStats,
} from "./trainer_common.ts";

/**
 * Builds the trainer: initialises adapters (SVD on the host, once), uploads state, compiles lazily.
 *
 * @example
 * const trainer = await createTrainer({
 *   loss: (p, batch) => mean(square(sub(matmul(batch.x, transpose(p.w)), batch.y))),
 *   params: { w: array([[1, 2], [3, 4]]) },
 *   adapt: ["w"],
 *   method: "hdpissa",
 *   devices: 2,
 *   rank: 1,
 *   optimizer: { lr: 0.01 },
 * });
 * const { loss } = await trainer.step([batch0, batch1]); // one batch per device
 */
export async function createTrainer(cfg: TrainerConfig): Promise<Trainer> {
  validate(cfg);
  const K = cfg.devices;
  const r = cfg.rank;
  if (cfg.mode === "devices" || cfg.mode === "mpi") return await createReplicatedTrainer(cfg);
  const hyper = adamHyper(cfg);
  const lrAt = learningRate(cfg);
  const scale = (cfg.alpha ?? r) / r;
  const adapt = [...cfg.adapt];
  const dims = adapt.map((n) => cfg.params[n].shape as [number, number]);
  const bytes = costModelBytes(cfg);
  let params = { ...cfg.params };
  const factors = (w: HostArray, k: number) => leadingFactors(cfg, w, k);
  let steps = 0;
  let kernels = 0;
  /** Everything that changes or is needed across steps, on the device (snapshot = this tree). */
  let live: Record<string, Tree>;
  let run: (lr: HostArray, batch: Record<string, HostArray>) => Promise<DeviceArray>;
  let dense: () => Promise<Record<string, HostArray>>;
  let adapters: () => Promise<AdapterExport | undefined> = () => Promise.resolve(undefined);
  /** The compiled step and the names of its state arguments (set by the method's branch). */
  let compiled!: { f: Jitted; args: string[] };
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
    compiled = { f, args: ["params", "slices", "state"] };
    live = await toDevice({ params, slices: { aCat, bCat }, state }) as Record<string, Tree>;
    run = (lr, batch) =>
      runStep(f, ["params", "slices", "state"], { params: "params", state: "state" }, lr, batch);
    dense = async () => await toHost(live.params) as Record<string, HostArray>;
  } else if (cfg.method === "full") {
    const state: DpState<HostArray> = { m: {}, v: {}, step: zeros([]) };
    adapt.forEach((name, i) => (state.m[name] = zeros(dims[i]), state.v[name] = zeros(dims[i])));
    const f = jit(fullDpStep(cfg.loss, adapt, hyper), { donate: [0, 1] });
    compiled = { f, args: ["params", "state"] };
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
    compiled = { f, args: ["params", "adapters", "state"] };
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
    const merge = mergeAdapters(adapt, scale);
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

  let memoryChecked = false;
  const planFor = async (batch: Record<string, HostArray>) => {
    const { f, args } = compiled;
    const program = await f.program(...args.map((k) => live[k]), lrAt(steps), batch);
    const leaves = (x: unknown) => flattenTree(x, isDeviceArray, "plan")[0].length;
    const state = args.slice(1).reduce((n, k) => n + leaves(live[k]), 0);
    return planOf(program, [leaves(live.params), state]);
  };

  return {
    rank: 0,
    size: 1,
    method: cfg.method,
    async step(shards) {
      const batch = stackShards(shards, K);
      if (!memoryChecked) {
        // Before the first step runs: a step that cannot fit stops here with what to reduce,
        // instead of swapping the host (CPU adapters) halfway through.
        memoryChecked = true;
        checkStepMemory(await planFor(batch), {
          cpuAdapter: (await gpu()).info.isFallbackAdapter,
          availableBytes: availableHostBytes(),
          op: "trainer.step",
        });
      }
      const losses = await run(lrAt(steps), batch);
      steps++;
      const host = await toHost(losses) as HostArray;
      return { loss: Array.from(host.data) };
    },
    params: () => dense(),
    adapters: () => adapters(),
    stats: () => ({ step: steps, bytesCommunicated: bytes, kernelsPerStep: kernels }),
    plan: (shards) => planFor(stackShards(shards, K)),
    async profile(shards) {
      const { f, args } = compiled;
      return await f.profile(...args.map((k) => live[k]), lrAt(steps), stackShards(shards, K));
    },
    async snapshot() {
      return { step: steps, tensors: snapshotTensors(await toHost(live)) };
    },
    async restore(snap) {
      const uploaded = await toDevice(restoredTree(live, snap));
      destroyTree(live);
      live = uploaded as Record<string, Tree>;
      steps = snap.step;
    },
    gatherScalars: (values) => Promise.resolve([...values]),
    barrier: () => Promise.resolve(),
    close() {
      destroyTree(live);
      return Promise.resolve();
    },
  };
}
