/** The benchmark workloads written with our DSL (the MLP step follows tests/helpers/models.ts). */

import * as dsl from "../web.ts";
import type { HostArray, Tensor } from "../web.ts";
import { ADAM, type BlockCase, type Init, type MlpCase } from "./specs.ts";

type Params = Record<string, Tensor>;

/** Destroys every device array in a tree (a step's state, its outputs). */
export function destroyTree(t: unknown): void {
  dsl.flattenTree(t, dsl.isDeviceArray, "destroyTree")[0].forEach((l) => l.destroy());
}

export function hostArray(x: Init): HostArray {
  return { shape: [...x.shape], dtype: "f32", data: x.data };
}

function zerosLike(x: Init): HostArray {
  return { shape: [...x.shape], dtype: "f32", data: new Float32Array(x.data.length) };
}

/** Optimizer state as host arrays: parameters plus zeroed first and second moments. */
export function hostState(params: Record<string, Init>) {
  const map = (f: (x: Init) => HostArray) =>
    Object.fromEntries(Object.entries(params).map(([k, v]) => [k, f(v)]));
  return { params: map(hostArray), m: map(zerosLike), v: map(zerosLike) };
}

/** One Adam step on every leaf of a record. */
export function adamUpdate(params: Params, grads: Params, m: Params, v: Params) {
  const { lr, b1, b2, eps, t } = ADAM;
  const out = { params: {} as Params, m: {} as Params, v: {} as Params };
  for (const k of Object.keys(params)) {
    const mk = dsl.add(dsl.mul(b1, m[k]), dsl.mul(1 - b1, grads[k]));
    const vk = dsl.add(dsl.mul(b2, v[k]), dsl.mul(1 - b2, dsl.square(grads[k])));
    const mHat = dsl.div(mk, 1 - b1 ** t);
    const vHat = dsl.div(vk, 1 - b2 ** t);
    out.params[k] = dsl.sub(params[k], dsl.mul(lr, dsl.div(mHat, dsl.add(dsl.sqrt(vHat), eps))));
    out.m[k] = mk;
    out.v[k] = vk;
  }
  return out;
}

export function mlpLoss(p: Params, x: Tensor, labels: Tensor): Tensor {
  const hidden = dsl.relu(dsl.add(dsl.matmul(x, p.w1), p.b1));
  return dsl.crossEntropy(dsl.add(dsl.matmul(hidden, p.w2), p.b2), labels);
}

export type State = { params: Params; m: Params; v: Params };

/** Forward, backward and Adam; returns the new state and the loss. */
export function mlpTrainStep(state: State, x: Tensor, labels: Tensor) {
  const [loss, grads] = dsl.valueAndGrad(mlpLoss)(state.params, x, labels);
  return { ...adamUpdate(state.params, grads as Params, state.m, state.v), loss };
}

export function mlpInputs(c: MlpCase) {
  return {
    state: hostState(c.params),
    x: hostArray(c.x),
    labels: { shape: [c.batch], dtype: "i32", data: c.labels } as HostArray,
  };
}

/** Pre-LN transformer block on x [batch·seq, width]; multi-head causal self-attention. */
export function block(c: BlockCase, p: Params, x: Tensor): Tensor {
  const { batch: b, seq: t, width: d, heads: h } = c;
  const dh = d / h;
  const heads = (y: Tensor) => dsl.transpose(dsl.reshape(y, [b, t, h, dh]), [0, 2, 1, 3]);
  const x1 = dsl.layerNorm(x, p.ln1g, p.ln1b);
  const q = heads(dsl.matmul(x1, p.wq));
  const k = heads(dsl.matmul(x1, p.wk));
  const v = heads(dsl.matmul(x1, p.wv));
  const scores = dsl.mul(dsl.matmul(q, dsl.transpose(k, [0, 1, 3, 2])), 1 / Math.sqrt(dh));
  const pos = dsl.arange(t);
  const future = dsl.less(dsl.reshape(pos, [t, 1]), dsl.reshape(pos, [1, t])); // key after query
  const attn = dsl.softmax(dsl.where(future, -1e9, scores), -1);
  const o = dsl.reshape(dsl.transpose(dsl.matmul(attn, v), [0, 2, 1, 3]), [b * t, d]);
  const x2 = dsl.add(x, dsl.matmul(o, p.wo));
  const x3 = dsl.layerNorm(x2, p.ln2g, p.ln2b);
  const f = dsl.gelu(dsl.add(dsl.matmul(x3, p.w1), p.c1));
  return dsl.add(x2, dsl.add(dsl.matmul(f, p.w2), p.c2));
}

export function blockTrainStep(c: BlockCase) {
  const loss = (p: Params, x: Tensor, target: Tensor) =>
    dsl.mean(dsl.square(dsl.sub(block(c, p, x), target)));
  return (state: State, x: Tensor, target: Tensor) => {
    const [l, grads] = dsl.valueAndGrad(loss)(state.params, x, target);
    return { ...adamUpdate(state.params, grads as Params, state.m, state.v), loss: l };
  };
}

export function blockInputs(c: BlockCase) {
  return { state: hostState(c.params), x: hostArray(c.x), labels: hostArray(c.target) };
}
