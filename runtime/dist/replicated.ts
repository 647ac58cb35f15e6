/**
 * `createTrainer` in modes "devices" and "mpi": replicas of the model, each on its own WebGPU
 * device with its own shards, joined by one collective per step.
 *
 * - "devices": K replicas in this process, one device each (own adapter), one shard each; the
 *   collective stages the payloads through the host.
 * - "mpi": one replica per process (rank) with K / P shards; collectives through MPI.
 *
 * Each step runs phase 1 on every replica (loss, gradients, and for HD-PiSSA the Adam step: the
 * payload is ΔA, ΔB; for the data-parallel methods it is the gradient share), the collective
 * (all-gather / all-reduce of one packed buffer), then phase 2 on every replica with the same
 * bytes, so replicas of W stay bitwise identical. Snapshots have the layout of mode "virtual",
 * so a checkpoint resumes in any mode.
 */

import type { HostArray } from "../../dsl/host_array.ts";
import {
  hdpissaApplyGathered,
  hdpissaLocalStep,
  replicatedApplyReduced,
  replicatedLocalGrads,
} from "../../dsl/adapters/dist_steps.ts";
import type { Trained } from "../../dsl/adapters/steps.ts";
import { initMatrix, replicatedTree, shardedTree } from "../method_state.ts";
import { Device, gpu } from "../device.ts";
import type { DeviceArray } from "../device_array.ts";
import { jit, type Jitted, toHost } from "../jit.ts";
import { sha256Hex } from "../io/hash.ts";
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
  TrainerConfigError,
  type TrainerSnapshot,
  type Tree,
  uploadLive,
  uploadRestored,
} from "../trainer_common.ts";
import { type ProcessGroup, processGroup } from "./collectives.ts";

type Rec<T> = Record<string, T>;

/** Raised when replicas' copies of the weights no longer match bit for bit. */
export class ReplicaDivergenceError extends Error {
  /** Makes the error with the given message. */
  constructor(message: string) {
    super(message);
    this.name = "ReplicaDivergenceError";
  }
}

/** Throws `ReplicaDivergenceError` unless every replica's digest of W is the same. */
export function checkReplicaDigests(digests: string[], step: number): void {
  if (digests.every((h) => h === digests[0])) return;
  throw new ReplicaDivergenceError(
    `replicas of W diverged after step ${step}: SHA-256 prefixes by replica ${
      digests.map((h, i) => `${i}=${h}`).join(", ")
    } (replicas must be bitwise identical; check that every rank runs the same build on the same kind of device)`,
  );
}

interface Replica {
  device: Device;
  /** Everything that persists across steps, in mode "virtual"'s layout (state: this replica's shards). */
  live: Rec<Tree>;
  phase1: Jitted;
  phase2: Jitted;
}

const f32 = (shape: number[], data: Float32Array): HostArray => ({ shape, dtype: "f32", data });

/** Rows [start, start + count) of the leading axis. */
function leading(h: HostArray, start: number, count: number): HostArray {
  const row = h.shape.slice(1).reduce((a, b) => a * b, 1);
  return {
    shape: [count, ...h.shape.slice(1)],
    dtype: h.dtype,
    data: h.data.slice(start * row, (start + count) * row),
  } as HostArray;
}

/** Concatenates along the leading axis. */
function stackLeading(parts: HostArray[]): HostArray {
  const n = parts.reduce((s, p) => s + p.data.length, 0);
  const data = new Float32Array(n);
  let at = 0;
  for (const p of parts) data.set(p.data, at), at += p.data.length;
  const rows = parts.reduce((s, p) => s + p.shape[0], 0);
  return f32([rows, ...parts[0].shape.slice(1)], data);
}

function concatF32(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, at), at += p.length;
  return out;
}

/**
 * SHA-256 (hex) of a record of tensors: each tensor hashed on its own, then the digests in name
 * order, so no model-sized copy is made.
 */
async function tensorsDigest(tensors: Rec<HostArray>): Promise<string> {
  const names = Object.keys(tensors).sort();
  const digests = await Promise.all(names.map((n) => {
    const d = tensors[n].data;
    return sha256Hex(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
  }));
  return await sha256Hex(new TextEncoder().encode(digests.join(",")));
}

/**
 * What must agree between ranks: a short summary whose heavy parts (names, shapes, weights) are
 * hashed. Compared field by field at start-up so a mismatch names what differs.
 */
async function configSummary(cfg: TrainerConfig): Promise<Rec<unknown>> {
  const names = Object.keys(cfg.params).sort();
  const enc = new TextEncoder();
  const shapes = names.map((n) => `${n}:${cfg.params[n].dtype}[${cfg.params[n].shape}]`).join(";");
  const o = cfg.optimizer;
  const schedule = typeof o.lr === "number"
    ? String(o.lr)
    : Array.from({ length: 1000 }, (_, t) => (o.lr as (t: number) => number)(t)).join(",");
  return {
    method: methodOf(cfg).name,
    devices: cfg.devices,
    rank: cfg.rank,
    alpha: cfg.alpha ?? null,
    rsLora: cfg.rsLora ?? false,
    lr: typeof o.lr === "number" ? o.lr : "schedule",
    lrSchedule: (await sha256Hex(enc.encode(schedule))).slice(0, 16),
    verifyReplicasEvery: cfg.verifyReplicasEvery ?? null,
    adam: [o.beta1 ?? 0.9, o.beta2 ?? 0.999, o.eps ?? 1e-8, o.weightDecay ?? 0].join(","),
    svd: JSON.stringify(cfg.svd ?? null),
    seed: cfg.seed ?? 0,
    adapt: (await sha256Hex(enc.encode(cfg.adapt.join(",")))).slice(0, 16),
    shapes: (await sha256Hex(enc.encode(shapes))).slice(0, 16),
    weights: (await tensorsDigest(cfg.params)).slice(0, 16),
  };
}

/** Fails on every rank, naming the fields and ranks, if the ranks were configured differently. */
async function checkSameConfig(group: ProcessGroup, cfg: TrainerConfig): Promise<void> {
  if (group.size === 1) return;
  const mine = await configSummary(cfg);
  const slot = 1024;
  const buf = new Uint8Array(slot);
  const text = new TextEncoder().encode(JSON.stringify(mine));
  if (text.length > slot) throw new Error("configuration summary too long");
  buf.set(text);
  const all = await group.allGather(buf);
  const decode = (p: number) => {
    const raw = all.subarray(p * slot, (p + 1) * slot);
    return JSON.parse(
      new TextDecoder().decode(raw.subarray(0, raw.indexOf(0) < 0 ? slot : raw.indexOf(0))),
    );
  };
  const first = decode(0);
  const diffs: string[] = [];
  for (let p = 1; p < group.size; p++) {
    const other = decode(p);
    for (const k of Object.keys(first)) {
      if (JSON.stringify(first[k]) !== JSON.stringify(other[k])) {
        diffs.push(
          `${k}: rank 0 has ${JSON.stringify(first[k])}, rank ${p} has ${JSON.stringify(other[k])}`,
        );
      }
    }
  }
  if (diffs.length) {
    throw new TrainerConfigError(
      "mode",
      `the ${group.size} MPI ranks were started with different configurations (${
        diffs.slice(0, 6).join("; ")
      }); every rank must run the same command on the same model`,
    );
  }
}

/**
 * Per adapted matrix, `init` runs on one rank (matrix i on rank i mod P: the SVDs are shared out,
 * not repeated) and its named arrays are broadcast to the others: first their names and shapes
 * (the other ranks cannot know them for a user-defined method), then the data.
 */
async function sharedInit(
  group: ProcessGroup,
  adapt: readonly string[],
  init: (name: string) => Promise<Rec<HostArray>>,
): Promise<Rec<Rec<HostArray>>> {
  // Each rank first factors all the matrices it owns (in parallel across ranks), then waits for
  // the slowest without the collective timeout (an exact SVD of a large W takes minutes), then the
  // results are broadcast in order.
  const made = new Map<string, Rec<HostArray>>();
  for (const [i, name] of adapt.entries()) {
    if (i % group.size === group.rank) made.set(name, await init(name));
  }
  if (group.size === 1) return Object.fromEntries(made);
  await group.barrier({ timeoutMs: Infinity });
  const out: Rec<Rec<HostArray>> = {};
  for (const [i, name] of adapt.entries()) {
    const owner = i % group.size;
    const mine = made.get(name);
    const header = new Uint8Array(HEADER_BYTES);
    if (mine) {
      const text = new TextEncoder().encode(
        JSON.stringify(Object.entries(mine).map(([k, x]) => [k, x.shape])),
      );
      if (text.length > HEADER_BYTES) throw new Error(`init of "${name}": too many arrays`);
      header.set(text);
    }
    const got = await group.broadcast(header, owner);
    const end = got.indexOf(0);
    const shapes = JSON.parse(new TextDecoder().decode(got.subarray(0, end < 0 ? undefined : end)));
    const result: Rec<HostArray> = {};
    for (const [key, shape] of shapes as [string, number[]][]) {
      const data = mine
        ? (mine[key].data as Float32Array)
        : new Float32Array(shape.reduce((a, b) => a * b, 1));
      result[key] = f32(shape, await group.broadcast(data, owner));
    }
    out[name] = result;
  }
  return out;
}

/** Room for one matrix's array names and shapes in the init broadcast. */
const HEADER_BYTES = 4096;

export async function createReplicatedTrainer(cfg: TrainerConfig): Promise<Trainer> {
  const mode = cfg.mode as "devices" | "mpi";
  const K = cfg.devices, r = cfg.rank;
  const group = await processGroup(mode, {
    timeoutMs: cfg.collectiveTimeoutMs,
    library: cfg.mpiLibrary,
  });
  await checkSameConfig(group, cfg);
  const P = group.size;
  if (K % P !== 0) {
    throw new TrainerConfigError(
      "devices",
      `${K} devices (shards) cannot be split evenly over ${P} MPI ranks; use a multiple of ${P}`,
    );
  }
  const localReplicas = mode === "devices" ? K : 1;
  const kl = mode === "devices" ? 1 : K / P; // shards per replica
  const replicasTotal = localReplicas * P;
  const firstShard = (i: number) => (group.rank * localReplicas + i) * kl;
  const hyper = adamHyper(cfg);
  const lrAt = learningRate(cfg);
  const method = methodOf(cfg);
  const scale = adapterScale(cfg);
  const adapt = [...cfg.adapt];
  const devices = mode === "devices" ? await openDevices(K) : [await gpu()];

  // Host-side initial state, identical on every replica except the per-shard parts.
  const inits = await sharedInit(group, adapt, (n) => initMatrix(method, cfg, n));
  const hd = method.family === "sharded";
  const trees = hd
    ? () => ({ live: shardedTree(cfg, inits, kl) })
    : () => ({ live: replicatedTree(method, cfg, inits) });
  /** The two compiled phases for replica `i` on `device`. */
  const makePhases = (device: Device, i: number): { phase1: Jitted; phase2: Jitted } =>
    method.family === "sharded"
      ? {
        phase1: jit(hdpissaLocalStep(cfg.loss, adapt, hyper, r, firstShard(i), kl), {
          device,
          donate: [2],
        }),
        phase2: jit(hdpissaApplyGathered(adapt, r, replicasTotal, kl), { device, donate: [0] }),
      }
      : {
        phase1: jit(replicatedLocalGrads(method, cfg.loss, K, scale), { device }),
        phase2: jit(replicatedApplyReduced(hyper), { device, donate: [0, 1] }),
      };

  const replicas: Replica[] = [];
  for (const [i, device] of devices.entries()) {
    const t = trees();
    replicas.push({
      device,
      live: await uploadLive(t.live, cfg, method.family === "sharded" ? adapt : [], device),
      ...makePhases(device, i),
    });
  }

  let steps = 0;
  /** Steps taken by this trainer object (a restore sets `steps`, not this): for per-step means. */
  let sessionSteps = 0;
  let kernels = 0;
  let phase2Counted = false;
  const totals = { sent: 0, received: 0, compute: 0, comm: 0, lastSent: 0 };

  /** Phase-1 arguments and the live keys its outputs replace. */
  const phase1Args = (rep: Replica, lr: HostArray, batch: unknown): unknown[] =>
    hd
      ? [rep.live.params, rep.live.slices, rep.live.state, lr, batch]
      : [rep.live.params, rep.live.trained, rep.live.frozen, batch];

  const runPhase1 = async (rep: Replica, lr: HostArray, batch: unknown) => {
    const args = phase1Args(rep, lr, batch);
    if (kernels === 0 && rep === replicas[0]) {
      kernels = (await rep.phase1.program(...args)).kernels.length;
    }
    const out = await rep.phase1.onDevice(...args) as Rec<DeviceArray & Tree>;
    if (hd) rep.live.state = out.state;
    const payload = (hd ? out.deltas : out.grads) as DeviceArray;
    const host = await toHost({ payload, losses: out.losses }) as {
      payload: HostArray;
      losses: HostArray;
    };
    payload.destroy(), (out.losses as DeviceArray).destroy();
    return { payload: host.payload.data as Float32Array, losses: Array.from(host.losses.data) };
  };

  const runPhase2 = async (rep: Replica, lr: HostArray, combined: HostArray) => {
    const args = hd
      ? [rep.live.params, rep.live.slices, combined]
      : [rep.live.trained, rep.live.state, lr, combined];
    if (rep === replicas[0] && !phase2Counted) {
      kernels += (await rep.phase2.program(...args)).kernels.length;
      phase2Counted = true;
    }
    const out = await rep.phase2.onDevice(...args) as Rec<Tree>;
    if (hd) rep.live.params = out as unknown as Tree;
    else rep.live.state = out.state, rep.live.trained = out.trained;
  };

  /** Ring-model bytes one replica sends in this step's collective (staged replicas included). */
  const collectiveBytes = (payloadBytes: number) =>
    hd
      ? (replicasTotal - 1) * payloadBytes
      : (2 * (replicasTotal - 1) / replicasTotal) * payloadBytes;

  const combine = async (payloads: Float32Array[]): Promise<Float32Array> => {
    if (hd) return await group.allGather(concatF32(payloads));
    // Local replicas' shares summed in replica order, then across processes.
    const sum = new Float32Array(payloads[0].length);
    for (const p of payloads) {
      for (let j = 0; j < sum.length; j++) sum[j] = Math.fround(sum[j] + p[j]);
    }
    return await group.allReduce(sum, "sum");
  };

  const verify = async () => {
    const digests = await Promise.all(replicas.map(async (rep) => {
      // What every replica must hold alike: W, and a replicated method's trained tensors (an HD-
      // method's Adam state is per shard by design).
      const shared = hd ? rep.live.params : { params: rep.live.params, trained: rep.live.trained };
      return await tensorsDigest(snapshotTensors(await toHost(shared)));
    }));
    // Each replica's hex digest, 64 ASCII bytes, gathered from every process.
    const all = await group.allGather(new TextEncoder().encode(digests.join("")));
    const hex = (i: number) => new TextDecoder().decode(all.subarray(64 * i, 64 * i + 16));
    checkReplicaDigests(Array.from({ length: replicasTotal }, (_, i) => hex(i)), steps);
  };

  const expectedShards = localReplicas * kl;
  /** Losses of the steps taken by `enqueue`, not handed out yet. */
  const read: number[][] = [];
  const trainer: Trainer = {
    rank: mode === "mpi" ? group.rank : 0,
    size: mode === "mpi" ? P : 1,
    method: method.name,
    async step(shards) {
      if (!Array.isArray(shards) || shards.length !== expectedShards) {
        throw new TrainerConfigError(
          "step",
          mode === "mpi"
            ? `rank ${group.rank} of ${P} takes its own ${kl} shard batch(es) (shards ${
              firstShard(0)
            }…${firstShard(0) + kl - 1} of ${K}), got ${shards?.length}`
            : `expected ${K} shard batches (one per device), got ${shards?.length}`,
        );
      }
      const lr = lrAt(steps);
      const t0 = performance.now();
      const outs = await Promise.all(
        replicas.map((rep, i) =>
          runPhase1(rep, lr, stackShards(shards.slice(i * kl, (i + 1) * kl), kl))
        ),
      );
      const t1 = performance.now();
      const payloads = outs.map((o) => o.payload);
      const before = { ...group.counters };
      const combined = await combine(payloads);
      const t2 = performance.now();
      const gathered = f32([combined.length], combined);
      await Promise.all(replicas.map((rep) => runPhase2(rep, lr, gathered)));
      const t3 = performance.now();
      const bytes = collectiveBytes(payloads[0].byteLength);
      totals.lastSent = bytes;
      totals.sent += bytes;
      totals.received += bytes;
      totals.compute += (t1 - t0 + t3 - t2) / 1000;
      totals.comm += mode === "mpi" ? group.counters.seconds - before.seconds : (t2 - t1) / 1000;
      steps++, sessionSteps++;
      if (cfg.verifyReplicasEvery && steps % cfg.verifyReplicasEvery === 0) await verify();
      return { loss: outs.flatMap((o) => o.losses) };
    },
    // Phase 1's losses come back with its payload: a distributed step syncs anyway.
    async enqueue(shards) {
      read.push((await trainer.step(shards)).loss);
    },
    readLosses: () => Promise.resolve(read.splice(0)),
    params: async () => {
      const rep = replicas[0];
      if (method.family === "sharded") return await toHost(rep.live.params) as Rec<HostArray>;
      return await mergeWeights(method, scale, rep.device)(
        rep.live.params,
        rep.live.trained,
        rep.live.frozen,
      ) as Rec<HostArray>;
    },
    async adapters(): Promise<AdapterExport | undefined> {
      if (method.family === "sharded" || !method.peft) return undefined;
      const rep = replicas[0];
      const host = await toHost({ trained: rep.live.trained, initial: rep.live.initial }) as {
        trained: Trained<HostArray>;
        initial: Trained<HostArray>;
      };
      return method.peft(host.trained, host.initial, {
        rank: r,
        alpha: cfg.alpha ?? r,
        rsLora: cfg.rsLora ?? false,
      });
    },
    stats: () => {
      const per = (x: number) => (sessionSteps ? x / sessionSteps : 0);
      return {
        step: steps,
        bytesCommunicated: sessionSteps ? totals.lastSent : costModelBytes(cfg),
        kernelsPerStep: kernels,
        bytesSent: per(totals.sent),
        bytesReceived: per(totals.received),
        computeSeconds: per(totals.compute),
        communicationSeconds: per(totals.comm),
        replicas: replicasTotal,
        localReplicas,
      };
    },
    async snapshot(): Promise<TrainerSnapshot> {
      const host = await toHost(replicas[0].live) as Rec<Tree>;
      if (hd) host.state = await globalState(replicas, group, adapt) as unknown as Tree;
      return { step: steps, tensors: snapshotTensors(host) };
    },
    async restore(snap) {
      for (const [i, rep] of replicas.entries()) {
        const mine = { ...snap, tensors: { ...snap.tensors } };
        if (hd) {
          for (const [key, t] of Object.entries(snap.tensors)) {
            if (/^state\/[mv][AB]\//.test(key)) {
              if (t.shape[0] !== K) {
                throw new Error(`restore: ${key} is [${t.shape}], needs ${K} shards`);
              }
              mine.tensors[key] = leading(t, firstShard(i), kl);
            }
          }
        }
        const uploaded = await uploadRestored(rep.live, mine, rep.device);
        destroyTree(rep.live);
        rep.live = uploaded;
      }
      steps = snap.step;
    },
    async gatherScalars(values) {
      const before = { ...group.counters };
      const all = await group.allGather(Float64Array.from(values));
      // Control traffic: kept out of the step's figures (bytes and time alike).
      Object.assign(group.counters, before);
      return Array.from(all);
    },
    async barrier(opts) {
      await group.barrier(opts);
    },
    async close() {
      for (const rep of replicas) {
        destroyTree(rep.live);
        if (mode === "devices") rep.device.destroy();
      }
      replicas.length = 0;
      await group.finalize();
    },
  };
  return trainer;
}

/** HD-PiSSA's Adam state of all K shards (stacked [K, …]) from every replica and rank. */
async function globalState(replicas: Replica[], group: ProcessGroup, adapt: string[]) {
  const states = await Promise.all(replicas.map((rep) => toHost(rep.live.state))) as Rec<
    Rec<HostArray> | HostArray
  >[];
  const keys = ["mA", "vA", "mB", "vB"] as const;
  const localStacked = keys.flatMap((k) =>
    adapt.map((n) => stackLeading(states.map((s) => (s[k] as Rec<HostArray>)[n])))
  );
  const flat = concatF32(localStacked.map((h) => h.data as Float32Array));
  const all = await group.allGather(flat);
  const out: Rec<Rec<HostArray> | HostArray> = { step: states[0].step as HostArray };
  let at = 0;
  const per = flat.length;
  let idx = 0;
  for (const k of keys) {
    const rec: Rec<HostArray> = {};
    for (const n of adapt) {
      const h = localStacked[idx++];
      const size = h.data.length;
      const parts = Array.from(
        { length: group.size },
        (_, p) => f32(h.shape, all.slice(p * per + at, p * per + at + size)),
      );
      rec[n] = stackLeading(parts);
      at += size;
    }
    out[k] = rec;
  }
  return out;
}

/** K devices, each on its own adapter (one process may drive several GPUs, or share one). */
async function openDevices(K: number): Promise<Device[]> {
  const out: Device[] = [];
  for (let i = 0; i < K; i++) out.push(await Device.open());
  return out;
}
