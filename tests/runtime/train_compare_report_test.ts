import assert from "node:assert/strict";
import {
  chooseLearningRates,
  compareReport,
  type CompareRun,
  type CompareSetup,
  reportedRuns,
  takeOffStep,
} from "../../runtime/train/compare_report.ts";

/** A run whose first `hits` of `n` items (validation and test) are right. */
function run(method: string, lr: number, seed: number, hits: number, finalLoss = 0.1): CompareRun {
  const items = (n: number) => Array.from({ length: n }, (_, i) => i < hits * n / 10);
  return {
    method,
    lr,
    seed,
    validation: items(10),
    test: { cipher: items(20) },
    finalLoss,
    losses: Array.from({ length: 40 }, (_, i) => [i + 1, i < 20 ? 1 : 0.05] as [number, number]),
    ranks: [{ layerType: "q_proj", meanRank: method === "lora" ? 1 : 8 }],
    stepSeconds: 0.3,
    bytesPerStep: method === "lora" ? 1024 : 2048,
    seconds: 60,
  };
}

const setup: CompareSetup = {
  task: "cipher",
  description: "the cipher.",
  tasks: ["cipher"],
  model: "models/base",
  steps: 40,
  devices: 4,
  rank: 1,
  batch: 4,
  maxLen: 32,
  template: "{query}\n",
  warmup: 0.03,
  trainSize: 100,
  validationSize: 10,
  testSize: 20,
  seeds: [0, 1, 2],
  gridSeed: 0,
  grids: { hdpissa: [1e-3, 1e-2], pissa: [1e-3, 1e-2], lora: [1e-3, 1e-2] },
  rsLora: false,
  base: { cipher: 0 },
  seconds: 100,
  date: "2026-12-05",
};

Deno.test("compare report: the rate is chosen on validation, ties by the lower loss", () => {
  const runs = [
    run("lora", 1e-3, 0, 3),
    run("lora", 1e-2, 0, 7),
    run("pissa", 1e-3, 0, 5, 0.2),
    run("pissa", 1e-2, 0, 5, 0.1),
    // Another seed's better score must not count: rates are chosen on the grid seed only.
    run("lora", 1e-3, 1, 10),
  ];
  assert.deepEqual(chooseLearningRates(runs, 0), { lora: 1e-2, pissa: 1e-2 });
  const reported = reportedRuns(runs, { lora: 1e-3 });
  assert.deepEqual(reported.lora.map((r) => r.seed), [0, 1]);
});

Deno.test("compare report: accuracies, intervals and the ordering verdict come from the runs", () => {
  const runs: CompareRun[] = [];
  const scores: Record<string, number> = { hdpissa: 9, pissa: 6, lora: 3 };
  for (const [m, hits] of Object.entries(scores)) {
    runs.push(run(m, 1e-3, 0, 1), run(m, 1e-2, 0, hits));
    runs.push(run(m, 1e-2, 1, hits), run(m, 1e-2, 2, hits));
  }
  const report = compareReport(setup, runs);
  assert.match(report, /\| HD-PiSSA \| K 4, r 1, lr 1e−2 \| \*\*90\.0\*\* \[\d+\.\d, \d+\.\d\] \|/);
  assert.match(report, /\| DP-LoRA \| K 4, r 1, lr 1e−2 \| \*\*30\.0\*\*/);
  assert.match(report, /HD-PiSSA > DP-PiSSA > DP-LoRA: holds, every step of it/);
  assert.match(report, /\| HD-PiSSA − DP-LoRA \| \+10\.00 \(14\.63% relative\) \| \+60\.0 \[/);
  assert.match(report, /12 training runs/);

  // Swap the winners: the verdict must follow the numbers.
  const swapped = runs.map((r) =>
    r.method === "hdpissa"
      ? { ...r, method: "lora" }
      : r.method === "lora"
      ? { ...r, method: "hdpissa" }
      : r
  );
  assert.match(compareReport(setup, swapped), /HD-PiSSA > DP-PiSSA > DP-LoRA: does not hold/);
});

Deno.test("compare report: a diverged run scores nothing and has no curve", () => {
  const runs = [run("lora", 1e-3, 0, 5), { ...run("lora", 1e-2, 0, 0), diverged: true }];
  const report = compareReport({ ...setup, grids: { lora: [1e-3, 1e-2] }, seeds: [0] }, runs);
  assert.match(report, /\| DP-LoRA \| \*\*50\.0\*\* \| diverged \|/);
});

Deno.test("compare report: take-off is the first step whose 10-step mean loss is under 0.1", () => {
  const losses = Array.from({ length: 40 }, (_, i) =>
    [i + 1, i < 20 ? 1 : 0.05] as [
      number,
      number,
    ]);
  // Steps 21–30 are the first ten all at 0.05; the mean first drops under 0.1 at step 30.
  assert.equal(takeOffStep(losses), 30);
  assert.equal(takeOffStep(losses.map(([s]) => [s, 0.5])), undefined);
});
