/**
 * Research script: a fine-tuning method of your own, trained without touching the library.
 * LoRA-FA (Zhang et al., 2023) freezes LoRA's random A and trains only B, halving the adapter's
 * optimizer state and its all-reduce. It is one record: how to initialise from W, what is trained
 * and frozen, and the weight the model sees as a DSL function. The trainer derives the step, the
 * distributed phases, the merge and the cost model from it, in every mode:
 *
 *   deno run --allow-read --allow-env examples/custom_method.ts              # mode virtual
 *   deno run --allow-read --allow-env examples/custom_method.ts devices      # K devices
 *   mpirun -np 2 deno run --allow-read --allow-env --allow-ffi examples/custom_method.ts mpi
 *
 * The task: a student linear map learns a teacher that differs from the pretrained W by a
 * rank-4 change, from K = 2 shards of data.
 */

import {
  createTrainer,
  type HostArray,
  loraInit,
  lowRankWeight,
  mean,
  nn,
  type ReplicatedInit,
  type ReplicatedMethod,
  Rng,
  square,
  sub,
  type Tensor,
} from "../mod.ts";

// 1. The method record. `trained` tensors get Adam and are all-reduced across replicas; `frozen`
//    ones never change; `weight` is differentiated with respect to the trained ones.
const loraFa: ReplicatedMethod = {
  name: "lora-fa",
  summary: "LoRA with A frozen at its random initialisation; only B is trained",
  family: "replicated",
  usesRank: true,
  init(w, ctx): ReplicatedInit {
    const { a, b } = loraInit(w, ctx.rank, ctx.seed * 1000 + ctx.index, ctx.fanInFanOut);
    // The random factor is the input side's: A [r, in] of W [out, in], or B [in, r] of a weight
    // stored [in, out] (GPT-2's Conv1D, named in the trainer's fanInFanOut). It stays frozen.
    return ctx.fanInFanOut
      ? { base: w, trained: { a }, frozen: { b } }
      : { base: w, trained: { b }, frozen: { a } };
  },
  weight: (base, trained, frozen, scale) =>
    lowRankWeight(base, { a: frozen.a ?? trained.a, b: trained.b ?? frozen.b }, scale),
  trainedElements: (out, _inputs, r) => out * r, // the output side's factor: out × r
};

// 2. A model and its data: y = x·W_teacherᵀ, with W_teacher = W + a rank-4 change.
const [m, n, K] = [32, 24, 2];
const rng = new Rng(5);
const normal = () => Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next());
const matrix = (rows: number, cols: number, s = 1): HostArray => ({
  shape: [rows, cols],
  dtype: "f32",
  data: Float32Array.from({ length: rows * cols }, () => s * normal()),
});
const w = matrix(m, n, 0.2);
const u = matrix(m, 4, 0.5), v = matrix(4, n, 0.5);
const teacher = Float32Array.from(w.data, (x, idx) => {
  const [i, j] = [Math.floor(idx / n), idx % n];
  let delta = 0;
  for (let c = 0; c < 4; c++) delta += u.data[i * 4 + c] * v.data[c * n + j];
  return x + delta;
});
const shard = () => {
  const x = matrix(64, n);
  const y = new Float32Array(64 * m);
  for (let s = 0; s < 64; s++) {
    for (let i = 0; i < m; i++) {
      let acc = 0;
      for (let j = 0; j < n; j++) acc += x.data[s * n + j] * teacher[i * n + j];
      y[s * m + i] = acc;
    }
  }
  return { x, y: { shape: [64, m], dtype: "f32", data: y } as HostArray };
};
const loss = (p: Record<string, Tensor>, b: { x: Tensor; y: Tensor }) =>
  mean(square(sub(nn.linear(b.x, p.w), b.y)));

// 3. Train it like any built-in method, in the mode named on the command line.
const mode = (Deno.args[0] ?? "virtual") as "virtual" | "devices" | "mpi";
const trainer = await createTrainer({
  loss,
  params: { w },
  adapt: ["w"],
  method: loraFa,
  devices: K,
  rank: 8,
  optimizer: { lr: 0.05 },
  mode,
});
// Every rank draws the same shards and keeps its own (mode mpi: K / ranks of them).
const perRank = K / trainer.size;
const losses: number[] = [];
for (let step = 0; step < 60; step++) {
  const shards = Array.from({ length: K }, shard);
  const mine = shards.slice(trainer.rank * perRank, (trainer.rank + 1) * perRank);
  const { loss } = await trainer.step(mine);
  losses.push((await trainer.gatherScalars(loss)).reduce((a, b) => a + b) / K);
}
if (trainer.rank === 0) {
  const stats = trainer.stats();
  console.log(`${loraFa.name} (mode ${mode}, K = ${K}, r = 8): ${loraFa.summary}`);
  console.log(`loss first step: ${losses[0].toFixed(4)}`);
  console.log(`loss last step: ${losses.at(-1)!.toFixed(4)}`);
  console.log(`bytes all-reduced per step and device: ${stats.bytesCommunicated}`);
}
await trainer.close();
