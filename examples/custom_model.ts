/**
 * Research script: your own model and loss with `createTrainer`. A two-layer MLP classifier on
 * synthetic spiral data, its hidden projection adapted with HD-PiSSA (K = 2 shards), everything
 * else frozen. Prints the loss every few steps and the accuracy before and after.
 *
 *   deno run --allow-read --allow-env examples/custom_model.ts
 */

import {
  argmax,
  createTrainer,
  crossEntropy,
  type HostArray,
  jit,
  nn,
  relu,
  Rng,
  type Tensor,
} from "../mod.ts";

// 1. The model: any function of a record of tensors. W [out, in] is used as x·Wᵀ (as nn.linear
//    and Hugging Face do), which is the layout HD-PiSSA adapts.
type Params = Record<string, Tensor>;
const logits = (p: Params, x: Tensor) => nn.linear(relu(nn.linear(x, p.hidden)), p.head);
const loss = (p: Params, batch: { x: Tensor; y: Tensor }) =>
  crossEntropy(logits(p, batch.x), batch.y);

// 2. Data: two interleaved spirals, 2-D points lifted to 16 features by a fixed random map.
const rng = new Rng(3);
const normal = () => Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next());
const lift = Array.from({ length: 16 * 2 }, () => normal());
function spiral(n: number): { x: HostArray; y: HostArray } {
  const x = new Float32Array(n * 16), y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const cls = i % 2, t = 0.5 + 3 * rng.next();
    const px = t * Math.cos(t + Math.PI * cls) + 0.1 * normal();
    const py = t * Math.sin(t + Math.PI * cls) + 0.1 * normal();
    for (let f = 0; f < 16; f++) x[i * 16 + f] = Math.tanh(lift[2 * f] * px + lift[2 * f + 1] * py);
    y[i] = cls;
  }
  return { x: { shape: [n, 16], dtype: "f32", data: x }, y: { shape: [n], dtype: "i32", data: y } };
}

// 3. "Pretrained" weights (random here) and the trainer.
const init = (shape: number[], scale: number): HostArray => ({
  shape,
  dtype: "f32",
  data: Float32Array.from({ length: shape[0] * shape[1] }, () => scale * normal()),
});
const params = { hidden: init([32, 16], 0.4), head: init([2, 32], 0.3) };
const trainer = await createTrainer({
  loss,
  params,
  adapt: ["hidden"], // the matrices HD-PiSSA adapts; the rest stay frozen
  method: "hdpissa",
  devices: 2,
  rank: 4,
  optimizer: { lr: 0.02 },
});

const test = spiral(400);
const predict = jit((p: Params, x: Tensor) => argmax(logits(p, x), 1));
const accuracy = async (p: Record<string, HostArray>) => {
  const pred = (await predict(p, test.x)) as HostArray;
  return pred.data.filter((v, i) => v === test.y.data[i]).length / test.y.data.length;
};

console.log(`accuracy before: ${(100 * await accuracy(params)).toFixed(1)}%`);
for (let step = 1; step <= 60; step++) {
  const { loss: shardLosses } = await trainer.step([spiral(64), spiral(64)]); // one batch per shard
  if (step % 15 === 0) {
    console.log(`step ${step}: loss ${shardLosses.map((l) => l.toFixed(4)).join(", ")}`);
  }
}
const trained = await trainer.params();
console.log(`accuracy after: ${(100 * await accuracy(trained)).toFixed(1)}%`);
console.log(`bytes one device sends per step: ${trainer.stats().bytesCommunicated}`);
