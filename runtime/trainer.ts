/**
 * `createTrainer`: any method record (dsl/adapters/methods/: HD-PiSSA, its baselines, and
 * user-defined ones) as compiled training steps. Mode "virtual" runs K shards on one WebGPU device: one program per
 * step computes every shard's loss and gradients, the per-shard updates and their reduction on the
 * device — no host round trip except reading the K losses.
 */

import type { HostArray } from "../dsl/host_array.ts";
import { hdpissaStep, replicatedStep, type Trained } from "../dsl/adapters/steps.ts";
import { initMatrix, replicatedTree, shardedTree } from "./method_state.ts";
import { type DeviceArray, isDeviceArray, readArrays } from "./device_array.ts";
import { flattenTree } from "../dsl/pytree.ts";
import { availableHostBytes, checkStepMemory, planOf } from "./step_plan.ts";
import { jit, type Jitted, toHost } from "./jit.ts";
import { gpu } from "./device.ts";
import { createReplicatedTrainer } from "./dist/replicated.ts";
import {
  adamHyper,
  type AdapterExport,
  adapterScale,
  costModelBytes,
  destroyTree,
  learningRate,
  mergeWeights,
  methodOf,
  snapshotTensors,
  stackShards,
  type Trainer,
  type TrainerConfig,
  type Tree,
  uploadLive,
  uploadRestored,
  validate,
} from "./trainer_common.ts";

export {
  type AdapterExport,
  type Method,
  methodOf,
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
  const method = methodOf(cfg);
  const scale = adapterScale(cfg);
  const adapt = [...cfg.adapt];
  const bytes = costModelBytes(cfg);
  let steps = 0;
  let kernels = 0;
  /** Everything that changes or is needed across steps, on the device (snapshot = this tree). */
  let live: Record<string, Tree>;
  let run: (lr: HostArray, batch: Record<string, HostArray>) => Promise<DeviceArray>;
  let dense: () => Promise<Record<string, HostArray>>;
  let adapters: () => Promise<AdapterExport | undefined> = () => Promise.resolve(undefined);
  /** The compiled step and the names of its state arguments (set by the method's branch). */
  let compiled!: { f: Jitted; args: string[] };
  /** Losses of the steps enqueued and not read yet, still on the device. */
  const pending: DeviceArray[] = [];
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

  const inits: Record<string, Record<string, HostArray>> = {};
  for (const name of adapt) inits[name] = await initMatrix(method, cfg, name);
  if (method.family === "sharded") {
    const f = jit(hdpissaStep(cfg.loss, adapt, r, hyper), {
      donate: [0, 2],
      codegen: cfg.codegen,
      autotune: cfg.autotune,
    });
    compiled = { f, args: ["params", "slices", "state"] };
    live = await uploadLive(shardedTree(cfg, inits, K), cfg, adapt);
    run = (lr, batch) =>
      runStep(f, ["params", "slices", "state"], { params: "params", state: "state" }, lr, batch);
    dense = async () => await toHost(live.params) as Record<string, HostArray>;
  } else {
    const f = jit(replicatedStep(method, cfg.loss, scale, hyper), {
      donate: [1, 3],
      codegen: cfg.codegen,
      autotune: cfg.autotune,
    });
    const args = ["params", "trained", "frozen", "state"];
    compiled = { f, args };
    live = await uploadLive(replicatedTree(method, cfg, inits), cfg, []);
    run = (lr, batch) => runStep(f, args, { trained: "trained", state: "state" }, lr, batch);
    const merge = mergeWeights(method, scale);
    dense = async () =>
      await merge(live.params, live.trained, live.frozen) as Record<string, HostArray>;
    const peft = method.peft;
    if (peft) {
      adapters = async () => {
        const host = await toHost({ trained: live.trained, initial: live.initial }) as {
          trained: Trained<HostArray>;
          initial: Trained<HostArray>;
        };
        return peft(host.trained, host.initial, {
          rank: r,
          alpha: cfg.alpha ?? r,
          rsLora: cfg.rsLora ?? false,
        });
      };
    }
  }

  let memoryChecked = false;
  const planFor = async (batch: Record<string, HostArray>) => {
    const { f, args } = compiled;
    const program = await f.program(...args.map((k) => live[k]), lrAt(steps), batch);
    const leaves = (x: unknown) => flattenTree(x, isDeviceArray, "plan")[0].length;
    const state = args.slice(1).reduce((n, k) => n + leaves(live[k]), 0);
    return planOf(program, [leaves(live.params), state]);
  };

  const trainer: Trainer = {
    rank: 0,
    size: 1,
    method: method.name,
    async step(shards) {
      await trainer.enqueue(shards);
      // Only this step's losses: steps enqueued before stay queued for readLosses.
      const [loss] = await readAndFree([pending.pop()!]);
      return { loss };
    },
    async enqueue(shards) {
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
      pending.push(await run(lrAt(steps), batch));
      steps++;
    },
    readLosses: () => readAndFree(pending.splice(0)),
    params: () => dense(),
    adapters: () => adapters(),
    ...(method.family === "sharded"
      ? { deviceParams: () => live.params as Record<string, DeviceArray> }
      : {}),
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
      const uploaded = await uploadRestored(live, snap);
      destroyTree(live);
      live = uploaded;
      steps = snap.step;
    },
    gatherScalars: (values) => Promise.resolve([...values]),
    barrier: () => Promise.resolve(),
    close() {
      destroyTree(live);
      return Promise.resolve();
    },
  };
  return trainer;
}

/** Reads device arrays back in one sync point and releases their buffers. */
async function readAndFree(arrays: DeviceArray[]): Promise<number[][]> {
  const host = await readArrays(arrays);
  arrays.forEach((a) => a.destroy());
  return host.map((h) => Array.from(h.data));
}
