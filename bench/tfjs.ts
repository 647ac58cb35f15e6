/**
 * TF.js on its WebGPU backend. The union package `@tensorflow/tfjs` registers the gradients (the
 * core package alone has none in Deno); the WebGPU backend registers itself on import. Both resolve
 * only under bench/peers/deno.json: the union package depends on core-js, whose skipped install
 * script would make Deno warn on the first run of every task sharing the root lock.
 */

import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-webgpu";
import { ADAM, type MlpCase } from "./specs.ts";

export { tf };

/** Selects the WebGPU backend; returns its GPUDevice. */
export async function initTf(): Promise<GPUDevice> {
  const ok = await tf.setBackend("webgpu");
  await tf.ready();
  if (!ok || tf.getBackend() !== "webgpu") throw new Error("TF.js: WebGPU backend unavailable");
  const device = (tf.backend() as unknown as { device?: GPUDevice }).device;
  if (!device) throw new Error("TF.js: WebGPU backend exposes no device");
  return device;
}

/**
 * A TF.js MLP training step (tf.train.adam + softmaxCrossEntropy). Adam here tracks the real step
 * count for its bias correction; ours and jax-js's fix t = 1 — the same arithmetic per element.
 */
export function mlpTrainer(c: MlpCase) {
  const v = (name: string) => {
    const p = c.params[name as keyof MlpCase["params"]];
    return tf.variable(tf.tensor(p.data, p.shape), true, `${name}_${c.batch}_${c.hidden}`);
  };
  const w1 = v("w1"), b1 = v("b1"), w2 = v("w2"), b2 = v("b2");
  const x = tf.tensor(c.x.data, c.x.shape);
  const onehot = tf.oneHot(tf.tensor1d(c.labels, "int32"), c.classes);
  const opt = tf.train.adam(ADAM.lr, ADAM.b1, ADAM.b2, ADAM.eps);
  const loss = () => {
    const h = tf.relu(tf.add(tf.matMul(x, w1), b1));
    return tf.losses.softmaxCrossEntropy(onehot, tf.add(tf.matMul(h, w2), b2)) as tf.Scalar;
  };
  return {
    /** One step; returns the loss tensor (the caller disposes it). */
    step: () => opt.minimize(loss, true, [w1, b1, w2, b2])!,
    dispose: () => {
      opt.dispose();
      [w1, b1, w2, b2, x, onehot].forEach((t) => t.dispose());
    },
  };
}
