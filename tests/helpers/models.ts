/** Small pure training steps used by compiler tests and benchmarks. */

import * as dsl from "../../mod.ts";
import type { HostArray, Tensor } from "../../mod.ts";

export type MlpParams<T> = { w1: T; b1: T; w2: T; b2: T };

export function mlpLoss(p: MlpParams<Tensor>, x: Tensor, labels: Tensor): Tensor {
  const hidden = dsl.relu(dsl.add(dsl.matmul(x, p.w1), p.b1));
  return dsl.crossEntropy(dsl.add(dsl.matmul(hidden, p.w2), p.b2), labels);
}

/** One Adam step (bias-corrected; `t` is the 1-based step) on every leaf of a record. */
export function adamUpdate(
  params: Record<string, Tensor>,
  grads: Record<string, Tensor>,
  m: Record<string, Tensor>,
  v: Record<string, Tensor>,
  t: number,
  lr = 1e-3,
  b1 = 0.9,
  b2 = 0.999,
  eps = 1e-8,
) {
  const out = {
    params: {} as Record<string, Tensor>,
    m: {} as Record<string, Tensor>,
    v: {} as Record<string, Tensor>,
  };
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

/** A full MLP training step: forward, backward, Adam; returns new state and the loss. */
export function mlpTrainStep(
  state: { params: MlpParams<Tensor>; m: MlpParams<Tensor>; v: MlpParams<Tensor> },
  x: Tensor,
  labels: Tensor,
) {
  const [loss, grads] = dsl.valueAndGrad(mlpLoss)(state.params, x, labels);
  const next = adamUpdate(state.params, grads, state.m, state.v, 1);
  return { ...next, loss };
}

/** Deterministic pseudo-random values in [-scale, scale]. */
export function randomArray(shape: number[], seed: number, scale = 1): HostArray {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return { shape, dtype: "f32", data };
}

export function mlpState(inputs: number, hidden: number, classes: number) {
  const params = {
    w1: randomArray([inputs, hidden], 1, 1 / Math.sqrt(inputs)),
    b1: randomArray([hidden], 2, 0.1),
    w2: randomArray([hidden, classes], 3, 1 / Math.sqrt(hidden)),
    b2: randomArray([classes], 4, 0.1),
  };
  const zeros = (a: HostArray): HostArray => ({ ...a, data: new Float32Array(a.data.length) });
  const map = (f: (a: HostArray) => HostArray) =>
    Object.fromEntries(Object.entries(params).map(([k, a]) => [k, f(a)])) as MlpParams<HostArray>;
  return { params, m: map(zeros), v: map(zeros) };
}
