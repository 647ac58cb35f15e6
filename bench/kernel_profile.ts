/**
 * Where the default step's time goes, kernel by kernel (issue 15: "profile where the time goes
 * before choosing the work"): `deno run -A bench/kernel_profile.ts [--method hdpissa]
 * [--gpu-settings] [--top 12] [--model gpt2|qwen --seq 64 --devices 2 --per-shard 1]`.
 *
 * Builds the default `deno task train` step (shipped base, K = 4, cipher task), or with `--model`
 * a scale model's step with random weights (bench/gpu_scale.ts), runs one step, then
 * `trainer.profile`: each kernel's time on the device's own clock where it grants timestamp
 * queries (lavapipe does; every kernel in program order, one pass each), else each kernel alone on
 * the wall clock. Prints the total, the time by kernel kind and by fused primitive class, and the
 * slowest kernels. `--gpu-settings` lowers the step as a GPU adapter would (`gpuCodegen`) on this
 * device.
 */

import { parseArgs } from "node:util";
import type { Method } from "../runtime/trainer.ts";
import { gpuCodegen } from "../runtime/jit.ts";
import { gpu } from "../runtime/device.ts";
import { defaultStep } from "./default_step.ts";
import { scaleStep } from "./gpu_scale.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    method: { type: "string", default: "hdpissa" },
    "gpu-settings": { type: "boolean" },
    top: { type: "string", default: "12" },
    model: { type: "string" },
    seq: { type: "string", default: "64" },
    devices: { type: "string", default: "2" },
    "per-shard": { type: "string", default: "1" },
  },
});
const device = await gpu();
const { values: v } = args;
const { shardsAt, trainer: newTrainer } = v.model
  ? await scaleStep(v.model, Number(v.devices), Number(v["per-shard"])).then((m) => ({
    shardsAt: (s: number) => m.batchAt(Number(v.seq), s),
    trainer: m.trainer,
  }))
  : await defaultStep();
const codegen = args.values["gpu-settings"] ? gpuCodegen(device.info.limits) : undefined;
const trainer = await newTrainer(v.method as Method, codegen ? { codegen } : {});
await trainer.step(shardsAt(0));
const timings = await trainer.profile!(shardsAt(1));
await trainer.close();

const total = timings.reduce((s, t) => s + t.ms, 0);
const kindOf = (name: string) => name.replace(/^grouped\d+_/, "").split("_")[0];
const byKind = new Map<string, { kernels: number; ms: number; madds: number }>();
for (const t of timings) {
  const k = byKind.get(kindOf(t.name)) ?? { kernels: 0, ms: 0, madds: 0 };
  byKind.set(kindOf(t.name), {
    kernels: k.kernels + 1,
    ms: k.ms + t.ms,
    madds: k.madds + (t.multiplyAdds ?? 0),
  });
}
/** FLOP rate of `madds` multiply-adds in `ms`, or "" where the kernels do no products. */
const gflops = (madds: number, ms: number) => madds ? (2 * madds / ms / 1e6).toFixed(1) : "";
const pct = (ms: number) => `${((100 * ms) / total).toFixed(1)}%`;
console.log(
  `${device.info.description}: ${args.values.method}${codegen ? " (GPU settings)" : ""}, ` +
    `${timings.length} kernels, ${total.toFixed(1)} ms in all (${timings[0]?.clock} clock)`,
);
console.log("\n| kind | kernels | ms | share | GFLOP/s |\n| --- | --- | --- | --- | --- |");
for (const [kind, { kernels, ms, madds }] of [...byKind].sort((a, b) => b[1].ms - a[1].ms)) {
  console.log(`| ${kind} | ${kernels} | ${ms.toFixed(2)} | ${pct(ms)} | ${gflops(madds, ms)} |`);
}
console.log(`\nslowest ${args.values.top}:`);
for (const t of [...timings].sort((a, b) => b.ms - a.ms).slice(0, Number(args.values.top))) {
  console.log(
    `  ${t.ms.toFixed(2)} ms (${pct(t.ms)})  ${t.name} → ${t.output}` +
      (t.multiplyAdds ? ` at ${gflops(t.multiplyAdds, t.ms)} GFLOP/s` : "") +
      `  [${t.ops.slice(0, 12).join(", ")}]`,
  );
}
