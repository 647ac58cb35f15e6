/**
 * Time to the first step of the default `deno task train` (issue 15, "compile time"):
 * `deno run -A bench/first_step.ts [--steps N] [--profile] [--json FILE] [--dump DIR]
 * [--compile-ahead on|off]`.
 *
 * Builds the default trainer as `runTraining` does with DEFAULT_RUN (shipped base, HD-PiSSA,
 * K = 4, cipher task) and times, in wall and process CPU seconds (CPU time is the steadier figure
 * on a shared machine): plan/compile (lowering and pipeline creation), step 1, step 2 and the
 * median of steps 2…N (default N = 3). It counts the distinct pipelines and their WGSL characters
 * by kernel kind, and `--dump DIR` writes each kernel's WGSL. With `--profile` the kernels first
 * run one at a time (`KernelTiming.firstMs`): Mesa compiles a kernel's machine code at its first
 * dispatch, so each pipeline's first run shows its compile time (totals by kind and the slowest
 * kernels are printed).
 *
 * Where the device compiles ahead on two threads (`device.compileAheadEnabled`: Mesa's CPU drivers
 * with the shader cache on), the trainer's plan holds the compile; `--compile-ahead off` turns it
 * off (as `--profile` does) and `on` forces it. Compare plan + step 1 across settings.
 *
 * `--codegen JSON` overrides a CPU adapter's code-generator tunables (`CPU_CODEGEN`) for the
 * trainer, as bench/ab.ts does, to weigh a setting's compile time.
 *
 * Point Mesa's shader cache at a fresh directory (`MESA_SHADER_CACHE_DIR=$(mktemp -d)`) or turn
 * it off (`MESA_SHADER_CACHE_DISABLE=true`) for a cold-start figure.
 */

import { parseArgs } from "node:util";
import process from "node:process";
import type { Trainer } from "../runtime/trainer.ts";
import { gpu } from "../runtime/device.ts";
import { CPU_CODEGEN } from "../runtime/jit.ts";
import { defaultStep } from "./default_step.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    profile: { type: "boolean" },
    json: { type: "string" },
    dump: { type: "string" },
    steps: { type: "string", default: "3" },
    codegen: { type: "string" },
    "compile-ahead": { type: "string" },
  },
});
Object.assign(CPU_CODEGEN, JSON.parse(args.values.codegen ?? "{}"));
const { shardsAt, trainer: newTrainer } = await defaultStep();

// Every distinct WGSL text the device compiles (it compiles each text once), by kernel label.
const device = await gpu();
const ahead = args.values["compile-ahead"];
if (ahead !== undefined && ahead !== "on" && ahead !== "off") {
  throw new Error(`--compile-ahead takes on or off, got ${ahead}`);
}
if (ahead) device.compileAheadEnabled = ahead === "on";
// A profile reads Mesa's compile time from each pipeline's first run: nothing compiled ahead.
if (args.values.profile) device.compileAheadEnabled = false;
const created = new Map<string, { label: string; chars: number }>();
const pipelineOf = device.pipeline.bind(device);
device.pipeline = (wgsl: string, label: string) => {
  if (!created.has(wgsl)) created.set(wgsl, { label, chars: wgsl.length });
  if (args.values.dump) Deno.writeTextFileSync(`${args.values.dump}/${label}.wgsl`, wgsl);
  return pipelineOf(wgsl, label);
};
/** "matmul_matmul_123" → "matmul_matmul": the kernel's kind and main op. */
const kindOf = (label: string) => label.split("_").slice(0, 2).join("_");

/** Process CPU seconds (all threads: Mesa's compiler and its rasteriser threads included). */
const cpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
/** Wall and CPU seconds of `run`. */
const timed = async (run: () => Promise<unknown>) => {
  const t = performance.now(), c = cpuSeconds();
  await run();
  return {
    wall: +((performance.now() - t) / 1000).toFixed(2),
    cpu: +(cpuSeconds() - c).toFixed(2),
  };
};

let trainer!: Trainer;
const init = await timed(async () => {
  trainer = await newTrainer();
});
const plan = await timed(() => trainer.plan!(shardsAt(0)));

const byKind = new Map<string, { pipelines: number; chars: number; ms: number }>();
const kindEntry = (kind: string) => {
  if (!byKind.has(kind)) byKind.set(kind, { pipelines: 0, chars: 0, ms: 0 });
  return byKind.get(kind)!;
};
for (const c of created.values()) {
  const e = kindEntry(kindOf(c.label));
  e.pipelines++;
  e.chars += c.chars;
}
let profiled: { name: string; ms: number; chars: number }[] | undefined;
let profile: { wall: number; cpu: number } | undefined;
if (args.values.profile) {
  let timings: Awaited<ReturnType<NonNullable<Trainer["profile"]>>> = [];
  profile = await timed(async () => timings = await trainer.profile!(shardsAt(0)));
  // A kernel whose WGSL another kernel already compiled shares that pipeline: count it once.
  const seen = new Set<string>();
  profiled = timings.filter((k) => !seen.has(k.wgsl) && seen.add(k.wgsl)).map((k) => ({
    name: k.name,
    // The first run alone: Mesa compiles a pipeline at its first dispatch.
    ms: Math.round(k.firstMs),
    chars: k.wgsl.length,
  }));
  for (const k of profiled) kindEntry(kindOf(k.name)).ms += k.ms;
}
const steps = [];
for (let s = 0; s < Number(args.values.steps); s++) {
  steps.push(await timed(() => trainer.step(shardsAt(s))));
}
await trainer.close();

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const later = steps.slice(1);
const result = {
  device: device.info.description,
  cache: Deno.env.get("MESA_SHADER_CACHE_DISABLE") === "true"
    ? "disabled"
    : Deno.env.get("MESA_SHADER_CACHE_DIR") ?? "default",
  compileAhead: device.compileAheadEnabled,
  init,
  plan,
  profile,
  step1: steps[0],
  step2: steps[1],
  all: steps.map((s) => s.wall),
  /** Each step's wall/CPU seconds: CPU time near wall time means one core did the work. */
  steps: steps.map((s) => `${s.wall}/${s.cpu}`),
  laterStepsMedian: later.length
    ? { wall: median(later.map((x) => x.wall)), cpu: median(later.map((x) => x.cpu)) }
    : undefined,
  pipelines: created.size,
  wgslChars: [...created.values()].reduce((n, c) => n + c.chars, 0),
  byKind: Object.fromEntries(byKind),
  slowest: profiled?.sort((x, y) => y.ms - x.ms).slice(0, 15),
};
console.log(JSON.stringify(result, null, 1));
if (args.values.json) await Deno.writeTextFile(args.values.json, JSON.stringify(result) + "\n");
