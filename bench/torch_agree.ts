/**
 * Do our steps at real sizes compute what PyTorch computes? GPT-2 small and Qwen2.5-0.5B shapes
 * (random weights, ours), the same token batches, three training steps on both sides
 * (bench/torch_agree.py, PyTorch f32 on the CPU), compared loss by loss.
 *
 *   deno run -A bench/torch_agree.ts [--models base,gpt2,qwen] [--method full|hdpissa] [--seq 64]
 *     [--devices 2] [--per-shard 1] [--lr 0.02] [--eps 1]
 *
 * Data-parallel full fine-tuning (the default) needs no SVD, so both sides start from the same bits
 * and take the same step. HD-PiSSA (r = 4) takes an exact SVD of every adapted matrix on both sides
 * (ours on the host in f64, O(mn²): meant for the shipped base's shapes); PyTorch's side is then
 * bench/torch_scale.py's own HD-PiSSA step, the anchor of bench/scale.ts. Adam runs with ε = 1 by
 * default, far above every gradient entry here, so its first steps are lr·g/(|g| + 1),
 * nearly plain gradient descent: the loss drop after a step is about lr·‖g‖², which checks the
 * gradients the method trains on (an Adam step with the default ε moves every entry by
 * about lr whatever its gradient, and would check little more than their signs). Step 1's losses
 * check the forward pass, the vocabulary-sized head's blocked loss included. Benchmarks only: the
 * tests check the same on tiny models against a committed PyTorch reference
 * (tests/runtime/models/torch_steps_test.ts).
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { SCALE_MODELS, scaleStep } from "./gpu_scale.ts";
import { ensureTorch, PYTHON } from "./torch.ts";
import type { HostArray } from "../dsl/host_array.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    models: { type: "string", default: "base,gpt2,qwen" },
    method: { type: "string", default: "full" },
    seq: { type: "string", default: "64" },
    devices: { type: "string", default: "2" },
    "per-shard": { type: "string", default: "1" },
    lr: { type: "string", default: "0.02" },
    eps: { type: "string", default: "1" },
  },
});
const [seq, K, perShard] = [Number(flags.seq), Number(flags.devices), Number(flags["per-shard"])];
const optimizer = { lr: Number(flags.lr), eps: Number(flags.eps) };
const method = flags.method as "full" | "hdpissa";
if (method !== "full" && method !== "hdpissa") {
  throw new Error(`--method full|hdpissa, not ${method}`);
}
const STEPS = 3;

const asJson = (a: HostArray) => ({ shape: a.shape, data: Array.from(a.data) });

/** Our losses, with the weights and batches written to `folder` for PyTorch. */
async function ours(model: string, folder: string): Promise<number[][]> {
  const { params, adapt, batchAt, trainer: newTrainer } = await scaleStep(model, K, perShard);
  const files: Record<string, { shape: number[]; file: string }> = {};
  let i = 0;
  for (const [name, a] of Object.entries(params)) {
    const file = `${i++}.f32`;
    const d = a.data as Float32Array;
    await Deno.writeFile(join(folder, file), new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    files[name] = { shape: a.shape, file };
  }
  const trainer = await newTrainer(
    method,
    method === "hdpissa" ? { optimizer, svd: { method: "exact" } } : { optimizer },
  );
  // The same batch every step: the loss drop is the updates' alone.
  const batches = Array.from({ length: STEPS }, () => batchAt(seq, 0));
  const losses: number[][] = [];
  try {
    for (const b of batches) losses.push((await trainer.step(b)).loss);
  } finally {
    await trainer.close();
  }
  await Deno.writeTextFile(
    join(folder, "job.json"),
    JSON.stringify({
      model: SCALE_MODELS[model],
      method,
      rank: 4,
      adapt,
      optimizer,
      params: files,
      steps: batches.map((shards) =>
        shards.map((s) => Object.fromEntries(Object.entries(s).map(([k, v]) => [k, asJson(v)])))
      ),
    }),
  );
  return losses;
}

async function torch(folder: string): Promise<number[][]> {
  const out = await new Deno.Command(PYTHON, {
    args: [new URL("./torch_agree.py", import.meta.url).pathname, folder],
    cwd: new URL(".", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!).losses;
}

const version = await ensureTorch();
const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);
console.log(
  `K = ${K} shards of ${perShard} × ${seq} tokens, ${method}, Adam lr ${optimizer.lr} ` +
    `ε ${optimizer.eps}; PyTorch ${version} f32 on the CPU`,
);
console.log(
  "| model | step 1 loss, ours | PyTorch | max rel. diff | drop over 2 steps, ours | PyTorch | rel. diff |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- |");
for (const model of flags.models!.split(",")) {
  const folder = await Deno.makeTempDir({ prefix: `agree-${model}-` });
  try {
    const a = await ours(model, folder);
    const b = await torch(folder);
    const first = Math.max(...a[0].map((v, k) => rel(v, b[0][k])));
    const drop = (l: number[][]) => l[0].reduce((s, v, k) => s + v - l[STEPS - 1][k], 0) / K;
    const fmt = (l: number[]) => l.map((v) => v.toFixed(5)).join(", ");
    console.log(
      `| ${model} | ${fmt(a[0])} | ${fmt(b[0])} | ${first.toExponential(1)} | ${
        drop(a).toFixed(5)
      } | ${drop(b).toFixed(5)} | ${rel(drop(a), drop(b)).toExponential(1)} |`,
    );
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
}
