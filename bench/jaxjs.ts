/**
 * The benchmark workloads written for jax-js (npm:@jax-js/jax) on its WebGPU backend. jax-js uses
 * reference-counted ownership: every function consumes its array arguments, so an array used twice
 * is passed as `x.ref` the first time.
 */

import {
  blockUntilReady,
  defaultDevice,
  getWebGPUDevice,
  init,
  jit,
  nn,
  numpy as np,
  tree,
  valueAndGrad,
} from "@jax-js/jax";
import { ADAM, type BlockCase, type Init, type MlpCase } from "./specs.ts";

export { blockUntilReady, jit, np };
export type JArray = np.Array;
type Params = Record<string, np.Array>;
export type JState = { params: Params; m: Params; v: Params };

/** Initialises jax-js's WebGPU backend and makes it the default; returns its GPUDevice. */
export async function initJax(): Promise<GPUDevice> {
  const devices = await init("webgpu");
  if (!devices.includes("webgpu")) throw new Error("jax-js: WebGPU backend unavailable");
  defaultDevice("webgpu");
  return getWebGPUDevice();
}

export function fromInit(x: Init): np.Array {
  return np.array(x.data).reshape(x.shape);
}

export function state(params: Record<string, Init>): JState {
  const map = (f: (x: Init) => np.Array) =>
    Object.fromEntries(Object.entries(params).map(([k, v]) => [k, f(v)]));
  return {
    params: map(fromInit),
    m: map((x) => np.zeros(x.shape)),
    v: map((x) => np.zeros(x.shape)),
  };
}

/** The same Adam update as bench/ours.ts (consumes params, grads, m, v). */
function adamUpdate(params: Params, grads: Params, m: Params, v: Params): JState {
  const { lr, b1, b2, eps, t } = ADAM;
  const out: JState = { params: {}, m: {}, v: {} };
  for (const k of Object.keys(params)) {
    const g = grads[k];
    const mk = m[k].mul(b1).add(g.ref.mul(1 - b1));
    const vk = v[k].mul(b2).add(np.square(g).mul(1 - b2));
    const mHat = mk.ref.div(1 - b1 ** t);
    const vHat = vk.ref.div(1 - b2 ** t);
    out.params[k] = params[k].sub(mHat.div(np.sqrt(vHat).add(eps)).mul(lr));
    out.m[k] = mk;
    out.v[k] = vk;
  }
  return out;
}

function crossEntropy(logits: np.Array, labels: np.Array, classes: number): np.Array {
  const batch = logits.shape[0];
  return np.sum(nn.oneHot(labels, classes).mul(nn.logSoftmax(logits, -1))).mul(-1 / batch);
}

export function mlpStep(c: MlpCase) {
  const loss = (p: Params, x: np.Array, labels: np.Array) => {
    const hidden = nn.relu(np.matmul(x, p.w1).add(p.b1));
    return crossEntropy(np.matmul(hidden, p.w2).add(p.b2), labels, c.classes);
  };
  return jit((s: JState, x: np.Array, labels: np.Array) => {
    const [l, grads] = valueAndGrad(loss)(tree.ref(s.params), x, labels);
    return { ...adamUpdate(s.params, grads as Params, s.m, s.v), loss: l };
  });
}

export function mlpInputs(c: MlpCase) {
  return {
    state: state(c.params),
    x: fromInit(c.x),
    labels: np.array(c.labels, { dtype: np.int32 }),
  };
}

function layerNorm(x: np.Array, g: np.Array, b: np.Array): np.Array {
  const mu = np.mean(x.ref, -1, { keepdims: true });
  const centered = x.sub(mu);
  const variance = np.mean(np.square(centered.ref), -1, { keepdims: true });
  return centered.mul(np.reciprocal(np.sqrt(variance.add(1e-5)))).mul(g).add(b);
}

export function blockStep(c: BlockCase) {
  const { batch: b, seq: t, width: d, heads: h } = c;
  const dh = d / h;
  const heads = (y: np.Array) => np.transpose(y.reshape([b, t, h, dh]), [0, 2, 1, 3]);
  const forward = (p: Params, x: np.Array) => {
    const x1 = layerNorm(x.ref, p.ln1g, p.ln1b);
    const q = heads(np.matmul(x1.ref, p.wq));
    const k = heads(np.matmul(x1.ref, p.wk));
    const v = heads(np.matmul(x1, p.wv));
    const scores = np.matmul(q, np.transpose(k, [0, 1, 3, 2])).mul(1 / Math.sqrt(dh));
    const pos = np.arange(t);
    const future = np.less(pos.ref.reshape([t, 1]), pos.reshape([1, t]));
    const attn = nn.softmax(np.where(future, -1e9, scores), -1);
    const o = np.transpose(np.matmul(attn, v), [0, 2, 1, 3]).reshape([b * t, d]);
    const x2 = x.add(np.matmul(o, p.wo));
    const x3 = layerNorm(x2.ref, p.ln2g, p.ln2b);
    const f = nn.gelu(np.matmul(x3, p.w1).add(p.c1));
    return x2.add(np.matmul(f, p.w2).add(p.c2));
  };
  const loss = (p: Params, x: np.Array, target: np.Array) =>
    np.mean(np.square(forward(p, x).sub(target)));
  return jit((s: JState, x: np.Array, target: np.Array) => {
    const [l, grads] = valueAndGrad(loss)(tree.ref(s.params), x, target);
    return { ...adamUpdate(s.params, grads as Params, s.m, s.v), loss: l };
  });
}

export function blockInputs(c: BlockCase) {
  return { state: state(c.params), x: fromInit(c.x), labels: fromInit(c.target) };
}

export function disposeTree(t: unknown): void {
  tree.dispose(t as Parameters<typeof tree.dispose>[0]);
}
