/**
 * The training job's configuration: defaults (the embedded default run), a JSON config file,
 * command-line flags on top, and validation that names the field and its allowed range.
 */

import { constantSchedule, type Schedule, warmupCosine, warmupLinear } from "../../dsl/optim.ts";
import { answerPattern } from "../data/answers.ts";
import { isTemplate } from "../data/instruct.ts";
import type { Method } from "../trainer.ts";
import { METHODS } from "../../dsl/adapters/methods/registry.ts";
import type { HostArray } from "../../dsl/host_array.ts";
import type { PackedFormat } from "../../compiler/mod.ts";

/**
 * The 2-D weights among `params` whose module (the name's last part before `.weight`) is one of
 * `modules`: what `--adapt q_proj,v_proj` selects.
 */
export function adaptedWeights(
  params: Record<string, HostArray>,
  modules: readonly string[],
): string[] {
  return Object.keys(params).filter((n) => {
    const module = n.replace(/\.weight$/, "").split(".").at(-1)!;
    return n.endsWith(".weight") && params[n].shape.length === 2 && modules.includes(module);
  });
}

export interface RunConfig {
  method: Method;
  devices: number;
  rank: number;
  alpha?: number;
  /** rsLoRA: scale the LoRA-family adapters by α/√r instead of α/r. */
  rsLora?: boolean;
  lr: number;
  schedule: "cosine" | "constant" | "linear";
  /** Fraction of steps spent warming up. */
  warmup: number;
  steps: number;
  epochs?: number;
  /** Sequences per device per step. */
  batch: number;
  maxLen: number;
  model: string;
  /** Synthetic task name (when no data file is given). */
  task: string;
  data?: string;
  queryField: string;
  responseField: string;
  /**
   * Prompt format: "alpaca", "compact", "chat" (the model's chat template; the loss falls on the
   * assistant turn) or a text with `{query}`. Default: the model's (`dsl_template`, else alpaca).
   */
  template?: string;
  trainSize: number;
  /** Items scored before and after training (with `evalData`: the first records of the file). */
  evalSize: number;
  /** JSONL scored before and after training by exact match of the final answer (`answers.ts`). */
  evalData?: string;
  /** The final answer's pattern in `evalData` (first capture group); default MetaMathQA/GSM8K's. */
  answerRegex?: string;
  /** Most tokens generated per eval item (default: the longest reference response's + 8). */
  evalMaxNewTokens?: number;
  mode: "virtual" | "devices" | "mpi";
  out: string;
  resume: boolean;
  seed: number;
  checkpointEvery: number;
  /**
   * Read the losses back every N steps (and at checkpoints, at the end and on a stop request):
   * between reads they stay on the device, so the host encodes the next step while the device
   * runs this one. A non-finite loss is still reported at the step it happened.
   */
  lossEvery: number;
  /** Adapt these module names (default: every attention and MLP projection). */
  adapt: string[];
  /**
   * How adapters are initialised from W: exact SVD (host, f64), randomised (device), or "auto":
   * exact where cheap, randomised otherwise (the choice is printed).
   */
  svd: "auto" | "exact" | "randomized";
  /** Distributed modes: compare hashes of W across replicas every N steps (debug). */
  verifyReplicasEvery?: number;
  /** Mode "mpi": seconds a collective may wait for a peer before the job stops. */
  commTimeout?: number;
  /** Plan and probe the step (memory, work, step time), then stop without training. */
  dryRun?: boolean;
  /** Recompute each decoder block's activations in the backward pass (less memory). */
  checkpointActivations?: boolean;
  /**
   * Time the candidate matmul kernels of the step's shape classes when it compiles and keep the
   * fastest (runtime/autotune.ts), cached per adapter in `~/.cache/hdpissa/autotune.json`.
   */
  autotune?: boolean;
  /**
   * The frozen weights' storage on the device: f32, bf16 or f16 (packed, half the bytes), or
   * "auto" (default): the checkpoint's own when it is stored in BF16 or F16, else f32.
   */
  frozenDtype?: "auto" | "f32" | PackedFormat;
}

/** The trainer's `frozenStorage` for a run's `--frozen-dtype` and its checkpoint's float dtype. */
export function frozenStorageFor(
  choice: RunConfig["frozenDtype"],
  checkpoint: "F32" | "F16" | "BF16" | undefined,
): "f32" | PackedFormat {
  if (choice !== undefined && choice !== "auto") return choice;
  return checkpoint === "BF16" ? "bf16" : checkpoint === "F16" ? "f16" : "f32";
}

/**
 * `deno task train` with no flags: HD-PiSSA teaches the shipped base the rank suite's cipher
 * (0% → ~100% on held-out words in about 5 minutes on 2 CPU cores; docs/training.md). The
 * shipped base learns none of the arithmetic tasks in such a budget. `maxLen` fits the cipher's
 * 63-token items; longer data needs --max-len (the run says how many examples it cuts).
 */
export const DEFAULT_RUN: RunConfig = {
  method: "hdpissa",
  devices: 4,
  rank: 4,
  lr: 5e-3,
  schedule: "cosine",
  warmup: 0.03,
  steps: 300,
  batch: 4,
  maxLen: 64,
  model: "models/base",
  task: "cipher",
  queryField: "query",
  responseField: "response",
  trainSize: 4000,
  evalSize: 64,
  mode: "virtual",
  svd: "auto",
  out: "runs/default",
  resume: false,
  seed: 0,
  checkpointEvery: 50,
  lossEvery: 10,
  adapt: [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "c_attn",
    "c_proj",
    "c_fc",
  ],
};

export class ConfigError extends Error {
  constructor(field: string, message: string) {
    super(`--${field}: ${message}`);
    this.name = "ConfigError";
  }
}

const INT_FIELDS = {
  devices: [1, 64],
  rank: [1, 4096],
  steps: [1, 1e7],
  epochs: [1, 1e4],
  batch: [1, 4096],
  maxLen: [8, 1 << 16],
  trainSize: [1, 1e8],
  evalSize: [0, 1e6],
  seed: [-(2 ** 31), 2 ** 31 - 1],
  checkpointEvery: [1, 1e7],
  lossEvery: [1, 1e7],
  verifyReplicasEvery: [1, 1e7],
  commTimeout: [1, 1e6],
  evalMaxNewTokens: [1, 1 << 16],
} as const;

/** Integer fields that may be left out. */
const OPTIONAL_INTS = ["epochs", "verifyReplicasEvery", "commTimeout", "evalMaxNewTokens"];

/** Checks every field; returns the config. */
export function validateRun(c: RunConfig): RunConfig {
  const methods = Object.keys(METHODS);
  if (!methods.includes(c.method)) {
    throw new ConfigError("method", `must be one of ${methods.join(", ")} (got ${c.method})`);
  }
  for (const [k, [lo, hi]] of Object.entries(INT_FIELDS)) {
    const v = (c as unknown as Record<string, unknown>)[k];
    if (v === undefined && OPTIONAL_INTS.includes(k)) continue;
    if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) {
      throw new ConfigError(kebab(k), `must be an integer in [${lo}, ${hi}] (got ${v})`);
    }
  }
  if (!(c.lr > 0 && c.lr < 10)) throw new ConfigError("lr", `must be in (0, 10) (got ${c.lr})`);
  if (c.alpha !== undefined && !(c.alpha > 0)) {
    throw new ConfigError("alpha", `must be > 0 (got ${c.alpha})`);
  }
  if (!["cosine", "constant", "linear"].includes(c.schedule)) {
    throw new ConfigError("schedule", `must be cosine, constant or linear (got ${c.schedule})`);
  }
  if (!(c.warmup >= 0 && c.warmup < 1)) {
    throw new ConfigError("warmup", `must be in [0, 1) (got ${c.warmup})`);
  }
  if (c.frozenDtype !== undefined && !["auto", "f32", "bf16", "f16"].includes(c.frozenDtype)) {
    throw new ConfigError("frozen-dtype", `must be auto, f32, bf16 or f16 (got ${c.frozenDtype})`);
  }
  if (!["auto", "exact", "randomized"].includes(c.svd)) {
    throw new ConfigError("svd", `must be auto, exact or randomized (got ${c.svd})`);
  }
  if (c.template !== undefined && (typeof c.template !== "string" || !isTemplate(c.template))) {
    throw new ConfigError(
      "template",
      `must be alpaca, compact, chat or a prompt containing {query} (got ${
        JSON.stringify(c.template)
      })`,
    );
  }
  if (c.answerRegex !== undefined) {
    if (c.evalData === undefined) {
      throw new ConfigError("answer-regex", "reads the answers of --eval-data: give that file too");
    }
    try {
      answerPattern(c.answerRegex);
    } catch (e) {
      throw new ConfigError("answer-regex", (e as Error).message);
    }
  }
  if (!["virtual", "devices", "mpi"].includes(c.mode)) {
    throw new ConfigError("mode", `must be virtual, devices or mpi (got ${c.mode})`);
  }
  return c;
}

export const kebab = (k: string) => k.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());

/** The learning-rate schedule of a run: `lr` with a warm-up over `warmup` of the `steps`. */
export function runSchedule(
  cfg: Pick<RunConfig, "lr" | "steps" | "warmup" | "schedule">,
): Schedule {
  const warm = Math.round(cfg.warmup * cfg.steps);
  if (cfg.schedule === "constant") return constantSchedule(cfg.lr);
  return cfg.schedule === "linear"
    ? warmupLinear(cfg.lr, warm, cfg.steps)
    : warmupCosine(cfg.lr, warm, cfg.steps);
}
