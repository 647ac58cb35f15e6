/**
 * The report of `deno task compare` (docs/results.md): per-method test accuracy over seeds with
 * bootstrap intervals, the learning rate each method chose on the validation split, update rank,
 * cost, the differences the paper reports, and findings worded from the numbers themselves.
 */

import { bootstrapAccuracy, bootstrapDifference, type Interval } from "./bootstrap.ts";

/** One training run of the comparison, as the report needs it. */
export interface CompareRun {
  method: string;
  lr: number;
  seed: number;
  /** Per validation item (every task's, in order): answered right. */
  validation: boolean[];
  /** Per test item, by task. */
  test: Record<string, boolean[]>;
  /** Mean training loss over the last tenth of the steps. */
  finalLoss: number;
  /** (step, mean shard loss). */
  losses: [number, number][];
  /** Numerical rank of W_T − W_0 per layer type (σᵢ > 1e-3·σ₁). */
  ranks: { layerType: string; meanRank: number }[];
  /** Median wall time per step. */
  stepSeconds: number;
  /** The spec's cost model: bytes per rank per step. */
  bytesPerStep: number;
  /** Wall time of the whole run (training, SVD, compilation, saving). */
  seconds: number;
  /** The loss became NaN or infinite: the run stopped and scores nothing. */
  diverged?: boolean;
}

/** What the comparison ran: the shared budget and the grids. */
export interface CompareSetup {
  task: string;
  /** What the task asks, for the report's first paragraph. */
  description: string;
  tasks: string[];
  model: string;
  steps: number;
  devices: number;
  rank: number;
  batch: number;
  maxLen: number;
  template: string;
  warmup: number;
  trainSize: number;
  validationSize: number;
  testSize: number;
  seeds: number[];
  gridSeed: number;
  grids: Record<string, number[]>;
  rsLora: boolean;
  /** Test accuracy of the base model, per task. */
  base: Record<string, number>;
  /** Wall time of this invocation of the comparison, in seconds (runs reused not included). */
  seconds: number;
  date: string;
}

/** Display names of the built-in methods (data-parallel ones marked DP, as in the paper). */
export const METHOD_LABELS: Record<string, string> = {
  hdpissa: "HD-PiSSA",
  "hd-milora": "HD-MiLoRA",
  pissa: "DP-PiSSA",
  milora: "DP-MiLoRA",
  lora: "DP-LoRA",
  dora: "DP-DoRA",
  full: "Full FT",
};

export const label = (m: string): string => METHOD_LABELS[m] ?? m;

/** The paper's multi-task gains (12 benchmarks, LLaMA/Mistral 7–8B; spec, "Reference setup"). */
export const PAPER_GAINS = [
  { better: "hdpissa", worse: "lora", points: 10.0, relative: "14.63%" },
  { better: "hdpissa", worse: "pissa", points: 4.98, relative: "6.60%" },
];

/** The orderings the findings test, best first. */
const ORDERING = ["hdpissa", "pissa", "lora"];

const mean = (xs: readonly number[]) => xs.reduce((a, x) => a + x, 0) / Math.max(1, xs.length);
const pct = (x: number) => (100 * x).toFixed(1);
const signed = (x: number) => `${x >= 0 ? "+" : "−"}${Math.abs(100 * x).toFixed(1)}`;
const ci = (i: Interval) => `[${pct(i.lo)}, ${pct(i.hi)}]`;
const ciSigned = (i: Interval) => `[${signed(i.lo)}, ${signed(i.hi)}]`;
export const lrText = (lr: number): string => lr.toExponential().replace("e-", "e−");

/** Every test item of a run, all tasks pooled. */
export const testItems = (r: CompareRun): boolean[] => Object.values(r.test).flat();
const accuracy = (items: readonly boolean[]) => mean(items.map(Number));

/**
 * The learning rate of each method: the grid run (seed `gridSeed`) with the best validation
 * accuracy; ties go to the lower final training loss.
 */
export function chooseLearningRates(
  runs: readonly CompareRun[],
  gridSeed: number,
): Record<string, number> {
  const chosen: Record<string, number> = {};
  for (const method of new Set(runs.map((r) => r.method))) {
    const grid = runs.filter((r) => r.method === method && r.seed === gridSeed);
    grid.sort((a, b) =>
      accuracy(b.validation) - accuracy(a.validation) || a.finalLoss - b.finalLoss
    );
    if (grid.length) chosen[method] = grid[0].lr;
  }
  return chosen;
}

/** Per method, the runs at its chosen learning rate: the ones reported. */
export function reportedRuns(
  runs: readonly CompareRun[],
  chosen: Record<string, number>,
): Record<string, CompareRun[]> {
  return Object.fromEntries(
    Object.entries(chosen).map(([m, lr]) => [
      m,
      runs.filter((r) => r.method === m && r.lr === lr).sort((a, b) => a.seed - b.seed),
    ]),
  );
}

function orderingFinding(byMethod: Record<string, CompareRun[]>): string {
  const present = ORDERING.filter((m) => byMethod[m]?.length);
  if (present.length < 2) return "";
  const diffs = present.slice(1).map((worse, i) => {
    const better = present[i];
    const d = bootstrapDifference(
      byMethod[better].map(testItems),
      byMethod[worse].map(testItems),
      { seed: 1 },
    );
    return { better, worse, d };
  });
  const all = diffs.every(({ d }) => d.lo > 0);
  const inMeans = diffs.every(({ d }) => d.mean > 0);
  const verdict = all
    ? "holds, every step of it with a 95% interval above zero"
    : inMeans
    ? "holds in the means, but not every difference is clear of zero at 95%"
    : "does not hold";
  return `- **${present.map(label).join(" > ")}: ${verdict}.** ${
    diffs.map(({ better, worse, d }) =>
      `${label(better)} − ${label(worse)} = ${signed(d.mean)} points ${ciSigned(d)}`
    ).join("; ")
  }.`;
}

/** docs/results.md: the tables and findings, every number from `runs`. */
export function compareReport(setup: CompareSetup, runs: readonly CompareRun[]): string {
  const chosen = chooseLearningRates(runs, setup.gridSeed);
  const byMethod = reportedRuns(runs, chosen);
  // Cost, rank and loss are averaged over the runs that finished (accuracy counts every run).
  const finished = Object.fromEntries(
    Object.entries(byMethod).map(([m, rs]) => [m, rs.filter((r) => !r.diverged)]),
  );
  const methods = Object.keys(setup.grids).filter((m) => byMethod[m]?.length);
  const interval = (m: string) => bootstrapAccuracy(byMethod[m].map(testItems), { seed: 1 });
  const intervals = Object.fromEntries(methods.map((m) => [m, interval(m)]));
  const meanRank = (m: string) =>
    mean(finished[m].map((r) => mean(r.ranks.map((x) => x.meanRank))));
  const taskAcc = (m: string, t: string) => pct(accuracy(byMethod[m].flatMap((r) => r.test[t])));
  const perSeed = (m: string) =>
    byMethod[m].map((r) =>
      r.diverged ? "diverged" : pct(accuracy(testItems(r))).replace(/\.0$/, "")
    ).join(" / ");
  const setting = (m: string) =>
    m === "full"
      ? `lr ${lrText(chosen[m])}`
      : `K ${setup.devices}, r ${setup.rank}, lr ${lrText(chosen[m])}`;
  const multiTask = setup.tasks.length > 1;
  const rows = methods.map((m) => {
    const i = intervals[m];
    const perTask = multiTask ? setup.tasks.map((t) => ` ${taskAcc(m, t)} |`).join("") : "";
    return `| ${label(m)} | ${setting(m)} |${perTask} **${pct(i.mean)}** ${ci(i)} | ${
      perSeed(m)
    } | ${meanRank(m).toFixed(1)} | ${
      (1000 * mean(finished[m].map((r) => r.stepSeconds))).toFixed(0)
    } | ${(mean(finished[m].map((r) => r.bytesPerStep)) / 1024).toFixed(1)} | ${
      mean(finished[m].map((r) => r.finalLoss)).toFixed(3)
    } |`;
  });
  const baseAcc = mean(setup.tasks.map((t) => setup.base[t] ?? 0));
  const baseRow = `| base model | – |${
    multiTask ? setup.tasks.map((t) => ` ${pct(setup.base[t] ?? 0)} |`).join("") : ""
  } ${pct(baseAcc)} | – | – | – | – | – |`;
  const taskHead = multiTask ? setup.tasks.map((t) => ` ${t} % |`).join("") : "";
  const taskRule = multiTask ? setup.tasks.map(() => "---|").join("") : "";
  const gridLrs = [...new Set(Object.values(setup.grids).flat())].sort((a, b) => a - b);
  const gridRows = methods.map((m) =>
    `| ${label(m)} | ${
      gridLrs.map((lr) => {
        const r = runs.find((x) => x.method === m && x.lr === lr && x.seed === setup.gridSeed);
        if (!r) return "";
        const v = r.diverged ? "diverged" : pct(accuracy(r.validation));
        return lr === chosen[m] ? `**${v}**` : v;
      }).join(" | ")
    } |`
  );
  const paperRows = PAPER_GAINS.filter((g) => byMethod[g.better] && byMethod[g.worse]).map((g) => {
    const d = bootstrapDifference(
      byMethod[g.better].map(testItems),
      byMethod[g.worse].map(testItems),
      { seed: 1 },
    );
    return `| ${label(g.better)} − ${label(g.worse)} | +${
      g.points.toFixed(2)
    } (${g.relative} relative) | ${signed(d.mean)} ${ciSigned(d)} |`;
  });
  const runsPerMethod = (m: string) => setup.grids[m].length + setup.seeds.length - 1;
  const totalRuns = methods.reduce((a, m) => a + runsPerMethod(m), 0);
  const findings = [
    orderingFinding(byMethod),
    takeOffFinding(methods, finished, runs, setup.gridSeed),
    rankFinding(methods, meanRank, setup),
    lossFinding(methods, finished),
    costFinding(methods, finished),
  ].filter(Boolean);
  return `# Results: HD-PiSSA against its baselines (small scale)

Produced by \`deno task compare\` on ${setup.date}: ${totalRuns} training runs, ${
    (runs.reduce((a, r) => a + r.seconds, 0) / 60).toFixed(0)
  } min in all (each run's wall time from loading the model to writing its folder; the validation
and test evaluations add a few seconds per run). Every number below comes from that run; the run
folders are in \`runs/compare/\`.

**Task.** ${setup.description} The base (\`${setup.model}\`, 1.03M parameters) scores ${
    pct(baseAcc)
  }% before fine-tuning.

**Budget, equal for every method.** ${setup.steps} steps × ${setup.devices} shards × ${setup.batch} sequences
(max ${setup.maxLen} tokens, prompt \`${
    JSON.stringify(setup.template).slice(1, -1)
  }\`), cosine schedule with ${100 * setup.warmup}% warm-up, Adam,
all seven projections adapted, ${setup.trainSize} training items. Adapters use per-device rank
r = ${setup.rank}${
    setup.rsLora ? " with rsLoRA scaling (α/√r)" : ""
  }; HD-PiSSA and HD-MiLoRA shard K·r components over K = ${setup.devices} (virtual)
devices. The data-parallel methods see the same K × ${setup.batch} sequences per step.

**Protocol.** Each method's learning rate is chosen from its grid by exact-match accuracy on a
validation split (${setup.validationSize} items per task, seed ${setup.gridSeed}; ties go to the lower training loss), then
the method is trained with seeds ${
    setup.seeds.join(", ")
  } at that rate and scored on the test split (${setup.testSize} items per task;
validation and test words are never trained on). Accuracy is the mean over seeds and items; the 95%
interval is a percentile bootstrap (2000 replicates, seeded) that resamples the seeds, then each
drawn seed's items, so it carries both seed-to-seed and item sampling spread.

| method | setting |${taskHead} test accuracy % [95% CI] | per seed % | mean update rank | ms/step | KiB/step | final loss |
|---|---|${taskRule}---|---|---|---|---|---|
${baseRow}
${rows.join("\n")}

Update rank: numerical rank of W_T − W_0 (σᵢ > 1e-3·σ₁) averaged over the adapted matrices and
seeds; the spec's bound is r for DP-LoRA, 2r for DP-PiSSA, 2·K·r for HD-PiSSA. ms/step is the
median wall time of a step on this machine (2 CPU cores, Mesa's CPU WebGPU, shared with other
jobs, so it is noisy); KiB/step is the spec's per-rank communication cost model.

![loss curves](results/loss.svg) ![update rank](results/rank.svg)

## Learning-rate grid (validation accuracy %, seed ${setup.gridSeed}; chosen in bold)

| method | ${gridLrs.map(lrText).join(" | ")} |
|---|${gridLrs.map(() => "---|").join("")}
${gridRows.join("\n")}

## Beside the paper

| difference (points) | paper: LLaMA-2/3, Mistral 7–8B, 12-benchmark multi-task average | here: ${setup.task}, 1.03M byte-level base, ${setup.seeds.length} seeds [95% CI] |
|---|---|---|
${paperRows.join("\n")}

These are different tasks at a scale four orders of magnitude smaller (and K = ${setup.devices}, r = ${setup.rank}
against the paper's K = 8, r = 16): the comparison is of the direction of the effect, not of its
size.

## Findings (this run)

${findings.join("\n")}
`;
}

/**
 * Loss under which a run has left the plateau of guessing the answer: about half the loss per
 * response token of a uniform guess of the cipher's letter among 17 response tokens.
 */
const TAKE_OFF_LOSS = 0.1;

/** The first step at which the mean loss of the last 10 steps is under TAKE_OFF_LOSS. */
export function takeOffStep(losses: readonly [number, number][]): number | undefined {
  for (let i = 9; i < losses.length; i++) {
    if (mean(losses.slice(i - 9, i + 1).map(([, l]) => l)) < TAKE_OFF_LOSS) return losses[i][0];
  }
  return undefined;
}

/**
 * Why methods differ at this budget: when each leaves the plateau, and how much the grid's
 * rates change that.
 */
function takeOffFinding(
  methods: string[],
  finished: Record<string, CompareRun[]>,
  runs: readonly CompareRun[],
  gridSeed: number,
): string {
  const steps = (m: string) =>
    finished[m].map((r) => takeOffStep(r.losses)).map((s) => s === undefined ? "never" : `${s}`);
  const swings = methods.filter((m) => {
    const v = runs.filter((r) => r.method === m && r.seed === gridSeed).map((r) =>
      accuracy(r.validation)
    );
    return Math.min(...v) < 0.25 && Math.max(...v) > 0.9;
  });
  const verdict = 2 * swings.length >= methods.length
    ? ": at this budget the rate decides whether a run takes off more than the method does"
    : "";
  return `- **Take-off.** A run first sits on a plateau (it answers in the format but guesses the
  letter); the step at which the 10-step mean loss falls under
  ${TAKE_OFF_LOSS} (chosen rate, per seed): ${
    methods.map((m) => `${label(m)} ${steps(m).join("/")}`).join(", ")
  }. ${swings.length} of ${methods.length} methods score under 25% at one rate of their grid and
  over 90% at another${swings.length ? ` (${swings.map(label).join(", ")})` : ""}${verdict}.`;
}

/** The spec's bound on the update rank, where the method has one. */
function rankBound(m: string, r: number, k: number): string {
  const bound: Record<string, string> = {
    lora: `r = ${r}`,
    milora: `2r = ${2 * r}`,
    pissa: `2r = ${2 * r}`,
    hdpissa: `2Kr = ${2 * k * r}`,
    "hd-milora": `2Kr = ${2 * k * r}`,
  };
  return bound[m] ? ` (first-order bound ${bound[m]})` : "";
}

function rankFinding(methods: string[], meanRank: (m: string) => number, setup: CompareSetup) {
  return `- **Update rank** (mean numerical rank of W_T − W_0; the second-order ΔB·ΔA terms of the
  HD methods can add a tail above the threshold): ${
    methods.map((m) =>
      `${label(m)} ${meanRank(m).toFixed(1)}${rankBound(m, setup.rank, setup.devices)}`
    ).join(", ")
  }.`;
}

function lossFinding(methods: string[], byMethod: Record<string, CompareRun[]>): string {
  const ranked = [...methods].sort((a, b) =>
    mean(byMethod[a].map((r) => r.finalLoss)) - mean(byMethod[b].map((r) => r.finalLoss))
  );
  return `- **Final training loss** (mean of the last tenth of the steps, over seeds), lowest first: ${
    ranked.map((m) => `${label(m)} ${mean(byMethod[m].map((r) => r.finalLoss)).toFixed(3)}`).join(
      ", ",
    )
  }.`;
}

function costFinding(methods: string[], byMethod: Record<string, CompareRun[]>): string {
  if (!methods.includes("hdpissa") || !methods.includes("lora")) return "";
  const ms = (m: string) => 1000 * mean(byMethod[m].map((r) => r.stepSeconds));
  const kib = (m: string) => mean(byMethod[m].map((r) => r.bytesPerStep)) / 1024;
  const full = methods.includes("full")
    ? `, and ${(kib("full") / kib("hdpissa")).toFixed(0)}× less than full fine-tuning's ${
      kib("full").toFixed(0)
    } KiB`
    : "";
  return `- **Cost.** An HD-PiSSA step took ${ms("hdpissa").toFixed(0)} ms against DP-LoRA's ${
    ms("lora").toFixed(0)
  } ms (noisy: shared machine). HD-PiSSA communicates ${
    kib("hdpissa").toFixed(1)
  } KiB per rank per step, ${(kib("hdpissa") / kib("lora")).toFixed(1)}× DP-LoRA's ${
    kib("lora").toFixed(1)
  } KiB${full}.`;
}
