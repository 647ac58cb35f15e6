/**
 * One training step of each method as a pure DSL function (compiled once by `jit`): HD-PiSSA
 * (../shared/docs/hdpissa-spec.md) and the data-parallel baselines. Shards are stacked on a
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

type Rec<T> = Record<string, T>;
/** A per-shard scalar loss of (all parameters, one shard's batch). */
// deno-lint-ignore no-explicit-any
export type ShardLoss = (params: Rec<Tensor>, batch: any) => Tensor;

export interface AdamHyper {
  beta1: number;
  beta2: number;
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
function adamDelta(g: Tensor, m: Tensor, v: Tensor, t: Tensor, lr: Tensor, h: AdamHyper) {
  const m1 = add(mul(h.beta1, m), mul(1 - h.beta1, g));
  const v1 = add(mul(h.beta2, v), mul(1 - h.beta2, square(g)));
  const mHat = div(m1, biasCorrection(h.beta1, t));
  const vHat = div(v1, biasCorrection(h.beta2, t));
  return { delta: mul(lr, div(mHat, add(sqrt(vHat), h.eps))), m: m1, v: v1 };
}

export interface HdPissaState<T> {
  /** Per adapted matrix, stacked over shards: mA, vA [K, r, n]; mB, vB [K, m, r]. */
  mA: Rec<T>;
  vA: Rec<T>;
  mB: Rec<T>;
  vB: Rec<T>;
  /** Steps taken (f32 scalar). */
  step: T;
}

/**
 * HD-PiSSA step for all K shards: per-shard projected gradients, per-shard Adam, then every
 * matrix gets W ← W − (ΔB_cat·A_cat + (B_cat − ΔB_cat)·ΔA_cat) (a sum over shards, no 1/K).
 * `aCat` [K·r, n] and `bCat` [m, K·r] hold every shard's fixed slices. The shards run as one
 * batched pass (`vmap` over the shard axis): weight products see all shards' rows at once, and the
 * per-shard projections are batched products.
 */
export function hdpissaStep(
  loss: ShardLoss,
  adapt: readonly string[],
  rank: number,
  hyper: AdamHyper,
) {
  return (
    params: Rec<Tensor>,
    slices: { aCat: Rec<Tensor>; bCat: Rec<Tensor> },
    state: HdPissaState<Tensor>,
    lr: Tensor,
    shards: unknown,
  ) => {
    const K = shardCount(shards);
    const t = add(state.step, 1);
    // Shard k's slices, stacked: A [K, r, n] (rows k·r…), B [K, m, r] (columns k·r…).
    const aK: Rec<Tensor> = {}, bK: Rec<Tensor> = {};
    for (const name of adapt) {
      const [m, n] = params[name].shape;
      aK[name] = reshape(slices.aCat[name], [K, rank, n]);
      bK[name] = transpose(reshape(slices.bCat[name], [m, K, rank]), [1, 0, 2]);
    }
    const perShard = (batch: unknown, a: Rec<Tensor>, b: Rec<Tensor>) => {
      const [value, grads] = shardGrads(loss, params, adapt, batch);
      const gA: Rec<Tensor> = {}, gB: Rec<Tensor> = {};
      for (const name of adapt) {
        gA[name] = matmul(transpose(b[name]), grads[name]); // Bₖᵀ·Gₖ
        gB[name] = matmul(grads[name], transpose(a[name])); // Gₖ·Aₖᵀ
      }
      return { loss: value, gA, gB };
    };
    const out = vmap(perShard)(shards, aK, bK) as {
      loss: Tensor;
      gA: Rec<Tensor>;
      gB: Rec<Tensor>;
    };
    const newParams = { ...params };
    const next: HdPissaState<Tensor> = { mA: {}, vA: {}, mB: {}, vB: {}, step: t };
    for (const name of adapt) {
      const [m, n] = params[name].shape;
      // Adam on every shard's factors at once ([K, …] elementwise).
      const stepA = adamDelta(out.gA[name], state.mA[name], state.vA[name], t, lr, hyper);
      const stepB = adamDelta(out.gB[name], state.mB[name], state.vB[name], t, lr, hyper);
      next.mA[name] = stepA.m,
        next.vA[name] = stepA.v,
        next.mB[name] = stepB.m,
        next.vB[name] = stepB.v;
      const dA = reshape(stepA.delta, [K * rank, n]); // ΔA_cat
      const dB = reshape(transpose(stepB.delta, [1, 0, 2]), [m, K * rank]); // ΔB_cat
      // ΔB·A + (B − ΔB)·ΔA as one product of inner dimension 2·K·r, [ΔB | B − ΔB]·[A ; ΔA]: one
      // matmul kernel whose epilogue subtracts from W (in place when W is donated).
      const left = concat([dB, sub(slices.bCat[name], dB)], 1);
      const right = concat([slices.aCat[name], dA], 0);
      newParams[name] = sub(params[name], matmul(left, right));
    }
    return { params: newParams, state: next, losses: out.loss };
  };
}

/** Adam moments for a record of trained tensors (data-parallel methods: one state for all shards). */
export interface DpState<T> {
  m: Rec<T>;
  v: Rec<T>;
  step: T;
}

/**
 * Per-shard losses [K] in one batched pass, and the gradient of their mean — the data-parallel
 * all-reduce (mean of shard gradients) done by autodiff through the batched pass.
 */
function meanShardGrads(
  shards: unknown,
  trained: Rec<Tensor>,
  lossOf: (trained: Rec<Tensor>, batch: unknown) => Tensor,
): { losses: Tensor; grads: Rec<Tensor> } {
  const mean = (p: Rec<Tensor>) => {
    const losses = vmap((batch: unknown) => lossOf(p, batch))(shards) as Tensor;
    return [div(sum(losses), losses.shape[0]), losses] as [Tensor, Tensor];
  };
  const [[, losses], grads] = valueAndGrad(mean, { hasAux: true })(trained) as [
    [Tensor, Tensor],
    Rec<Tensor>,
  ];
  return { losses, grads };
}

function adamOnRecord(
  params: Rec<Tensor>,
  grads: Rec<Tensor>,
  state: DpState<Tensor>,
  lr: Tensor,
  hyper: AdamHyper & { weightDecay?: number },
) {
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

/**
 * Data-parallel LoRA / PiSSA step: every shard's loss sees W_eff = W_base + s·B·A (W_base = W for
 * LoRA, W_res for PiSSA); the A, B gradients are averaged over shards; one Adam state.
 */
export function adapterDpStep(
  loss: ShardLoss,
  adapt: readonly string[],
  scale: number,
  hyper: AdamHyper & { weightDecay?: number },
) {
  return (
    params: Rec<Tensor>,
    adapters: { a: Rec<Tensor>; b: Rec<Tensor> },
    state: DpState<Tensor>,
    lr: Tensor,
    shards: unknown,
  ) => {
    const flat: Rec<Tensor> = {};
    for (const n of adapt) flat[`${n}#a`] = adapters.a[n], flat[`${n}#b`] = adapters.b[n];
    const { losses, grads } = meanShardGrads(shards, flat, (ab, batch) => {
      const merged = { ...params };
      for (const n of adapt) {
        merged[n] = add(params[n], mul(scale, matmul(ab[`${n}#b`], ab[`${n}#a`])));
      }
      return loss(merged, batch);
    });
    const updated = adamOnRecord(flat, grads, state, lr, hyper);
    const a: Rec<Tensor> = {}, b: Rec<Tensor> = {};
    for (const n of adapt) a[n] = updated.params[`${n}#a`], b[n] = updated.params[`${n}#b`];
    return { adapters: { a, b }, state: updated.state, losses };
  };
}

/** Data-parallel full fine-tuning of the `adapt` matrices: mean of shard gradients, Adam(W). */
export function fullDpStep(
  loss: ShardLoss,
  adapt: readonly string[],
  hyper: AdamHyper & { weightDecay?: number },
) {
  return (params: Rec<Tensor>, state: DpState<Tensor>, lr: Tensor, shards: unknown) => {
    const trained = Object.fromEntries(adapt.map((n) => [n, params[n]]));
    const { losses, grads } = meanShardGrads(
      shards,
      trained,
      (p, batch) => loss({ ...params, ...p }, batch),
    );
    const updated = adamOnRecord(trained, grads, state, lr, hyper);
    return { params: { ...params, ...updated.params }, state: updated.state, losses };
  };
}
