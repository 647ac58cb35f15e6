/**
 * `deno task compare`: the small-scale replication of the HD-PiSSA paper's comparison. Every
 * built-in method (METHODS) trains on the rank suite's cipher with the same budget; each picks its
 * learning rate from a small grid by validation accuracy (one seed), then trains with several
 * seeds at that rate and is scored on the test split. Writes docs/results.md (means, bootstrap
 * intervals, chosen rates, update rank, cost) and its charts; run folders go to runs/compare/.
 * A finished run is not repeated when the command is started again with the same settings
 * (`--fresh` repeats them all), so an interrupted comparison continues where it stopped.
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { DEFAULT_RUN, type RunConfig, validateRun } from "../runtime/train/config.ts";
import { NonFiniteLossError, runTraining } from "../runtime/train/run.ts";
import { barChart, lineChart } from "../runtime/train/charts.ts";
import { suiteTasks, type TaskItem, taskSplits } from "../runtime/data/synthetic.ts";
import { RANK_SUITE } from "../runtime/data/rank_tasks.ts";
import { evaluateItems } from "../runtime/models/evaluate.ts";
import { type LoadedModel, loadModel } from "../runtime/models/model_dir.ts";
import type { HostArray } from "../dsl/host_array.ts";
import { METHODS } from "../dsl/adapters/methods/registry.ts";
import type { Method } from "../runtime/trainer.ts";
import {
  chooseLearningRates,
  compareReport,
  type CompareRun,
  type CompareSetup,
  label,
  lrText,
  reportedRuns,
} from "../runtime/train/compare_report.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    task: { type: "string", default: "cipher" },
    methods: { type: "string", default: Object.keys(METHODS).join(",") },
    steps: { type: "string", default: "200" },
    devices: { type: "string", default: "4" },
    rank: { type: "string", default: "1" },
    batch: { type: "string", default: "4" },
    "max-len": { type: "string", default: "32" },
    // The shortest prompt: the fixed Alpaca sections would double every sequence's length.
    template: { type: "string", default: "{query}\n" },
    // Four rates, about ×2.5 apart, for every method; the best of each method lies inside its
    // grid (a first run with three showed most adapters best at the top, full FT at the bottom).
    lrs: { type: "string", default: "2e-3,5e-3,1.2e-2,3e-2" },
    "full-lrs": { type: "string", default: "3e-4,1e-3,3e-3,6e-3" },
    seeds: { type: "string", default: "3" },
    "grid-seed": { type: "string", default: "0" },
    "train-size": { type: "string", default: "4000" },
    "validation-size": { type: "string", default: "64" },
    "test-size": { type: "string", default: "128" },
    "rs-lora": { type: "boolean", default: false },
    model: { type: "string", default: DEFAULT_RUN.model },
    out: { type: "string", default: "docs/results.md" },
    charts: { type: "string", default: "docs/results" },
    runs: { type: "string", default: join("runs", "compare") },
    fresh: { type: "boolean", default: false },
  },
});

const started = performance.now();
const numbers = (s: string) => s.split(",").map(Number);
const methods = flags.methods!.split(",");
for (const m of methods) if (!METHODS[m]) throw new Error(`--methods: unknown method "${m}"`);
const tasks = [...suiteTasks(flags.task!)];
const gridSeed = Number(flags["grid-seed"]);
// The grid seed first (its grid run at the chosen rate is reused), then 0, 1, … skipping it.
const seeds = [gridSeed];
for (let s = 0; seeds.length < Number(flags.seeds); s++) if (s !== gridSeed) seeds.push(s);
const grids = Object.fromEntries(
  methods.map((m) => [m, numbers(m === "full" ? flags["full-lrs"]! : flags.lrs!)]),
);

// Held-out items are the same for every run (data seed 0), so methods are scored on equal terms;
// a rank-suite word's split is fixed by the word itself, so no run ever trains on them.
const heldOut: Record<string, { validation: TaskItem[]; test: TaskItem[] }> = {};
for (const task of tasks) {
  heldOut[task] = taskSplits(task, {
    train: 0,
    test: Number(flags["test-size"]),
    validation: Number(flags["validation-size"]),
  }, 0);
}

const template = flags.template!;
/** Per-item correctness on the validation split (tasks in order) and on each task's test split. */
async function score(params: Record<string, HostArray>, model: LoadedModel) {
  const correct = async (items: TaskItem[]) =>
    (await evaluateItems(model.config, model.tokenizer, params, items, { template })).matched!;
  const validation: boolean[] = [];
  const test: Record<string, boolean[]> = {};
  for (const task of tasks) {
    validation.push(...await correct(heldOut[task].validation));
    test[task] = await correct(heldOut[task].test);
  }
  return { validation, test };
}

const base = await loadModel(flags.model!);
const baseScores = (await score(base.params, base)).test;

function runConfig(method: string, lr: number, seed: number): RunConfig {
  const steps = Number(flags.steps);
  return validateRun({
    ...DEFAULT_RUN,
    method: method as Method,
    model: flags.model!,
    task: flags.task!,
    template,
    devices: Number(flags.devices),
    rank: Number(flags.rank),
    rsLora: flags["rs-lora"],
    batch: Number(flags.batch),
    steps,
    lr,
    maxLen: Number(flags["max-len"]),
    // Scored here, on the validation and test splits, rather than inside the run.
    evalSize: 0,
    trainSize: Number(flags["train-size"]),
    checkpointEvery: steps,
    seed,
    out: join(flags.runs!, `${method}-lr${lrText(lr).replace("−", "-")}-seed${seed}`),
  });
}

/** Trains one run (or reads it back when it already finished with these settings). */
async function run(method: string, lr: number, seed: number): Promise<CompareRun> {
  const cfg = runConfig(method, lr, seed);
  const settings = JSON.stringify({
    cfg,
    validation: flags["validation-size"],
    test: flags["test-size"],
  });
  const recordPath = join(cfg.out, "compare.json");
  if (!flags.fresh) {
    try {
      const saved = JSON.parse(await Deno.readTextFile(recordPath));
      if (saved.settings === settings) {
        console.log(`${label(method)} lr ${lrText(lr)} seed ${seed}: done before, reused`);
        return saved.run;
      }
    } catch { /* not run yet */ }
  }
  console.log(`\n=== ${label(method)} lr ${lrText(lr)} seed ${seed} ===`);
  let last = 0;
  const io = {
    log: () => {},
    progress: (p: { step: number; total: number; loss: number }) => {
      if (performance.now() - last > 20000 || p.step === p.total) {
        console.log(`step ${p.step}/${p.total} loss ${p.loss.toFixed(4)}`);
        last = performance.now();
      }
    },
  };
  const result = await runTraining(cfg, io).catch((e) => {
    // A rate in the grid may be too high for a method: that run scores nothing, the grid goes on.
    if (!(e instanceof NonFiniteLossError)) throw e;
    console.log(`diverged: ${e.message.split(";")[0]}`);
    return undefined;
  });
  if (!result) {
    const record = diverged(method, lr, seed);
    await Deno.writeTextFile(recordPath, JSON.stringify({ settings, run: record }));
    return record;
  }
  const tuned = await loadModel(join(cfg.out, "model"));
  const losses = result.losses ?? [];
  const tail = losses.slice(-Math.max(1, Math.round(losses.length / 10)));
  const record: CompareRun = {
    method,
    lr,
    seed,
    ...await score(tuned.params, base),
    finalLoss: tail.reduce((a, [, l]) => a + l, 0) / tail.length,
    losses,
    ranks: (result.ranks ?? []).map((r) => ({ layerType: r.layerType, meanRank: r.meanRank })),
    stepSeconds: result.stepSeconds ?? 0,
    bytesPerStep: result.bytesPerStep ?? 0,
    seconds: result.seconds,
  };
  const acc = (xs: boolean[]) => (100 * xs.filter(Boolean).length / xs.length).toFixed(1);
  console.log(
    `validation ${acc(record.validation)}%, test ${acc(Object.values(record.test).flat())}%, ` +
      `${result.seconds.toFixed(0)} s`,
  );
  await Deno.writeTextFile(recordPath, JSON.stringify({ settings, run: record }));
  return record;
}

/** The record of a run whose loss became NaN or infinite: every item wrong. */
function diverged(method: string, lr: number, seed: number): CompareRun {
  return {
    method,
    lr,
    seed,
    validation: tasks.flatMap((t) => heldOut[t].validation.map(() => false)),
    test: Object.fromEntries(tasks.map((t) => [t, heldOut[t].test.map(() => false)])),
    finalLoss: Number.MAX_VALUE,
    losses: [],
    ranks: [],
    stepSeconds: 0,
    bytesPerStep: 0,
    seconds: 0,
    diverged: true,
  };
}

// Phase 1: every method's grid at the grid seed. Phase 2: the other seeds at the chosen rate.
const runs: CompareRun[] = [];
for (const m of methods) for (const lr of grids[m]) runs.push(await run(m, lr, gridSeed));
const chosen = chooseLearningRates(runs, gridSeed);
for (const m of methods) {
  console.log(`${label(m)}: lr ${lrText(chosen[m])} chosen on validation`);
  for (const seed of seeds.slice(1)) runs.push(await run(m, chosen[m], seed));
}

// Charts of the runs that finished (a diverged run has no curve or rank).
const reported = Object.fromEntries(
  Object.entries(reportedRuns(runs, chosen)).map(([m, rs]) => [m, rs.filter((r) => !r.diverged)]),
);
const mean = (xs: number[]) => xs.reduce((a, x) => a + x, 0) / Math.max(1, xs.length);
/** The mean loss curve over a method's finished runs (same steps in every run). */
const meanCurve = (rs: CompareRun[]): [number, number][] =>
  (rs[0]?.losses ?? []).map(([step], i) => [step, mean(rs.map((r) => r.losses[i]?.[1] ?? 0))]);
await Deno.mkdir(flags.charts!, { recursive: true });
await Deno.writeTextFile(
  join(flags.charts!, "loss.svg"),
  lineChart(methods.map((m) => ({ name: label(m), points: meanCurve(reported[m]) })), {
    title: `training loss on ${flags.task} (mean over ${seeds.length} seeds, chosen lr)`,
    xLabel: "step",
    yLabel: "mean shard loss",
  }),
);
const layerTypes = [...new Set(runs.flatMap((r) => r.ranks.map((x) => x.layerType)))];
await Deno.writeTextFile(
  join(flags.charts!, "rank.svg"),
  barChart(
    layerTypes,
    methods.map((m) => ({
      name: label(m),
      values: layerTypes.map((t) =>
        mean(reported[m].map((r) => r.ranks.find((x) => x.layerType === t)?.meanRank ?? 0))
      ),
    })),
    { title: "numerical rank of W_T − W_0 (σᵢ > 1e-3·σ₁)", yLabel: "rank" },
  ),
);

const rankTasks = tasks.every((t) => RANK_SUITE.includes(t));
const setup: CompareSetup = {
  task: flags.task!,
  description: rankTasks
    ? `${tasks.map((t) => `\`${t}\``).join(" and ")} from the rank suite ` +
      "(`runtime/data/rank_tasks.ts`): a word of 3–5 random letters with one capital " +
      '("Encode qwErt"), answered with the capital\'s image under a fixed random substitution ' +
      `cipher of the 26 letters (no letter maps to itself${
        tasks.includes("decipher") ? "; `decipher` asks for the inverse" : ""
      }). The ` +
      "base has never seen the cipher. Finding the capital is content-based attention, which " +
      "the base learns within a few hundred steps; the rest is a 26-entry letter map. Made in " +
      "one matrix, that map is a change of rank about 26 in the letter subspace, more than a " +
      `rank-${flags.rank} adapter gives any one matrix; spread over the seven projections of ` +
      "every layer it may need less, and the table shows whether the rank matters. Chance is " +
      "1 in 26 (3.8%)."
    : `the synthetic task(s) ${tasks.map((t) => `\`${t}\``).join(", ")}.`,
  tasks,
  model: flags.model!,
  steps: Number(flags.steps),
  devices: Number(flags.devices),
  rank: Number(flags.rank),
  batch: Number(flags.batch),
  maxLen: Number(flags["max-len"]),
  template,
  warmup: DEFAULT_RUN.warmup,
  trainSize: Number(flags["train-size"]),
  validationSize: Number(flags["validation-size"]),
  testSize: Number(flags["test-size"]),
  seeds,
  gridSeed,
  grids,
  rsLora: flags["rs-lora"]!,
  base: Object.fromEntries(
    tasks.map((t) => [t, baseScores[t].filter(Boolean).length / baseScores[t].length]),
  ),
  seconds: (performance.now() - started) / 1000,
  date: new Date().toISOString().slice(0, 10),
};
const report = compareReport(setup, runs);
await Deno.writeTextFile(flags.out!, report);
// The report and charts are committed: format them as `deno task check` expects.
const charts = ["loss.svg", "rank.svg"].map((f) => join(flags.charts!, f));
await new Deno.Command("deno", { args: ["fmt", "--quiet", flags.out!, ...charts] }).output();
console.log(await Deno.readTextFile(flags.out!));
