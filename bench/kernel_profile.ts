/**
 * Where the default step's time goes, kernel by kernel (issue 15: "profile where the time goes
 * before choosing the work"): `deno run -A bench/kernel_profile.ts [--method hdpissa]
 * [--gpu-settings] [--top 12]`.
 *
 * Builds the default `deno task train` step (shipped base, K = 4, cipher task), runs one step, then
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

const args = parseArgs({
  args: Deno.args,
  options: {
    method: { type: "string", default: "hdpissa" },
    "gpu-settings": { type: "boolean" },
    top: { type: "string", default: "12" },
  },
});
const device = await gpu();
const { shardsAt, trainer: newTrainer } = await defaultStep();
const codegen = args.values["gpu-settings"] ? gpuCodegen(device.info.limits) : undefined;
const trainer = await newTrainer(args.values.method as Method, codegen ? { codegen } : {});
await trainer.step(shardsAt(0));
const timings = await trainer.profile!(shardsAt(1));
await trainer.close();

const total = timings.reduce((s, t) => s + t.ms, 0);
const kindOf = (name: string) => name.replace(/^grouped\d+_/, "").split("_")[0];
const byKind = new Map<string, { kernels: number; ms: number }>();
for (const t of timings) {
  const k = byKind.get(kindOf(t.name)) ?? { kernels: 0, ms: 0 };
  byKind.set(kindOf(t.name), { kernels: k.kernels + 1, ms: k.ms + t.ms });
}
const pct = (ms: number) => `${((100 * ms) / total).toFixed(1)}%`;
console.log(
  `${device.info.description}: ${args.values.method}${codegen ? " (GPU settings)" : ""}, ` +
    `${timings.length} kernels, ${total.toFixed(1)} ms in all (${timings[0]?.clock} clock)`,
);
console.log("\n| kind | kernels | ms | share |\n| --- | --- | --- | --- |");
for (const [kind, { kernels, ms }] of [...byKind].sort((a, b) => b[1].ms - a[1].ms)) {
  console.log(`| ${kind} | ${kernels} | ${ms.toFixed(2)} | ${pct(ms)} |`);
}
console.log(`\nslowest ${args.values.top}:`);
for (const t of [...timings].sort((a, b) => b.ms - a.ms).slice(0, Number(args.values.top))) {
  console.log(
    `  ${t.ms.toFixed(2)} ms (${pct(t.ms)})  ${t.name}  [${t.ops.slice(0, 12).join(", ")}]`,
  );
}
