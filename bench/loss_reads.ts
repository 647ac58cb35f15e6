/**
 * What reading the loss back every step costs: the default run's HD-PiSSA step (shipped base,
 * K = 4, r = 4, 4 × 64 tokens per shard, mode virtual) timed over blocks of steps, once reading
 * every step's losses (`trainer.step`) and once reading them every 10 steps (`enqueue` +
 * `readLosses`, as `deno task train` does), alternating, on whatever WebGPU adapter this machine
 * has: `deno run -A bench/loss_reads.ts [steps per block] [rounds]`.
 */
import { createTrainer } from "../runtime/trainer.ts";
import { readSafetensorsFile } from "../runtime/io/safetensors.ts";
import { configFromHf } from "../dsl/nn/config.ts";
import { type LmBatch, lmLoss } from "../dsl/nn/transformer.ts";
import type { Tensor } from "../dsl/trace.ts";
import type { HostArray } from "../dsl/host_array.ts";

const [block = 20, rounds = 3] = Deno.args.map(Number);
const model = {
  config: configFromHf(JSON.parse(await Deno.readTextFile("models/base/config.json"))),
  params: (await readSafetensorsFile("models/base/model.safetensors")).tensors,
};
const tokens = (s: number): HostArray => ({
  shape: [4, 64],
  dtype: "i32",
  data: Int32Array.from({ length: 256 }, (_, i) => (s * 31 + i * 7) % 256),
});
const shards = (s: number) =>
  Array.from({ length: 4 }, (_, k) => ({
    ids: tokens(4 * s + k),
    targets: tokens(4 * s + k + 1),
    mask: { shape: [4, 64], dtype: "f32" as const, data: new Float32Array(256).fill(1) },
  }));
const trainer = await createTrainer({
  loss: (p: Record<string, Tensor>, b: LmBatch<Tensor>) => lmLoss(model.config, p, b),
  params: model.params,
  adapt: Object.keys(model.params).filter((n) => /_proj\.weight$/.test(n)),
  method: "hdpissa",
  devices: 4,
  rank: 4,
  optimizer: { lr: 1e-4 },
});
for (let s = 0; s < 3; s++) await trainer.step(shards(s)); // compile and warm up

/** Milliseconds per step over one block, reading the losses every `every` steps. */
async function msPerStep(every: number): Promise<number> {
  const t0 = performance.now();
  for (let s = 0; s < block; s++) {
    if (every === 1) await trainer.step(shards(s));
    else {
      await trainer.enqueue(shards(s));
      if ((s + 1) % every === 0 || s === block - 1) await trainer.readLosses();
    }
  }
  return (performance.now() - t0) / block;
}

const each: number[] = [], batched: number[] = [];
for (let r = 0; r < rounds; r++) each.push(await msPerStep(1)), batched.push(await msPerStep(10));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
console.log(
  `loss read every step: ${median(each).toFixed(1)} ms/step; every 10 steps: ${
    median(batched).toFixed(1)
  } ms/step; ratio ${(median(each) / median(batched)).toFixed(3)} (median of ${rounds} blocks ` +
    `of ${block} steps, alternating)`,
);
await trainer.close();
