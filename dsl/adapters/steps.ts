/**
 * One training step of each method family as a pure DSL function (compiled once by `jit`): the
 * sharded HD- family (../shared/docs/hdpissa-spec.md) and the replicated (data-parallel) family. Shards are stacked on a
 * leading axis of every batch leaf; shard k's loss and gradients are traced separately (they share
 * the weights), so per-shard gradients stay local as the method requires.
 *
 * HD-PiSSA's projected gradients are written as Bₖᵀ·Gₖ and Gₖ·Aₖᵀ on the gradient autodiff
 * forms; the compiler's reassociation pass rewrites them to (δ·Bₖ)ᵀ·x and δᵀ·(x·Aₖᵀ), so the
 * dense Gₖ never exists in the compiled program.
 */

import { valueAndGrad } from "../autodiff.ts";
import { DslError } from "../errors.ts";
import { add, div, mul, sqrt, square, sub } from "../ops/elementwise.ts";
import { biasCorrection } from "../optim.ts";
import { matmul } from "../ops/linalg.ts";
import { concat, reshape, transpose } from "../ops/shape.ts";
import { sum } from "../ops/reduce.ts";
import { vmap } from "../vmap.ts";
import { flattenTree } from "../pytree.ts";
import { Tensor } from "../trace.ts";
import type { ReplicatedMethod } from "./methods/spec.ts";

/** A record of values keyed by parameter name. */
export type Rec<T> = Record<string, T>;
/** A per-shard scalar loss of (all parameters, one shard's batch). */
// deno-lint-ignore no-explicit-any
export type ShardLoss = (params: Rec<Tensor>, batch: any) => Tensor;

/** Adam's constant hyperparameters (the learning rate is a tensor input of the step). */
export interface AdamHyper {
  /** Decay rate of the first-moment estimate. */
  beta1: number;
  /** Decay rate of the second-moment estimate. */
  beta2: number;
  /** Added to √v̂ in the denominator for numerical stability. */
  eps: number;
}

const isTensor = (x: unknown): x is Tensor => x instanceof Tensor;

/** Number of shards stacked in a batch pytree (its leaves' common leading dimension). */
export function shardCount(batch: unknown): number {
  const [leaves] = flattenTree(batch, isTensor, "shards");
  const k = leaves[0]?.shape[0];
  if (k === undefined || leaves.some((t) => t.shape[0] !== k)) {
    throw new DslError(
      "trainer",
      "every batch leaf must be stacked on a leading shard axis of one size",
    );
  }
  return k;
}

/** Loss and gradients of the `trained` subset of parameters for one shard. */
function shardGrads(
  loss: ShardLoss,
  params: Rec<Tensor>,
  trained: readonly string[],
  batch: unknown,
) {
  const frozen = Object.fromEntries(Object.entries(params).filter(([k]) => !trained.includes(k)));
  const subset = Object.fromEntries(trained.map((k) => [k, params[k]]));
  const f = (p: Rec<Tensor>) => loss({ ...frozen, ...p }, batch);
  return valueAndGrad(f)(subset) as [Tensor, Rec<Tensor>];
}

/** Adam's bias-corrected step size for gradient g: returns (Δ = lr·m̂/(√v̂+ε), m, v). */
export function adamDelta(
  g: Tensor,
  m: Tensor,
  v: Tensor,
  t: Tensor,
  lr: Tensor,
  h: AdamHyper,
): { delta: Tensor; m: Tensor; v: Tensor } {
  const m1 = add(mul(h.beta1, m), mul(1 - h.beta1, g));
  const v1 = add(mul(h.beta2, v), mul(1 - h.beta2, square(g)));
  const mHat = div(m1, biasCorrection(h.beta1, t));
  const vHat = div(v1, biasCorrection(h.beta2, t));
  return { delta: mul(lr, div(mHat, add(sqrt(vHat), h.eps))), m: m1, v: v1 };
}

/** HD-PiSSA's per-shard Adam moments of the A and B factors, and the step count. */
export interface HdPissaState<T> {
  /** Per adapted matrix, stacked over shards: mA, vA [K, r, n]; mB, vB [K, m, r]. */
  mA: Rec<T>;
  /** Second moments of A per adapted matrix, [K, r, n]. */
  vA: Rec<T>;
  /** First moments of B per adapted matrix, [K, m, r]. */
  mB: Rec<T>;
  /** Second moments of B per adapted matrix, [K, m, r]. */
  vB: Rec<T>;
  /** Steps taken (f32 scalar). */
  step: T;
}

/**
 * Per-shard projected gradients and Adam steps of HD-PiSSA for the shards stacked in `shards`
 * (leading axis k): `a` [k, r, n] and `b` [k, m, r] are those shards' fixed slices. Returns the
 * factor deltas ΔA [k, r, n], ΔB [k, m, r], the next Adam state and the per-shard losses. The
 * shards run as one batched pass (`vmap` over the shard axis): weight products see all shards'
 * rows at once, and the per-shard projections are batched products.
 */
export function hdpissaShardDeltas(
  loss: ShardLoss,
  adapt: readonly string[],
  hyper: AdamHyper,
  params: Rec<Tensor>,
  slices: { a: Rec<Tensor>; b: Rec<Tensor> },
  state: HdPissaState<Tensor>,
  lr: Tensor,
  shards: unknown,
): { dA: Rec<Tensor>; dB: Rec<Tensor>; state: HdPissaState<Tensor>; losses: Tensor } {
  const t = add(state.step, 1);
  const perShard = (batch: unknown, a: Rec<Tensor>, b: Rec<Tensor>) => {
    const [value, grads] = shardGrads(loss, params, adapt, batch);
    const gA: Rec<Tensor> = {}, gB: Rec<Tensor> = {};
    for (const name of adapt) {
      gA[name] = matmul(transpose(b[name]), grads[name]); // Bₖᵀ·Gₖ
      gB[name] = matmul(grads[name], transpose(a[name])); // Gₖ·Aₖᵀ
    }
    return { loss: value, gA, gB };
  };
  const out = vmap(perShard)(shards, slices.a, slices.b) as {
    loss: Tensor;
    gA: Rec<Tensor>;
    gB: Rec<Tensor>;
  };
  const next: HdPissaState<Tensor> = { mA: {}, vA: {}, mB: {}, vB: {}, step: t };
  const dA: Rec<Tensor> = {}, dB: Rec<Tensor> = {};
  for (const name of adapt) {
    // Adam on every shard's factors at once ([k, …] elementwise).
    const stepA = adamDelta(out.gA[name], state.mA[name], state.vA[name], t, lr, hyper);
    const stepB = adamDelta(out.gB[name], state.mB[name], state.vB[name], t, lr, hyper);
    next.mA[name] = stepA.m, next.vA[name] = stepA.v;
    next.mB[name] = stepB.m, next.vB[name] = stepB.v;
    dA[name] = stepA.delta, dB[name] = stepB.delta;
  }
  return { dA, dB, state: next, losses: out.loss };
}

/**
 * W ← W − (ΔB_cat·A_cat + (B_cat − ΔB_cat)·ΔA_cat) for every adapted matrix, from all K shards'
 * deltas ΔA [K, r, n], ΔB [K, m, r] (a sum over shards, no 1/K). Every replica runs this with the
 * same inputs, so replicas stay bitwise identical.
 */
export function applyFactorDeltas(
  params: Rec<Tensor>,
  slices: { aCat: Rec<Tensor>; bCat: Rec<Tensor> },
  dA: Rec<Tensor>,
  dB: Rec<Tensor>,
): Rec<Tensor> {
  const out = { ...params };
  for (const name of Object.keys(dA)) {
    const [K, r, n] = dA[name].shape;
    const m = params[name].shape[0];
    const dACat = reshape(dA[name], [K * r, n]);
    const dBCat = reshape(transpose(dB[name], [1, 0, 2]), [m, K * r]);
    // ΔB·A + (B − ΔB)·ΔA as one product of inner dimension 2·K·r, [ΔB | B − ΔB]·[A ; ΔA]: one
    // matmul kernel whose epilogue subtracts from W (in place when W is donated).
    const left = concat([dBCat, sub(slices.bCat[name], dBCat)], 1);
    const right = concat([slices.aCat[name], dACat], 0);
    out[name] = sub(params[name], matmul(left, right));
  }
  return out;
}

/** Shard k's slices, stacked: A [K, r, n] (rows k·r…), B [K, m, r] (columns k·r…). */
export function shardSlices(
  slices: { aCat: Rec<Tensor>; bCat: Rec<Tensor> },
  rank: number,
): { a: Rec<Tensor>; b: Rec<Tensor> } {
  const a: Rec<Tensor> = {}, b: Rec<Tensor> = {};
  for (const name of Object.keys(slices.aCat)) {
    const [kr, n] = slices.aCat[name].shape;
    const m = slices.bCat[name].shape[0];
    a[name] = reshape(slices.aCat[name], [kr / rank, rank, n]);
    b[name] = transpose(reshape(slices.bCat[name], [m, kr / rank, rank]), [1, 0, 2]);
  }
  return { a, b };
}

/**
 * HD-PiSSA step for all K shards on one device: per-shard projected gradients, per-shard Adam, then
 * every matrix gets W ← W − (ΔB_cat·A_cat + (B_cat − ΔB_cat)·ΔA_cat). `aCat` [K·r, n] and `bCat`
 * [m, K·r] hold every shard's fixed slices.
 */
export function hdpissaStep(
  loss: ShardLoss,
  adapt: readonly string[],
  rank: number,
  hyper: AdamHyper,
): (
  params: Rec<Tensor>,
  slices: { aCat: Rec<Tensor>; bCat: Rec<Tensor> },
  state: HdPissaState<Tensor>,
  lr: Tensor,
  shards: unknown,
) => { params: Rec<Tensor>; state: HdPissaState<Tensor>; losses: Tensor } {
  return (
    params: Rec<Tensor>,
    slices: { aCat: Rec<Tensor>; bCat: Rec<Tensor> },
    state: HdPissaState<Tensor>,
    lr: Tensor,
    shards: unknown,
  ) => {
    const K = shardCount(shards);
    const local = shardSlices(slices, rank);
    if (local.a[adapt[0]].shape[0] !== K) {
      throw new DslError(
        "hdpissaStep",
        `${K} shard batches for ${local.a[adapt[0]].shape[0]} slices`,
      );
    }
    const d = hdpissaShardDeltas(loss, adapt, hyper, params, local, state, lr, shards);
    const newParams = applyFactorDeltas(params, slices, d.dA, d.dB);
    return { params: newParams, state: d.state, losses: d.losses };
  };
}

/** Adam moments for a record of trained tensors (data-parallel methods: one state for all shards). */
export interface DpState<T> {
  /** First moments, keyed like the trained record. */
  m: Rec<T>;
  /** Second moments, keyed like the trained record. */
  v: Rec<T>;
  /** Steps taken (f32 scalar). */
  step: T;
}

/**
 * Per-shard losses [K] in one batched pass, and the gradient of their mean — the data-parallel
 * all-reduce (mean of shard gradients) done by autodiff through the batched pass.
 */
export function meanShardGrads(
  shards: unknown,
  trained: Rec<Tensor>,
  lossOf: (trained: Rec<Tensor>, batch: unknown) => Tensor,
  /** Shards in the whole group (default: those here); a rank's share of the mean otherwise. */
  divisor?: number,
): { losses: Tensor; grads: Rec<Tensor> } {
  const mean = (p: Rec<Tensor>) => {
    const losses = vmap((batch: unknown) => lossOf(p, batch))(shards) as Tensor;
    return [div(sum(losses), divisor ?? losses.shape[0]), losses] as [Tensor, Tensor];
  };
  const [[, losses], grads] = valueAndGrad(mean, { hasAux: true })(trained) as [
    [Tensor, Tensor],
    Rec<Tensor>,
  ];
  return { losses, grads };
}

/** One Adam(W) step on every tensor of `grads`: the updated tensors and the next state. */
export function adamOnRecord(
  params: Rec<Tensor>,
  grads: Rec<Tensor>,
  state: DpState<Tensor>,
  lr: Tensor,
  hyper: AdamHyper & { weightDecay?: number },
): { params: Rec<Tensor>; state: DpState<Tensor> } {
  const t = add(state.step, 1);
  const next: DpState<Tensor> = { m: {}, v: {}, step: t };
  const out: Rec<Tensor> = {};
  for (const name of Object.keys(grads)) {
    const s = adamDelta(grads[name], state.m[name], state.v[name], t, lr, hyper);
    const decayed = hyper.weightDecay
      ? sub(params[name], mul(mul(lr, hyper.weightDecay), params[name]))
      : params[name];
    out[name] = sub(decayed, s.delta);
    next.m[name] = s.m;
    next.v[name] = s.v;
  }
  return { params: out, state: next };
}

/** Trained tensors by matrix then key ({ name: { a, b } }): one record per replicated method. */
export type Trained<T> = Rec<Rec<T>>;

/** The trained tensors flattened to "name#key" (Adam's record and the packed gradient order). */
export function flattenTrained<T>(trained: Trained<T>): Rec<T> {
  const flat: Rec<T> = {};
  for (const n of Object.keys(trained)) {
    for (const key of Object.keys(trained[n]).sort()) flat[`${n}#${key}`] = trained[n][key];
  }
  return flat;
}

/** Inverse of `flattenTrained`. */
export function unflattenTrained<T>(flat: Rec<T>): Trained<T> {
  const out: Trained<T> = {};
  for (const [k, v] of Object.entries(flat)) {
    const at = k.lastIndexOf("#");
    (out[k.slice(0, at)] ??= {})[k.slice(at + 1)] = v;
  }
  return out;
}

/**
 * The parameters a replicated method's model sees: every adapted weight replaced by
 * `method.weight(base, trained, frozen, scale)` (the merged weight, too).
 */
export function effectiveParams(
  method: ReplicatedMethod,
  params: Rec<Tensor>,
  trained: Trained<Tensor>,
  frozen: Trained<Tensor>,
  scale: number,
): Rec<Tensor> {
  const out = { ...params };
  for (const n of Object.keys(trained)) {
    out[n] = method.weight(params[n] ?? null, trained[n], frozen[n] ?? {}, scale);
  }
  return out;
}

/** The shard loss as a function of the flattened trained record. */
export function replicatedLoss(
  method: ReplicatedMethod,
  loss: ShardLoss,
  params: Rec<Tensor>,
  frozen: Trained<Tensor>,
  scale: number,
): (flat: Rec<Tensor>, batch: unknown) => Tensor {
  return (flat, batch) =>
    loss(effectiveParams(method, params, unflattenTrained(flat), frozen, scale), batch);
}

/**
 * One data-parallel step of a replicated method on all K shards: every shard's loss through the
 * method's weight, the mean of the shard gradients of the trained tensors, one Adam(W) step.
 */
export function replicatedStep(
  method: ReplicatedMethod,
  loss: ShardLoss,
  scale: number,
  hyper: AdamHyper & { weightDecay?: number },
): (
  params: Rec<Tensor>,
  trained: Trained<Tensor>,
  frozen: Trained<Tensor>,
  state: DpState<Tensor>,
  lr: Tensor,
  shards: unknown,
) => { trained: Trained<Tensor>; state: DpState<Tensor>; losses: Tensor } {
  return (params, trained, frozen, state, lr, shards) => {
    const flat = flattenTrained(trained);
    const lossOf = replicatedLoss(method, loss, params, frozen, scale);
    const { losses, grads } = meanShardGrads(shards, flat, lossOf);
    const updated = adamOnRecord(flat, grads, state, lr, hyper);
    return { trained: unflattenTrained(updated.params), state: updated.state, losses };
  };
}
