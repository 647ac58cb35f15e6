/**
 * The fine-tuning job behind `deno task train`: data, trainer, evaluation before and after,
 * metrics, checkpoints and resume, guards, exports and the run report. A run is a pure function
 * of its configuration: batch t depends only on (seed, t), so a resumed run retraces exactly the
 * trajectory of an uninterrupted one.
 */

import { join } from "node:path";
import { conv1dWeights, lmLoss } from "../../dsl/nn/transformer.ts";
import type { LayerTypeRank } from "../../dsl/linalg/rank.ts";
import { rankByLayerTypeInWorkers } from "../linalg/rank_workers.ts";
import type { HostArray } from "../../dsl/host_array.ts";
import type { DeviceArray } from "../device_array.ts";
import { fileTuneStore } from "../io/autotune_store.ts";
import type { Tensor } from "../../dsl/trace.ts";
import { sha256Hex, writeTextAtomic } from "../io/atomic.ts";
import {
  BatchSampler,
  collate,
  encodeExample,
  type Example,
  readJsonl,
  shard,
} from "../data/instruct.ts";
import { SUITES, suiteTasks, type TaskItem, TASKS, taskSplits } from "../data/synthetic.ts";
import { answerPattern, finalAnswer } from "../data/answers.ts";
import { type EvalData, readEvalData } from "../data/eval_data.ts";
import { evaluateItems, type TaskScore } from "../models/evaluate.ts";
import { loadModel, saveModel } from "../models/model_dir.ts";
import { METHODS } from "../../dsl/adapters/methods/registry.ts";
import { peftFactorsOf, saveLoraAdapter } from "../models/peft.ts";
import { copyTokenizerFiles } from "../text/tokenizer_files.ts";
import { createTrainer } from "../trainer.ts";
import type { Trainer } from "../trainer_common.ts";
import { OVERSAMPLE, type SvdMethod, svdMethodFor } from "../trainer_common.ts";
import { sketchWidth } from "../linalg/rsvd.ts";
import { launcherSize } from "../dist/mpi.ts";
import { barChart, lineChart } from "./charts.ts";
import { loadLatestCheckpoint, saveCheckpoint } from "./checkpoints.ts";
import {
  adaptedWeights,
  ConfigError,
  frozenStorageFor,
  type RunConfig,
  runSchedule,
} from "./config.ts";
import {
  evalDataLine,
  evalRecord,
  writeEvalRecord,
  wrongAnswerList,
  wrongAnswers,
} from "./eval_report.ts";

export interface RunIO {
  /** A line for the log (stderr on a terminal, stdout otherwise). */
  log(line: string): void;
  /** Live progress (a terminal bar); called every step. */
  progress?(
    p: { step: number; total: number; loss: number; tokensPerSecond: number; etaSeconds: number },
  ): void;
  /** Set to true (e.g. by SIGINT) to checkpoint and stop after the current step. */
  stopRequested?(): boolean;
  /**
   * The phase the run enters: "loading the model", "preparing the data", "the initial SVD and
   * compilation", "evaluation before training", "training", "final evaluation", "writing the run
   * folder". Only "training" stops gracefully (at a step, with a checkpoint); a caller may stop
   * the process outright in any other phase.
   */
  phase?(name: RunPhase): void;
}

/** The phases of `runTraining`, in order (see `RunIO.phase`). */
export type RunPhase =
  | "loading the model"
  | "preparing the data"
  | "the initial SVD and compilation"
  | "evaluation before training"
  | "training"
  | "final evaluation"
  | "writing the run folder";

export class NonFiniteLossError extends Error {}

/** Scores per evaluated task. */
export type Scores = Record<string, TaskScore>;

export interface RunResult {
  steps: number;
  /** `--dry-run`: planned and probed, nothing trained or written. */
  dryRun?: boolean;
  before?: Scores;
  after?: Scores;
  stopped: boolean;
  seconds: number;
  stepSeconds?: number;
  bytesPerStep?: number;
  ranks?: LayerTypeRank[];
  losses?: [number, number][];
  trainSeconds?: number;
  /** False on MPI ranks other than 0, which write no files and evaluate nothing. */
  leader?: boolean;
}

const pct = (s: { accuracy: number; correct: number; total: number }) =>
  `${(100 * s.accuracy).toFixed(1)}% (${s.correct}/${s.total})`;

/** All tasks' items pooled. */
export function overall(scores: Scores): { accuracy: number; correct: number; total: number } {
  const correct = Object.values(scores).reduce((a, s) => a + s.correct, 0);
  const total = Object.values(scores).reduce((a, s) => a + s.total, 0);
  return { accuracy: correct / Math.max(1, total), correct, total };
}

const text = (x: unknown) => JSON.stringify(x);

/** "loading the model 12 s · preparing the data 1 s · …": each phase until the next (or now). */
function phaseTimes(phases: readonly [RunPhase, number][]): string {
  return phases.map(([name, start], i) =>
    `${name} ${(((phases[i + 1]?.[1] ?? performance.now()) - start) / 1000).toFixed(0)} s`
  ).join(" · ");
}

export async function runTraining(cfg: RunConfig, io: RunIO): Promise<RunResult> {
  const t0 = performance.now();
  // When each phase began, for the summary's time by phase.
  const phases: [RunPhase, number][] = [];
  const enter = (name: RunPhase) => {
    phases.push([name, performance.now()]);
    io.phase?.(name);
  };
  enter("loading the model");
  const model = await loadModel(cfg.model);
  enter("preparing the data");
  const tok = model.tokenizer;
  const template = cfg.template ?? model.template;
  if (template === "chat" && !tok.chatTemplate) {
    throw new ConfigError(
      "template",
      `chat needs the model's chat template, and ${cfg.model} has none (no chat_template in ` +
        "tokenizer_config.json, no chat_template.jinja); use --template alpaca or compact",
    );
  }
  // Data: a JSONL file, or a synthetic task (which also gives the evaluation split).
  let train: Example[] = [];
  const tests: Record<string, TaskItem[]> = {};
  if (cfg.data) {
    train = (await readJsonl(cfg.data, { query: cfg.queryField, response: cfg.responseField }))
      .slice(0, cfg.trainSize);
  } else {
    // A suite ("multitask", "ranksuite") mixes its tasks: trainSize examples split evenly, each
    // task scored on its own.
    const tasks = suiteTasks(cfg.task);
    const known = Object.keys(TASKS);
    const unknown = tasks.find((t) => !known.includes(t));
    if (unknown) {
      throw new ConfigError(
        "task",
        `unknown task "${unknown}" (tasks: ${[...Object.keys(SUITES), ...known].join(", ")})`,
      );
    }
    for (const task of tasks) {
      const sizes = { train: Math.ceil(cfg.trainSize / tasks.length), test: cfg.evalSize };
      const split = taskSplits(task, sizes, cfg.seed);
      train.push(...split.train);
      if (cfg.evalSize > 0 && !cfg.evalData) tests[task] = split.test;
    }
  }
  // --eval-data replaces the synthetic test split: scored by the final answer of its responses.
  const pattern = cfg.answerRegex === undefined ? undefined : answerPattern(cfg.answerRegex);
  let evalData: EvalData | undefined;
  if (cfg.evalData && cfg.evalSize > 0) {
    evalData = await readEvalData(cfg.evalData, {
      query: cfg.queryField,
      response: cfg.responseField,
      limit: cfg.evalSize,
      pattern,
    }).catch((e) => {
      throw new ConfigError("eval-data", (e as Error).message);
    });
    tests[evalData.source] = evalData.items;
  }
  const launched = launcherSize();
  if (launched !== undefined && launched > 1 && cfg.mode !== "mpi") {
    throw new Error(
      `this process is one of ${launched} ranks started by an MPI launcher, but --mode is ` +
        `${cfg.mode}: every rank would train the whole job and write the same --out. Add --mode mpi`,
    );
  }
  const encoded = train.map((ex) => encodeExample(tok, ex, template));
  // The default --max-len fits the default task's short items: say when it cuts other data.
  const cut = encoded.filter((e) => e.tokens.length - 1 > cfg.maxLen).length;
  if (cut > 0) {
    io.log(
      `${cut} of ${encoded.length} training examples are longer than --max-len ${cfg.maxLen} ` +
        `tokens and are cut (their tail is not trained on); raise --max-len to keep them whole`,
    );
  }
  const K = cfg.devices;
  const perStep = K * cfg.batch;
  const total = cfg.epochs ? Math.ceil((cfg.epochs * train.length) / perStep) : cfg.steps;
  const resolved = { ...cfg, steps: total };
  const configHash = (await sha256Hex(
    // Where the shards run does not change the trajectory: a checkpoint resumes in any mode.
    new TextEncoder().encode(text({
      ...resolved,
      out: undefined,
      resume: undefined,
      mode: undefined,
      verifyReplicasEvery: undefined,
      lossEvery: undefined,
      commTimeout: undefined,
      dryRun: undefined,
      checkpointActivations: undefined,
      // Which kernels run (like the device) may change the last bits, not the method.
      autotune: undefined,
    })),
  )).slice(0, 16);
  const adapt = adaptedWeights(model.params, cfg.adapt);
  if (adapt.length === 0) {
    throw new ConfigError("adapt", `no 2-D weights named ${cfg.adapt.join(", ")} in ${cfg.model}`);
  }
  // PiSSA-family adapters start from an SVD: say which one each matrix gets (rank 0 only).
  const firstRank = (Deno.env.get("OMPI_COMM_WORLD_RANK") ?? Deno.env.get("PMI_RANK") ?? "0") ===
    "0";
  const wanted = METHODS[cfg.method].svdComponents?.(cfg.rank, K);
  if (wanted !== undefined && firstRank) {
    io.log(svdChoice(cfg.svd, adapt.map((n) => model.params[n].shape), wanted));
  }
  const frozenStorage = frozenStorageFor(cfg.frozenDtype, model.floatDType);
  if (frozenStorage !== "f32" && firstRank) {
    io.log(
      `frozen weights on the device: ${frozenStorage} (--frozen-dtype ${
        cfg.frozenDtype ?? "auto"
      })`,
    );
  }
  enter("the initial SVD and compilation");
  const trainer = await createTrainer({
    loss: (p: Record<string, Tensor>, b: { ids: Tensor; targets: Tensor; mask: Tensor }) =>
      lmLoss(model.config, p, b, { checkpointBlocks: cfg.checkpointActivations }),
    params: model.params,
    adapt,
    fanInFanOut: conv1dWeights(model.config).filter((n) => adapt.includes(n)),
    method: cfg.method,
    devices: K,
    rank: cfg.rank,
    alpha: cfg.alpha,
    rsLora: cfg.rsLora,
    optimizer: { lr: runSchedule(resolved) },
    mode: cfg.mode,
    svd: { method: cfg.svd, seed: cfg.seed },
    seed: cfg.seed,
    verifyReplicasEvery: cfg.verifyReplicasEvery,
    collectiveTimeoutMs: cfg.commTimeout ? cfg.commTimeout * 1000 : undefined,
    frozenStorage,
    autotune: cfg.autotune ? { store: fileTuneStore() } : undefined,
  });
  // Mode "mpi": this process is one rank; it builds and trains its own shards only, and rank 0
  // alone evaluates and writes the run folder. Every rank takes the same decisions (stop,
  // non-finite loss) from values gathered each step.
  const leader = trainer.rank === 0;
  const perRank = K / trainer.size;
  const myShards = Array.from({ length: perRank }, (_, i) => trainer.rank * perRank + i);
  if (leader && !cfg.dryRun) await Deno.mkdir(cfg.out, { recursive: true });
  const log = (line: string) => leader && io.log(line);
  // Every rank must run the same job: a different --steps, --checkpoint-every or --resume would
  // make the ranks' collectives disagree (a hang or corrupt data, not an error).
  if (trainer.size > 1) {
    const mine = [parseInt(configHash.slice(0, 12), 16), cfg.checkpointEvery, total, +cfg.resume];
    const all = await trainer.gatherScalars(mine);
    if (all.some((v, i) => v !== mine[i % mine.length])) {
      throw new ConfigError(
        "mode",
        `the ${trainer.size} ranks were started with different run settings (config hash, ` +
          `--checkpoint-every, --steps/--epochs or --resume): every rank must run the same command`,
      );
    }
  }
  /** Rank 0 alone evaluates and writes files: the others wait for it without the timeout. */
  const waitForLeader = () => trainer.barrier({ timeoutMs: Infinity });
  const sampler = new BatchSampler(encoded.length, cfg.seed);
  const shardsAt = (step: number) => {
    const indices = sampler.take(step * perStep, perStep);
    return myShards.map((k) =>
      collate(shard(indices, k, K).map((i) => encoded[i]), cfg.maxLen, tok.pad)
    );
  };
  if (cfg.dryRun) return await dryRun(trainer, shardsAt(0), total, log, t0);
  const ckptDir = join(cfg.out, "checkpoints");
  const metricsPath = join(cfg.out, "metrics.jsonl");
  const statePath = join(cfg.out, "run_state.json");
  let step = 0;
  let before: Scores | undefined;
  if (cfg.resume) {
    const ckpt = await loadLatestCheckpoint(ckptDir, configHash, (l) => leader && io.log(l));
    if (ckpt) {
      await trainer.restore(ckpt.snapshot);
      step = ckpt.snapshot.step;
      log(`resumed from step ${step}`);
    } else log("no usable checkpoint: starting from step 0");
    // Every rank must resume from the same step (one shared run folder).
    const steps = await trainer.gatherScalars([step]);
    if (steps.some((s) => s !== step)) {
      throw new Error(
        `ranks found different checkpoints (steps ${
          steps.join(", ")
        }): --out must be one folder all ranks share`,
      );
    }
    try {
      // Scores of other settings (another --eval-data, say) are not this run's "before".
      const state = JSON.parse(await Deno.readTextFile(statePath));
      if (state.configHash === configHash) before = state.before;
    } catch { /* evaluated again below */ }
  }
  // Metrics past the restored step belong to the interrupted attempt: drop them.
  if (leader) {
    const kept = step === 0
      ? []
      : await readMetrics(metricsPath).then((m) => m.filter((r) => r.step <= step));
    await writeTextAtomic(metricsPath, kept.map((r) => text(r) + "\n").join(""));
    await writeTextAtomic(
      join(cfg.out, "config.json"),
      JSON.stringify({ ...resolved, adaptedWeights: adapt.length, configHash }, null, 2) + "\n",
    );
  }
  const evaluate = async (params: Record<string, HostArray | DeviceArray>, when: string) => {
    const scores: Scores = {};
    for (const [task, items] of Object.entries(tests)) {
      scores[task] = await evaluateItems(model.config, tok, params, items, {
        template,
        maxNewTokens: cfg.evalMaxNewTokens,
        answerOf: evalData && ((output) => finalAnswer(output, pattern)),
      });
      log(`accuracy ${when} (${task}): ${pct(scores[task])}`);
    }
    return Object.keys(scores).length ? scores : undefined;
  };
  enter("evaluation before training");
  if (leader) {
    if (evalData) log(`eval data ${evalData.source}: ${evalDataLine(evalData, cfg.responseField)}`);
    // The trainer's own device arrays where it has them (no second copy of the model on the
    // device, and the evaluation programs compile once for both evaluations).
    const base = step === 0 ? trainer.deviceParams?.() : undefined;
    if (!before) before = await evaluate(base ?? model.params, "before");
    await writeTextAtomic(statePath, text({ before, configHash }));
    if (evalData && before) {
      await writeEvalRecord(
        metricsPath,
        evalRecord("before", 0, before[evalData.source], evalData),
      );
    }
  }
  await waitForLeader();

  enter("training");
  const metrics = leader ? await Deno.open(metricsPath, { append: true, create: true }) : undefined;
  const started = performance.now();
  let tokens = 0;
  let stopped = false;
  let lastSaved = step;
  let stepsAtStart = step;
  const checkpoint = async () => {
    const snapshot = await trainer.snapshot(); // a collective in mode "mpi": every rank takes it
    if (leader) {
      await saveCheckpoint(ckptDir, { snapshot, dataPosition: step * perStep, configHash });
    }
    await waitForLeader();
    lastSaved = step;
  };
  /** Steps enqueued whose losses are still on the device: their rate and token count. */
  const queued: { step: number; lr: number; tokens: number }[] = [];
  let lastDrain = 0;
  /**
   * Reads the queued steps' losses back, records and reports them, and stops on a non-finite
   * loss. Every rank calls it at the same steps; returns the ranks' stop requests.
   */
  const drain = async (): Promise<number> => {
    const rows = await trainer.readLosses();
    const steps = queued.splice(0);
    // Every rank's losses, token counts and stop request, so all ranks decide alike.
    const lossCount = steps.length * perRank;
    const mine = [...rows.flat(), ...steps.map((s) => s.tokens), io.stopRequested?.() ? 1 : 0];
    const all = await trainer.gatherScalars(mine);
    const losses = steps.map((): number[] => []);
    let stopVotes = 0;
    for (let p = 0; p < trainer.size; p++) {
      const row = all.slice(p * mine.length, (p + 1) * mine.length);
      steps.forEach((_, j) => losses[j].push(...row.slice(j * perRank, (j + 1) * perRank)));
      stopVotes += row[mine.length - 1];
    }
    const now = (performance.now() - started) / 1000;
    for (const [j, s] of steps.entries()) {
      const loss = losses[j];
      for (let p = 0; p < trainer.size; p++) {
        tokens += all[p * mine.length + lossCount + j];
      }
      const mean = loss.reduce((a, b) => a + b, 0) / loss.length;
      // The device ran the drained steps back to back: their times are spread evenly between
      // the previous read and this one.
      const elapsed = lastDrain + ((now - lastDrain) * (j + 1)) / steps.length;
      const record = {
        step: s.step,
        loss: mean,
        shardLosses: loss,
        lr: s.lr,
        seconds: +elapsed.toFixed(3),
      };
      await metrics?.write(new TextEncoder().encode(text(record) + "\n"));
      if (!loss.every(Number.isFinite)) {
        throw new NonFiniteLossError(
          `loss became ${loss.find((v) => !Number.isFinite(v))} at step ${s.step} (shard losses ${
            loss.join(", ")
          }); ` +
            (lastSaved > 0
              ? `stopped; the last good checkpoint is step ${lastSaved}. `
              : "stopped before the first checkpoint. ") +
            `Rerun with a lower --lr (now ${cfg.lr}); that changes the run's settings, so it ` +
            `starts from step 0 (--resume continues only runs with identical settings)`,
        );
      }
      const rate = tokens / Math.max(elapsed, 1e-9);
      const eta = (elapsed / (s.step - stepsAtStart)) * (total - s.step);
      if (leader) {
        io.progress?.({ step: s.step, total, loss: mean, tokensPerSecond: rate, etaSeconds: eta });
      }
    }
    lastDrain = now;
    return stopVotes;
  };
  try {
    stepsAtStart = step;
    while (step < total) {
      const shards = shardsAt(step);
      const lr = runSchedule(resolved)(step);
      await trainer.enqueue(shards).catch((e) => {
        throw explainDeviceMemory(e, cfg);
      });
      step++;
      const myTokens = shards.reduce(
        (n, s) => n + Array.from(s.mask.data).reduce((a, v) => a + v, 0),
        0,
      );
      queued.push({ step, lr, tokens: myTokens });
      // Losses are read (one sync point) every lossEvery steps, before every checkpoint (which
      // must not hold a diverged state) and at the end; a lone process also reads at once when
      // asked to stop. Ranks of a job read at the same steps: the read is a collective.
      const checkpointDue = step % cfg.checkpointEvery === 0 || step === total;
      const stopNow = trainer.size === 1 && io.stopRequested?.();
      if (!checkpointDue && !stopNow && step % cfg.lossEvery !== 0) continue;
      const stopVotes = await drain();
      if (checkpointDue) await checkpoint();
      if (stopVotes > 0) {
        if (lastSaved !== step) await checkpoint();
        log(`stopped at step ${step}; checkpoint written — continue with --resume`);
        stopped = true;
        break;
      }
    }
  } finally {
    metrics?.close();
  }
  if (stopped || !leader) {
    await trainer.close();
    return { steps: step, before, stopped, seconds: (performance.now() - t0) / 1000, leader };
  }

  enter("final evaluation");
  const finalParams = await trainer.params();
  const after = await evaluate(trainer.deviceParams?.() ?? finalParams, "after");
  if (evalData && after) {
    await writeEvalRecord(metricsPath, evalRecord("after", step, after[evalData.source], evalData));
  }
  enter("writing the run folder");
  await saveModel(join(cfg.out, "model"), model.config, finalParams, {
    ...Object.fromEntries(Object.entries(model.hfConfig).filter(([k]) => k.startsWith("dsl_"))),
    ...(cfg.template ? { dsl_template: template } : {}),
  });
  // The fine-tuned folder loads on its own: it keeps the base model's tokenizer files.
  await copyTokenizerFiles(cfg.model, join(cfg.out, "model"));
  const adapters = await trainer.adapters();
  if (adapters) {
    const lora = peftFactorsOf(adapters);
    await saveLoraAdapter(join(cfg.out, "adapter"), lora, {
      baseModel: cfg.model,
      fanInFanOut: model.config.family === "gpt2",
    });
  }
  const ranks = await rankByLayerTypeInWorkers(model.params, finalParams, adapt);
  const history = await readMetrics(metricsPath);
  await Deno.writeTextFile(
    join(cfg.out, "loss.svg"),
    lineChart([{ name: cfg.method, points: history.map((r) => [r.step, r.loss]) }], {
      title: `training loss (${cfg.method}, K = ${K}, r = ${cfg.rank})`,
      xLabel: "step",
      yLabel: "loss",
    }),
  );
  await Deno.writeTextFile(
    join(cfg.out, "rank.svg"),
    barChart(ranks.map((r) => r.layerType), [{
      name: "numerical rank of W_T − W_0",
      values: ranks.map((r) => r.meanRank),
    }], {
      title: "effective update rank per layer type (σᵢ > 1e-3·σ₁)",
      yLabel: "rank",
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const stats = trainer.stats();
  const noScore = cfg.data && !cfg.evalData ? "n/a (no --eval-data)" : "n/a";
  const wrongAfter = evalData && after ? wrongAnswers(after[evalData.source]) : [];
  const summary = `# Run summary

| | |
|---|---|
| method | ${cfg.method} (K = ${K}, r = ${cfg.rank}${cfg.alpha ? `, α = ${cfg.alpha}` : ""}) |
| model | ${cfg.model} (${model.config.family}, ${adapt.length} adapted matrices) |
| data | ${cfg.data ?? `synthetic task "${cfg.task}"`} (${train.length} training examples) |${
    evalData
      ? `\n| eval data | ${evalData.source}: ${evalDataLine(evalData, cfg.responseField)}; ` +
        `exact match of the final answer |`
      : ""
  }
| steps | ${step} × ${perStep} sequences (max length ${cfg.maxLen}) |
| accuracy before | ${before ? pct(overall(before)) : noScore} |
| accuracy after | ${after ? pct(overall(after)) : noScore} |
| final loss | ${history.at(-1)?.loss.toFixed(4) ?? "n/a"} |
| time | ${seconds.toFixed(0)} s (training ${((performance.now() - started) / 1000).toFixed(0)} s) |
| time by phase | ${phaseTimes(phases)} |
| kernels per step | ${stats.kernelsPerStep} |
| mode | ${cfg.mode}${
    stats.replicas ? ` (${stats.replicas} replicas, ${trainer.size} process(es))` : ""
  } |
| bytes communicated | ${(stats.bytesCommunicated / 1024).toFixed(1)} KiB per rank per step (${
    cfg.mode === "virtual" ? "spec cost model" : "measured"
  }), ${(stats.bytesCommunicated * step / 2 ** 20).toFixed(1)} MiB in total |${
    stats.communicationSeconds !== undefined
      ? `\n| compute / communication | ${(stats.computeSeconds! * 1000).toFixed(1)} ms / ${
        (stats.communicationSeconds * 1000).toFixed(2)
      } ms per step |`
      : ""
  }

## Effective rank of W_T − W_0 per layer type

| layer type | matrices | mean numerical rank | max | mean entropy rank | ‖ΔW‖/‖W₀‖ |
|---|---|---|---|---|---|
${
    ranks.map((r) =>
      `| ${r.layerType} | ${
        r.matrices === r.ofMatrices ? r.matrices : `${r.matrices} of ${r.ofMatrices} (sampled)`
      } | ${r.meanRank.toFixed(1)} | ${r.maxRank} | ${r.meanEntropyRank.toFixed(1)} | ${
        r.meanRelativeChange.toExponential(2)
      } |`
    ).join("\n")
  }

![loss](loss.svg) ![rank](rank.svg)
${
    before && after && Object.keys(after).length > 1
      ? `\n## Accuracy per task\n\n| task | before | after |\n|---|---|---|\n${
        Object.keys(after).map((t) => `| ${t} | ${pct(before![t])} | ${pct(after[t])} |`).join("\n")
      }\n`
      : ""
  }${
    after
      ? `\n## Samples after training\n\n${
        Object.values(after).flatMap((sc) => sc.samples.slice(0, 2)).map((s) =>
          `- **${s.query}** → ${JSON.stringify(s.output)} (answer ${s.answer})`
        ).join("\n")
      }\n`
      : ""
  }${
    wrongAfter.length
      ? `\n## Wrong answers after training (first ${wrongAfter.length})\n\n${
        wrongAnswerList(wrongAfter)
      }\n`
      : ""
  }`;
  await writeTextAtomic(join(cfg.out, "summary.md"), summary);
  const trainSeconds = history.length ? history.at(-1)!.seconds : 0;
  await trainer.close();
  return {
    steps: step,
    before,
    after,
    stopped: false,
    seconds,
    stepSeconds: medianStepSeconds(history),
    bytesPerStep: stats.bytesCommunicated,
    ranks,
    losses: history.map((r) => [r.step, r.loss] as [number, number]),
    trainSeconds,
  };
}

async function readMetrics(
  path: string,
): Promise<{ step: number; loss: number; seconds: number }[]> {
  try {
    return (await Deno.readTextFile(path)).split("\n").filter(Boolean).map((l) => JSON.parse(l))
      .filter((r) => r.eval === undefined); // evaluation records are rewritten on their own
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
}

/** Median wall time per step (robust to the first step's compilation). */
function medianStepSeconds(history: { seconds: number }[]): number {
  const d = history.slice(1).map((r, i) => r.seconds - history[i].seconds).sort((a, b) => a - b);
  return d.length ? d[Math.floor(d.length / 2)] : 0;
}

/** An out-of-memory error from the device, restated with the sizes that drive memory use. */
export function explainDeviceMemory(e: unknown, cfg: RunConfig): unknown {
  const message = e instanceof Error ? e.message : String(e);
  if (!/out of (device )?memory|out-of-memory/i.test(message)) return e;
  return new Error(
    `the device ran out of memory (${message}). Activations grow with --batch (now ${cfg.batch}) × ` +
      `--max-len (now ${cfg.maxLen}) × --devices (now ${cfg.devices}); adapter state with --rank (now ${cfg.rank}). ` +
      `Reduce --batch or --max-len first.`,
  );
}

/** One line saying which SVD initialises the adapters, per matrix shape. */
function svdChoice(method: SvdMethod, shapes: readonly number[][], k: number): string {
  const groups = new Map<string, number>();
  for (const [m, n] of shapes) {
    const how = svdMethodFor(method, [m, n], k) === "exact"
      ? "exact (Golub–Kahan, host f64)"
      : `randomised top-${k} (+${
        sketchWidth(k, OVERSAMPLE, m, n) - k
      } oversampling, 4 power iterations, device)`;
    const key = `${how} for ${m}×${n}`;
    groups.set(key, (groups.get(key) ?? 0) + 1);
  }
  return `svd ${method}: ` + [...groups].map(([key, count]) => `${key} ×${count}`).join("; ");
}

/**
 * `--dry-run`: the step's memory and work from its compiled program, then a probe (one warm-up
 * step, one timed) for the step time; nothing is written.
 */
async function dryRun(
  trainer: Trainer,
  shards: Record<string, HostArray>[],
  steps: number,
  log: (line: string) => void,
  t0: number,
): Promise<RunResult> {
  if (!trainer.plan) {
    throw new ConfigError("dryRun", "plans mode virtual's step: run it with --mode virtual");
  }
  const plan = await trainer.plan(shards);
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  log(
    `dry run: weights ${mib(plan.parameterBytes)}, adapter and optimizer state ` +
      `${mib(plan.adapterStateBytes)}, batch ${mib(plan.batchBytes)}, activations at the peak ` +
      `${mib(plan.activationPeakBytes)}; ${mib(plan.totalBytes)} in all at the peak`,
  );
  log(`largest buffer: ${plan.largestBuffer.what}, ${mib(plan.largestBuffer.bytes)}`);
  log(
    `matmul work per step: ${(plan.matmulFlops / 1e9).toFixed(3)} GFLOP in ${plan.kernels} ` +
      `kernels (${plan.pipelines} distinct pipelines to compile)`,
  );
  // The first step warms up (drivers finish compiling at the first dispatch); the second is timed.
  await trainer.step(shards);
  const p0 = performance.now();
  await trainer.step(shards);
  const seconds = (performance.now() - p0) / 1000;
  log(
    `estimated step time ${seconds.toFixed(3)} s (one timed step; ${
      (plan.matmulFlops / seconds / 1e9).toFixed(1)
    } GFLOP/s): ${steps} steps ≈ ${(seconds * steps / 60).toFixed(1)} min`,
  );
  await trainer.close();
  return { steps: 0, stopped: false, dryRun: true, seconds: (performance.now() - t0) / 1000 };
}
