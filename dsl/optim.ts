/**
 * Optimizers as pure graph functions (optax-style): state in, state out, nothing hidden. The step
 * counter and learning rate are tensors, so a jitted training step compiles once and the schedule
 * is evaluated on the host per step; under `jit` with donation the update runs in place.
 */

import { DslError } from "./errors.ts";
import type { HostArray } from "./host_array.ts";
import * as lax from "./lax.ts";
import { asTensor, type TensorLike } from "./ops/coerce.ts";
import { add, div, exp, less, mul, neg, sqrt, square, sub, where } from "./ops/elementwise.ts";
import { sum } from "./ops/reduce.ts";
import type { Tensor } from "./trace.ts";

/** A record of values keyed by parameter name (the pytrees the optimizers take). */
export type Tree<T> = Record<string, T>;

const zerosLikeHost = (a: HostArray): HostArray => ({
  shape: [...a.shape],
  dtype: "f32",
  data: new Float32Array(a.data.length),
});
const mapTree = <A, B>(t: Tree<A>, f: (a: A, k: string) => B): Tree<B> =>
  Object.fromEntries(Object.entries(t).map(([k, a]) => [k, f(a, k)]));

/** Hyperparameters of `adamUpdate` besides the learning rate. */
export interface AdamOptions {
  /** Decay rate of the first-moment estimate (default 0.9). */
  beta1?: number;
  /** Decay rate of the second-moment estimate (default 0.999). */
  beta2?: number;
  /** Added to √v̂ in the denominator for numerical stability (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay (AdamW, Loshchilov & Hutter): p ← p − lr·wd·p. 0 gives Adam. */
  weightDecay?: number;
}

/** Adam moments and the number of steps taken so far (an f32 scalar). */
export interface AdamState<T> {
  /** First-moment estimates, keyed like the parameters. */
  m: Tree<T>;
  /** Second-moment estimates, keyed like the parameters. */
  v: Tree<T>;
  /** Steps taken so far. */
  step: T;
}

/** The initial Adam state for `params`: zero moments and step 0. */
export function adamInit(params: Tree<HostArray>): AdamState<HostArray> {
  return {
    m: mapTree(params, zerosLikeHost),
    v: mapTree(params, zerosLikeHost),
    step: { shape: [], dtype: "f32", data: new Float32Array(1) },
  };
}

function checkKeys(op: string, params: Tree<unknown>, grads: Tree<unknown>): void {
  const missing = Object.keys(params).filter((k) => !(k in grads));
  if (missing.length > 0) throw new DslError(op, `no gradient for ${missing.join(", ")}`);
}

/**
 * One Adam/AdamW step with bias correction (Kingma & Ba, Alg. 1):
 * m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², p ← p − lr·(m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε) − lr·wd·p.
 */
export function adamUpdate(
  params: Tree<Tensor>,
  grads: Tree<Tensor>,
  state: AdamState<Tensor>,
  lr: TensorLike,
  opts: AdamOptions = {},
): { params: Tree<Tensor>; state: AdamState<Tensor> } {
  const { beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0 } = opts;
  checkKeys("adamUpdate", params, grads);
  const rate = asTensor(lr, "adamUpdate");
  const t = add(state.step, 1);
  const c1 = biasCorrection(beta1, t);
  const c2 = biasCorrection(beta2, t);
  const m: Tree<Tensor> = {};
  const v: Tree<Tensor> = {};
  const next: Tree<Tensor> = {};
  for (const k of Object.keys(params)) {
    // The moments take an f32 gradient: g² of a small f16 gradient would round to 0 in half.
    const g = lax.cast(grads[k], "f32");
    m[k] = add(mul(beta1, state.m[k]), mul(1 - beta1, g));
    v[k] = add(mul(beta2, state.v[k]), mul(1 - beta2, square(g)));
    const update = div(div(m[k], c1), add(sqrt(div(v[k], c2)), eps));
    const decayed = weightDecay === 0
      ? params[k]
      : sub(params[k], mul(mul(rate, weightDecay), params[k]));
    // Moments stay f32; an f16 parameter takes the f32 step and rounds back to half.
    next[k] = lax.cast(sub(decayed, mul(rate, update)), params[k].dtype);
  }
  return { params: next, state: { m, v, step: t } };
}

/**
 * 1 − βᵗ for a step count tensor t, accurate in f32: computed as −expm1(t·ln β) with a Taylor
 * series where t·ln β is small. The direct 1 − pow(β, t) loses most digits for β₂ = 0.999 (GPU
 * pow is exp2∘log2, a few ulps of 1 ≈ 1e-4 relative error in v̂ at the first steps).
 */
export function biasCorrection(beta: number, t: TensorLike): Tensor {
  const x = mul(asTensor(t, "biasCorrection"), Math.log(beta)); // ≤ 0
  let series = div(x, 10); // Horner: x(1 + x/2(1 + x/3(… (1 + x/10))))
  for (let k = 9; k >= 1; k--) series = mul(div(x, k), add(1, series));
  const direct = sub(exp(x), 1);
  return neg(where(less(x, -0.5), direct, series));
}

/** Hyperparameters of `sgdUpdate` besides the learning rate. */
export interface SgdOptions {
  /** Momentum factor μ (default 0: plain SGD). */
  momentum?: number;
  /** Use Nesterov momentum (default false). */
  nesterov?: boolean;
  /** L2 penalty added to the gradient as wd·p (default 0). */
  weightDecay?: number;
}

/** The initial SGD state for `params`: zero velocity. */
export function sgdInit(params: Tree<HostArray>): { velocity: Tree<HostArray> } {
  return { velocity: mapTree(params, zerosLikeHost) };
}

/** SGD with (optionally Nesterov) momentum, PyTorch's convention: b ← μb + g, p ← p − lr·b. */
export function sgdUpdate(
  params: Tree<Tensor>,
  grads: Tree<Tensor>,
  state: { velocity: Tree<Tensor> },
  lr: TensorLike,
  opts: SgdOptions = {},
): { params: Tree<Tensor>; state: { velocity: Tree<Tensor> } } {
  const { momentum = 0, nesterov = false, weightDecay = 0 } = opts;
  checkKeys("sgdUpdate", params, grads);
  const rate = asTensor(lr, "sgdUpdate");
  const velocity: Tree<Tensor> = {};
  const next: Tree<Tensor> = {};
  for (const k of Object.keys(params)) {
    const grad = lax.cast(grads[k], "f32"), param = lax.cast(params[k], "f32"); // f16 steps in f32
    const g = weightDecay === 0 ? grad : add(grad, mul(weightDecay, param));
    // The velocity keeps its dtype (f32) whatever the gradient's, so the state's avals are stable.
    const b = momentum === 0 ? g : add(mul(momentum, state.velocity[k]), g);
    velocity[k] = lax.cast(b, state.velocity[k].dtype);
    const step = nesterov ? add(g, mul(momentum, velocity[k])) : velocity[k];
    next[k] = lax.cast(sub(param, mul(rate, step)), params[k].dtype); // f16 stays f16
  }
  return { params: next, state: { velocity } };
}

/** √Σ‖g‖² over all leaves. */
export function globalNorm(tree: Tree<Tensor>): Tensor {
  const squares = Object.values(tree).map((g) => sum(square(g)));
  return sqrt(squares.reduce((a, b) => add(a, b)));
}

/** Scales every gradient by min(1, maxNorm/‖g‖) (PyTorch clip_grad_norm_); returns the norm too. */
export function clipByGlobalNorm(
  grads: Tree<Tensor>,
  maxNorm: number,
): { grads: Tree<Tensor>; norm: Tensor } {
  if (!(maxNorm > 0)) throw new DslError("clipByGlobalNorm", `maxNorm must be > 0, got ${maxNorm}`);
  const norm = globalNorm(grads);
  const scale = where(less(maxNorm, norm), div(maxNorm, add(norm, 1e-6)), 1);
  return { grads: mapTree(grads, (g) => mul(g, scale)), norm };
}

/** A learning-rate schedule: the rate for 0-based step `step`. */
export type Schedule = (step: number) => number;

/** A schedule that returns `lr` at every step. */
export const constantSchedule = (lr: number): Schedule => () => lr;

/**
 * Linear warm-up from 0 to `peak` over `warmup` steps, then cosine decay to `floor` at `total`
 * (transformers' get_cosine_schedule_with_warmup, which the HD-PiSSA paper uses).
 */
export function warmupCosine(
  peak: number,
  warmup: number,
  total: number,
  floor = 0,
): Schedule {
  if (!(total > 0) || warmup < 0 || warmup > total) {
    throw new DslError(
      "warmupCosine",
      `need 0 ≤ warmup ≤ total, total > 0 (got ${warmup}, ${total})`,
    );
  }
  return (step) => {
    if (step < warmup) return (peak * (step + 1)) / warmup;
    const progress = Math.min(1, (step - warmup) / Math.max(1, total - warmup));
    return floor + (peak - floor) * 0.5 * (1 + Math.cos(Math.PI * progress));
  };
}

/** Linear warm-up then linear decay to 0 at `total`. */
export function warmupLinear(peak: number, warmup: number, total: number): Schedule {
  if (!(total > 0) || warmup < 0 || warmup > total) {
    throw new DslError(
      "warmupLinear",
      `need 0 ≤ warmup ≤ total, total > 0 (got ${warmup}, ${total})`,
    );
  }
  return (step) =>
    step < warmup
      ? (peak * (step + 1)) / warmup
      : peak * Math.max(0, (total - step) / Math.max(1, total - warmup));
}
