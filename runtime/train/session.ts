/**
 * A fine-tuning session driven step by step, as an interactive front end (the browser app in
 * web/) needs it: a loaded model and instruction examples, the trainer of `deno task train`
 * (same batches: a seeded `BatchSampler`, K shards of `batch` sequences collated to `maxLen`,
 * response-only loss), live loss and update-rank records, stop and resume from an in-memory
 * snapshot, and the merged model and PEFT adapter as file bytes. Nothing here touches the file
 * system.
 */

import type { HostArray } from "../../dsl/host_array.ts";
import type { LayerTypeRank } from "../../dsl/linalg/rank.ts";
import { rankByLayerTypeInWorkers } from "../linalg/rank_workers.ts";
import { conv1dWeights, lmLoss } from "../../dsl/nn/transformer.ts";
import { adaptedWeights, DEFAULT_RUN, frozenStorageFor, runSchedule } from "./config.ts";
import type { Schedule } from "../../dsl/optim.ts";
import type { Tensor } from "../../dsl/trace.ts";
import {
  BatchSampler,
  collate,
  type EncodedExample,
  encodeExample,
  type Example,
  shard,
} from "../data/instruct.ts";
import {
  type LoadedModel,
  modelFileBytes,
  type ModelFiles,
  tokenizerFileBytes,
} from "../models/model_bytes.ts";
import { loraAdapterFileBytes, peftFactorsOf } from "../models/peft_format.ts";
import { createTrainer } from "../trainer.ts";
import type { Method, Trainer, TrainerSnapshot } from "../trainer_common.ts";

/** What a session trains and how; the defaults are `deno task train`'s. */
export interface SessionSettings {
  /** hdpissa, pissa, lora or full. */
  method: Method;
  /** Shards K (virtual devices on this GPU). */
  devices: number;
  /** Adapter rank r (per shard for HD-PiSSA); ignored by "full". */
  rank: number;
  /** Steps to train. */
  steps: number;
  /** Peak learning rate. */
  lr: number;
  /** Learning-rate schedule (default "cosine", with `warmup` of the steps warming up). */
  schedule?: "cosine" | "linear" | "constant";
  /** Fraction of the steps spent warming up (default 0.03). */
  warmup?: number;
  /** Sequences per shard per step (default 4). */
  batch?: number;
  /** Sequence length in tokens (default 192, at most the model's context). */
  maxLen?: number;
  /** Seed of the data order and of LoRA's initialisation (default 0). */
  seed?: number;
  /** Prompt template (default: the model's). */
  template?: string;
  /** Module names to adapt (default: every attention and MLP projection). */
  adapt?: string[];
  /** Measure the update rank every this many steps (default: about 10 times a run; 0: never). */
  rankEvery?: number;
}

/** Module names adapted by default (Llama and GPT-2 projections), as `deno task train`. */
export const DEFAULT_ADAPT: readonly string[] = DEFAULT_RUN.adapt;

/** One step's mean loss over the shards and the wall time since the run started. */
export interface LossRecord {
  /** 1-based step. */
  step: number;
  /** Mean of the shards' losses. */
  loss: number;
  /** Seconds of training so far (compilation included). */
  seconds: number;
}

/** The rank of the update W − W₀ of every adapted matrix, per layer type, after `step` steps. */
export interface RankRecord {
  /** Steps taken. */
  step: number;
  /** Per layer type (q_proj, up_proj, …): mean and max numerical rank, entropy rank, change. */
  byType: LayerTypeRank[];
}

/** Where a session stands. */
export type SessionState = "ready" | "running" | "stopped" | "done" | "closed";

/** Settings that change the learning rate; changing one rebuilds the trainer on resume. */
const LR_FIELDS = ["steps", "lr", "schedule", "warmup"] as const;

function scheduleOf(s: SessionSettings): Schedule {
  return runSchedule({
    lr: s.lr,
    steps: s.steps,
    warmup: s.warmup ?? 0.03,
    schedule: s.schedule ?? "cosine",
  });
}

/** Whether any response token of `e` is a target within the first `maxLen` positions. */
function carriesLoss(e: EncodedExample, maxLen: number): boolean {
  return e.weights.slice(1, maxLen + 1).some((w) => w > 0);
}

function positiveInteger(name: string, v: number | undefined, min = 1): void {
  if (!Number.isInteger(v) || (v as number) < min) {
    throw new Error(`${name} must be an integer ≥ ${min} (got ${v})`);
  }
}

/**
 * A fine-tuning job on one model and one data set. `run()` trains until `steps` or until
 * `stop()`; `resume()` continues from the step it stopped at (with new steps, learning rate or
 * schedule if given: the trainer is then rebuilt and restored from the snapshot taken at the
 * stop).
 *
 * @example
 * const model = await loadModelFiles(urlFiles("models/base/"));
 * const session = await FineTuneSession.create(model, parseJsonl(text), {
 *   method: "hdpissa", devices: 4, rank: 4, steps: 50, lr: 2e-3,
 * });
 * await session.run((s) => console.log(s.losses.at(-1)));
 * const files = await session.mergedModelFiles(urlFiles("models/base/"));
 */
export class FineTuneSession {
  /** Every step's loss so far. */
  readonly losses: LossRecord[] = [];
  /** Update-rank measurements so far (step 0 is the untrained model: rank 0). */
  readonly ranks: RankRecord[] = [];
  /** The snapshot taken when the last run stopped (state kept in memory for `resume`). */
  snapshot?: TrainerSnapshot;
  /** Where the session stands. */
  state: SessionState = "ready";
  /** Names of the adapted weights. */
  readonly adapt: string[];
  /** Examples whose response is cut away entirely by `maxLen` (they carry no loss). */
  readonly truncated: number;
  private trainer: Trainer;
  private stopRequested = false;
  private current?: Promise<SessionState>;
  private seconds = 0;
  private readonly sampler: BatchSampler;

  private constructor(
    readonly model: LoadedModel,
    private readonly encoded: EncodedExample[],
    /** The settings in force (updated by `resume`). */
    readonly settings: Required<SessionSettings>,
    adapt: string[],
    private readonly before: Record<string, HostArray>,
    trainer: Trainer,
  ) {
    this.adapt = adapt;
    this.trainer = trainer;
    this.sampler = new BatchSampler(encoded.length, settings.seed);
    this.truncated = encoded.filter((e) => !carriesLoss(e, settings.maxLen)).length;
  }

  /** Checks the settings, encodes the examples and builds the trainer (the initial SVD). */
  static async create(
    model: LoadedModel,
    examples: readonly Example[],
    settings: SessionSettings,
  ): Promise<FineTuneSession> {
    const s = {
      schedule: "cosine",
      warmup: 0.03,
      batch: 4,
      maxLen: Math.min(192, model.config.context),
      seed: 0,
      template: model.template,
      adapt: DEFAULT_ADAPT,
      rankEvery: Math.max(1, Math.round(settings.steps / 10)),
      // Fields given as undefined take the default.
      ...Object.fromEntries(Object.entries(settings).filter(([, v]) => v !== undefined)),
    } as Required<SessionSettings>;
    positiveInteger("steps", s.steps);
    positiveInteger("devices (K)", s.devices);
    positiveInteger("batch", s.batch);
    positiveInteger("rankEvery", s.rankEvery, 0);
    if (s.method !== "full") positiveInteger("rank (r)", s.rank);
    if (!(s.lr > 0)) throw new Error(`learning rate must be > 0 (got ${s.lr})`);
    if (!(s.warmup >= 0 && s.warmup <= 1)) {
      throw new Error(`warmup must be a fraction in [0, 1] (got ${s.warmup})`);
    }
    if (!Number.isInteger(s.maxLen) || s.maxLen < 2 || s.maxLen > model.config.context) {
      throw new Error(
        `maxLen must be an integer in [2, ${model.config.context}] (got ${s.maxLen})`,
      );
    }
    if (examples.length === 0) throw new Error("no training examples");
    const encoded = examples.map((ex) => encodeExample(model.tokenizer, ex, s.template));
    if (encoded.every((e) => !carriesLoss(e, s.maxLen))) {
      throw new Error(
        `maxLen ${s.maxLen} cuts every example before its response (the shortest prompt and ` +
          `response take ${Math.min(...encoded.map((e) => e.tokens.length))} tokens): raise maxLen`,
      );
    }
    const adapt = adaptedWeights(model.params, s.adapt);
    if (adapt.length === 0) {
      throw new Error(`no 2-D weights named ${s.adapt.join(", ")} in the model`);
    }
    const before = Object.fromEntries(
      adapt.map((n) => [n, { ...model.params[n], data: model.params[n].data.slice() }]),
    );
    const trainer = await FineTuneSession.trainerFor(model, adapt, s);
    const session = new FineTuneSession(model, encoded, s, adapt, before, trainer);
    if (s.rankEvery > 0) {
      // Before training W − W₀ = 0: rank 0 for every matrix.
      const types = adapt.map((n) => n.replace(/\.weight$/, "").split(".").at(-1)!);
      session.ranks.push({
        step: 0,
        byType: [...Map.groupBy(types, (t) => t)].map(([layerType, { length }]) => ({
          layerType,
          matrices: length,
          ofMatrices: length,
          meanRank: 0,
          meanEntropyRank: 0,
          maxRank: 0,
          meanRelativeChange: 0,
        })),
      });
    }
    return session;
  }

  /** A trainer for `s` on the model (what `create` and a rebuilding `resume` use). */
  private static trainerFor(
    model: LoadedModel,
    adapt: string[],
    s: Required<SessionSettings>,
  ): Promise<Trainer> {
    return createTrainer({
      loss: (p: Record<string, Tensor>, b: { ids: Tensor; targets: Tensor; mask: Tensor }) =>
        lmLoss(model.config, p, b),
      params: model.params,
      adapt,
      fanInFanOut: conv1dWeights(model.config).filter((n) => adapt.includes(n)),
      method: s.method,
      devices: s.devices,
      rank: s.rank,
      optimizer: { lr: scheduleOf(s) },
      svd: { method: "auto", seed: s.seed },
      seed: s.seed,
      // A BF16/F16 checkpoint's frozen weights stay in its dtype on the device (lossless).
      frozenStorage: frozenStorageFor("auto", model.floatDType),
    });
  }

  /** Steps taken. */
  get step(): number {
    return this.trainer.stats().step;
  }

  /** The K shards' batches of 0-based step `step` (batch t depends only on the seed and t). */
  batchesAt(step: number): Record<string, HostArray>[] {
    const { devices: K, batch, maxLen } = this.settings;
    const indices = this.sampler.take(step * K * batch, K * batch);
    return Array.from(
      { length: K },
      (_, k) =>
        collate(shard(indices, k, K).map((i) => this.encoded[i]), maxLen, this.model.tokenizer.pad),
    );
  }

  /**
   * Trains until `settings.steps` or a `stop()`; `onStep` is called after every step (and after
   * each rank measurement). On a stop, the trainer's snapshot is kept in `snapshot`.
   */
  run(onStep?: (session: FineTuneSession) => void | Promise<void>): Promise<SessionState> {
    if (this.state === "running" || this.state === "closed") {
      return Promise.reject(new Error(`the session is ${this.state}`));
    }
    this.state = "running";
    this.stopRequested = false;
    this.current = this.loop(onStep);
    return this.current;
  }

  /** The steps of one `run`, until done, a stop or an error. */
  private async loop(
    onStep?: (session: FineTuneSession) => void | Promise<void>,
  ): Promise<SessionState> {
    try {
      while (this.step < this.settings.steps && !this.stopRequested) {
        const t0 = performance.now();
        const { loss } = await this.trainer.step(this.batchesAt(this.step));
        this.seconds += (performance.now() - t0) / 1000;
        const mean = loss.reduce((a, b) => a + b, 0) / loss.length;
        this.losses.push({ step: this.step, loss: mean, seconds: this.seconds });
        if (!Number.isFinite(mean)) {
          throw new Error(
            `step ${this.step}: the loss is ${mean} (lower the learning rate, or check that the ` +
              `responses fit in maxLen ${this.settings.maxLen})`,
          );
        }
        const every = this.settings.rankEvery;
        const last = this.step === this.settings.steps;
        if (every > 0 && (this.step % every === 0 || last || this.stopRequested)) {
          await this.measureRank();
        }
        await onStep?.(this);
      }
    } catch (e) {
      this.state = "stopped";
      throw e;
    }
    if (this.step >= this.settings.steps) {
      this.state = "done";
    } else {
      this.state = "stopped";
      this.snapshot = await this.trainer.snapshot();
    }
    return this.state;
  }

  /** Asks `run` to stop after the step in progress. */
  stop(): void {
    this.stopRequested = true;
  }

  /**
   * Continues a stopped (or finished) session from the step it reached. New `steps`, `lr`,
   * `schedule` or `warmup` rebuild the trainer with them and restore the snapshot into it, so
   * training continues from the same step with the same weights and optimizer state.
   */
  async resume(
    changes: Partial<Pick<SessionSettings, "steps" | "lr" | "schedule" | "warmup">> = {},
    onStep?: (session: FineTuneSession) => void | Promise<void>,
  ): Promise<SessionState> {
    if (this.state !== "stopped" && this.state !== "done") {
      throw new Error(`resume: the session is ${this.state}, not stopped`);
    }
    const changed = LR_FIELDS.filter((k) =>
      changes[k] !== undefined && changes[k] !== this.settings[k]
    );
    if (changed.length) {
      const next = { ...this.settings, ...changes } as Required<SessionSettings>;
      positiveInteger("steps", next.steps);
      if (!(next.lr > 0)) throw new Error(`learning rate must be > 0 (got ${next.lr})`);
      const snap = this.snapshot ?? await this.trainer.snapshot();
      const trainer = await FineTuneSession.trainerFor(this.model, this.adapt, next);
      try {
        await trainer.restore(snap);
      } catch (e) {
        await trainer.close();
        throw e;
      }
      await this.trainer.close();
      this.trainer = trainer;
      Object.assign(this.settings, next);
    }
    return await this.run(onStep);
  }

  /** Measures the rank of every adapted matrix's update now (see `ranks`). */
  async measureRank(): Promise<RankRecord> {
    const last = this.ranks.at(-1);
    if (last?.step === this.step) return last;
    const after = await this.trainer.params();
    const byType = await rankByLayerTypeInWorkers(this.before, after, this.adapt);
    const record = { step: this.step, byType };
    this.ranks.push(record);
    return record;
  }

  /**
   * The fine-tuned model as a folder's files: config.json and model.safetensors (what
   * `saveModel` writes, keeping the base's `dsl_*` settings) plus the tokenizer files `source`
   * (the base folder) holds.
   */
  async mergedModelFiles(source?: ModelFiles): Promise<Record<string, Uint8Array>> {
    const params = await this.trainer.params();
    const extra = Object.fromEntries(
      Object.entries(this.model.hfConfig).filter(([k]) => k.startsWith("dsl_")),
    );
    if (this.settings.template !== this.model.template) extra.dsl_template = this.settings.template;
    return {
      ...(await modelFileBytes(this.model.config, params, extra)),
      ...(source ? await tokenizerFileBytes(source) : {}),
    };
  }

  /**
   * The PEFT LoRA adapter (adapter_model.safetensors, adapter_config.json) of LoRA and PiSSA
   * (PiSSA converted to a LoRA on the original weights); undefined for HD-PiSSA and full
   * fine-tuning, whose result is the merged model.
   */
  async adapterFiles(baseModel?: string): Promise<Record<string, Uint8Array> | undefined> {
    const adapters = await this.trainer.adapters();
    if (!adapters) return undefined;
    const lora = peftFactorsOf(adapters);
    return await loraAdapterFileBytes(lora, {
      baseModel,
      fanInFanOut: this.model.config.family === "gpt2",
    });
  }

  /** Frees the trainer's device state; the session cannot run again. */
  async close(): Promise<void> {
    if (this.state === "closed") return;
    this.stop();
    await this.current?.catch(() => {});
    this.state = "closed";
    await this.trainer.close();
  }
}
