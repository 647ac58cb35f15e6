/**
 * The training steps split at the collective, for runtimes whose shards live on several devices or
 * processes. Phase 1 runs on each replica with its own shards and packs what must travel into one
 * flat f32 vector (one bucketed collective per step); phase 2 runs on every replica with the same
 * collective result, so replicas stay bitwise identical.
 *
 * - Sharded (HD-) methods: phase 1 gives this replica's factor deltas ΔA, ΔB (A, B never
 *   travel); they are all-gathered; phase 2 applies ΔW from all K shards' deltas.
 * - Replicated methods (LoRA, PiSSA, DoRA, full, …): phase 1 gives this replica's share of the
 *   mean gradient (Σ of its shards' gradients / K); they are all-reduced (summed); phase 2 is
 *   the Adam step. Both phases are derived from the method's `weight`.
 */

import { DslError } from "../errors.ts";
import { concat, reshape, slice } from "../ops/shape.ts";
import type { Tensor } from "../trace.ts";
import {
  type AdamHyper,
  adamOnRecord,
  applyFactorDeltas,
  type DpState,
  flattenTrained,
  hdpissaShardDeltas,
  type HdPissaState,
  meanShardGrads,
  replicatedLoss,
  type ShardLoss,
  shardSlices,
  type Trained,
  unflattenTrained,
} from "./steps.ts";
import type { ReplicatedMethod } from "./methods/spec.ts";

type Rec<T> = Record<string, T>;
const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Flattens tensors, in order, into one f32 vector. */
export function packTensors(xs: readonly Tensor[]): Tensor {
  if (xs.length === 0) throw new DslError("packTensors", "nothing to pack");
  let parts = xs.map((x) => reshape(x, [size(x.shape)]));
  // A tree of concats of at most PACK_FAN_IN inputs: one kernel may bind only so many buffers.
  while (parts.length > 1) {
    const next: Tensor[] = [];
    for (let i = 0; i < parts.length; i += PACK_FAN_IN) {
      const group = parts.slice(i, i + PACK_FAN_IN);
      next.push(group.length === 1 ? group[0] : concat(group, 0));
    }
    parts = next;
  }
  return parts[0];
}

const PACK_FAN_IN = 8;

/** The inverse of `packTensors` from `offset` of `flat`: one tensor per shape. */
export function unpackTensors(flat: Tensor, shapes: readonly (readonly number[])[], offset = 0) {
  const out: Tensor[] = [];
  let at = offset;
  for (const shape of shapes) {
    const n = size(shape);
    out.push(reshape(slice(flat, [at], [at + n]), shape));
    at += n;
  }
  if (at > flat.shape[0]) {
    throw new DslError("unpackTensors", `needs ${at} elements, the buffer has ${flat.shape[0]}`);
  }
  return out;
}

/**
 * HD-PiSSA phase 1 for shards [firstShard, firstShard + count) of K: their fixed slices are taken
 * from the concatenated `aCat` [K·r, n], `bCat` [m, K·r] inside the program (as mode "virtual"
 * does for all K), so they always match the slices phase 2 applies. `deltas` packs, per adapted
 * matrix in `adapt` order, ΔA [count, r, n] then ΔB [count, m, r].
 */
export function hdpissaLocalStep(
  loss: ShardLoss,
  adapt: readonly string[],
  hyper: AdamHyper,
  rank: number,
  firstShard: number,
  count: number,
) {
  return (
    params: Rec<Tensor>,
    slices: { aCat: Rec<Tensor>; bCat: Rec<Tensor> },
    state: HdPissaState<Tensor>,
    lr: Tensor,
    shards: unknown,
  ) => {
    const all = shardSlices(slices, rank);
    const mine = { a: {} as Rec<Tensor>, b: {} as Rec<Tensor> };
    for (const n of adapt) {
      mine.a[n] = slice(all.a[n], [firstShard], [firstShard + count]);
      mine.b[n] = slice(all.b[n], [firstShard], [firstShard + count]);
    }
    const d = hdpissaShardDeltas(loss, adapt, hyper, params, mine, state, lr, shards);
    const deltas = packTensors(adapt.flatMap((n) => [d.dA[n], d.dB[n]]));
    return { deltas, state: d.state, losses: d.losses };
  };
}

/**
 * HD-PiSSA phase 2: `gathered` holds `replicas` blocks in replica order, each the `deltas` of a
 * replica with `shardsPerReplica` shards; applies ΔW of all K = replicas·shardsPerReplica shards.
 */
export function hdpissaApplyGathered(
  adapt: readonly string[],
  rank: number,
  replicas: number,
  shardsPerReplica: number,
) {
  return (
    params: Rec<Tensor>,
    slices: { aCat: Rec<Tensor>; bCat: Rec<Tensor> },
    gathered: Tensor,
  ) => {
    const k = shardsPerReplica;
    const shapes = adapt.flatMap((n) => {
      const [m, cols] = params[n].shape;
      return [[k, rank, cols], [k, m, rank]];
    });
    const block = shapes.reduce((s, sh) => s + size(sh), 0);
    if (gathered.shape.length !== 1 || gathered.shape[0] !== replicas * block) {
      throw new DslError(
        "hdpissaApplyGathered",
        `expected ${replicas} blocks of ${block} deltas, got [${gathered.shape}]`,
      );
    }
    const blocks = Array.from(
      { length: replicas },
      (_, p) => unpackTensors(gathered, shapes, p * block),
    );
    const dA: Rec<Tensor> = {}, dB: Rec<Tensor> = {};
    adapt.forEach((n, i) => {
      dA[n] = concat(blocks.map((b) => b[2 * i]), 0);
      dB[n] = concat(blocks.map((b) => b[2 * i + 1]), 0);
    });
    return applyFactorDeltas(params, slices, dA, dB);
  };
}

/**
 * Replicated phase 1: per-shard losses and this replica's share Σₖ∇Lₖ/K of the mean gradient of
 * the method's trained tensors, packed in `flattenTrained` order.
 */
export function replicatedLocalGrads(
  method: ReplicatedMethod,
  loss: ShardLoss,
  totalShards: number,
  scale: number,
) {
  return (
    params: Rec<Tensor>,
    trained: Trained<Tensor>,
    frozen: Trained<Tensor>,
    shards: unknown,
  ) => {
    const flat = flattenTrained(trained);
    const lossOf = replicatedLoss(method, loss, params, frozen, scale);
    const { losses, grads } = meanShardGrads(shards, flat, lossOf, totalShards);
    return { grads: packTensors(Object.keys(flat).map((k) => grads[k])), losses };
  };
}

/** Replicated phase 2: Adam on the trained tensors from the all-reduced mean gradient. */
export function replicatedApplyReduced(hyper: AdamHyper & { weightDecay?: number }) {
  return (trained: Trained<Tensor>, state: DpState<Tensor>, lr: Tensor, reduced: Tensor) => {
    const flat = flattenTrained(trained);
    const keys = Object.keys(flat);
    const total = keys.reduce((n, k) => n + size(flat[k].shape), 0);
    if (reduced.shape.length !== 1 || reduced.shape[0] !== total) {
      throw new DslError(
        "replicatedApplyReduced",
        `expected ${total} packed gradients, got [${reduced.shape}]`,
      );
    }
    const grads = unpackTensors(reduced, keys.map((k) => flat[k].shape));
    const updated = adamOnRecord(
      flat,
      Object.fromEntries(keys.map((k, i) => [k, grads[i]])),
      state,
      lr,
      hyper,
    );
    return { trained: unflattenTrained(updated.params), state: updated.state };
  };
}
