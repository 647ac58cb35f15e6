/**
 * A/B of the default training step under two settings, in one process with steps alternating, so
 * that the machine's drift (30% and more between runs here) weighs on both alike:
 *
 *   deno run -A bench/ab.ts '{"matmulFlatLanes": false}' '{"matmulFlatLanes": true}' [--steps 20]
 *   deno run -A bench/ab.ts '{"method": "hdpissa"}' '{"method": "lora"}'
 *
 * Each argument is a setting: `method` picks the trainer's method, `autotune: true` has the trainer
 * tune its matmuls (timed in this process, not cached), every other key overrides a CPU adapter's
 * code-generator tunables (`CPU_CODEGEN`) while that trainer compiles (on a GPU only `method` and
 * `autotune` can differ). Both trainers run two warm-up steps (compilation), then `--steps` steps
 * each, alternating. Prints each side's median and fastest step and the paired ratio (median over
 * steps of B ÷ A).
 *
 * `--workload block` runs the transformer block of `deno task bench` instead (code-generator
 * settings only, on any adapter): each sample is 5 steps with one sync, alternating, and each
 * side's pipelines are printed too. Its cells in the bench table moved by 50% between runs on this
 * shared machine; side by side, a shared text's slowdown showed as 84 ms against 35.
 */

import { parseArgs } from "node:util";
import type { Method, Trainer } from "../runtime/trainer.ts";
import { CPU_CODEGEN } from "../runtime/jit.ts";
import { gpu } from "../runtime/device.ts";
import { defaultStep } from "./default_step.ts";
import { type BlockStepper, blockStepper } from "./block_step.ts";
import type { CodegenOptions } from "../mod.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  options: {
    steps: { type: "string", default: "20" },
    workload: { type: "string", default: "step" },
  },
  allowPositionals: true,
});
if (positionals.length !== 2) {
  console.error("usage: deno run -A bench/ab.ts '<setting A as JSON>' '<setting B>' [--steps N]");
  Deno.exit(2);
}
const settings = positionals.map((s) => JSON.parse(s) as Record<string, unknown>);
const steps = Number(values.steps);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const report = (ms: number[][], label: (i: number) => string) => {
  settings.forEach((setting, i) =>
    console.log(
      `${"AB"[i]} ${JSON.stringify(setting)}${label(i)}: median ${median(ms[i]).toFixed(1)} ms, ` +
        `fastest ${Math.min(...ms[i]).toFixed(1)} ms`,
    )
  );
  const paired = median(ms[1].map((b, s) => b / ms[0][s]));
  console.log(`paired ratio B ÷ A over ${ms[0].length} samples: ${paired.toFixed(3)}`);
};

if (values.workload === "block") {
  const sides: BlockStepper[] = [];
  for (const s of settings) sides.push(await blockStepper(s as Partial<CodegenOptions>));
  const ms: number[][] = [[], []];
  for (let s = 0; s < steps; s++) {
    for (const [i, side] of sides.entries()) ms[i].push(await side.run(5));
  }
  sides.forEach((side) => side.close());
  report(ms, (i) => ` (${sides[i].pipelines} pipelines)`);
  Deno.exit(0);
}
if (values.workload !== "step") {
  console.error(`bench/ab.ts: --workload is "step" or "block", not ${values.workload}`);
  Deno.exit(2);
}
if (
  !(await gpu()).info.isFallbackAdapter &&
  settings.some((s) => Object.keys(s).some((k) => k !== "method" && k !== "autotune"))
) {
  console.error(
    "bench/ab.ts: code-generator settings apply to CPU adapters only; this one is a GPU",
  );
  Deno.exit(2);
}
const { shardsAt, trainer } = await defaultStep();

// The CPU adapter's tunables are read when a trainer compiles: set them around each creation.
const tunables = CPU_CODEGEN as Record<string, unknown>;
const saved = { ...tunables };
const trainers: Trainer[] = [];
for (const { method, autotune, ...codegen } of settings) {
  Object.assign(tunables, codegen);
  const t = await trainer(
    method as Method | undefined,
    autotune ? { autotune: { store: null } } : {},
  );
  for (const s of [0, 1]) await t.step(shardsAt(s)); // compiled and warm
  for (const key of Object.keys(codegen)) delete tunables[key];
  Object.assign(tunables, saved);
  trainers.push(t);
}

const ms: number[][] = [[], []];
for (let s = 0; s < steps; s++) {
  for (const [i, t] of trainers.entries()) {
    const t0 = performance.now();
    await t.step(shardsAt(2 + s));
    ms[i].push(performance.now() - t0);
  }
}
for (const t of trainers) await t.close();

report(ms, () => "");
