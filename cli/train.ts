/**
 * `deno task train [flags]`: fine-tunes a model with HD-PiSSA (default) or a baseline. With no
 * flags it runs the embedded default: the shipped base model, HD-PiSSA with K = 4 virtual devices
 * on the synthetic GSM8K-style task, accuracy before and after. `--help` lists every flag.
 */

import { parseArgs } from "node:util";
import {
  ConfigError,
  DEFAULT_RUN,
  kebab,
  type RunConfig,
  validateRun,
} from "../runtime/train/config.ts";
import { METHODS } from "../dsl/adapters/methods/registry.ts";
import { NonFiniteLossError, type RunPhase, runTraining } from "../runtime/train/run.ts";

const HELP = `deno task train [--config run.json] [flags]

  --method NAME                      ${Object.keys(METHODS).join("|")}
                                     (default ${DEFAULT_RUN.method}; docs/training.md)
  --devices K                        shards / devices (default ${DEFAULT_RUN.devices})
  --rank r                           adapter rank per device (default ${DEFAULT_RUN.rank})
  --alpha a                          LoRA/PiSSA scale α (s = α/r; default α = r)
  --rs-lora                          rsLoRA scaling s = α/√r for the LoRA-family methods
  --lr x                             peak learning rate (default ${DEFAULT_RUN.lr})
  --schedule cosine|constant|linear  learning-rate schedule with warm-up (default ${DEFAULT_RUN.schedule})
  --warmup f                         warm-up fraction of the steps (default ${DEFAULT_RUN.warmup})
  --steps N | --epochs E             training length (default ${DEFAULT_RUN.steps} steps)
  --batch b                          sequences per device per step (default ${DEFAULT_RUN.batch})
  --max-len T                        tokens per sequence (default ${DEFAULT_RUN.maxLen})
  --model DIR                        Hugging Face folder: config.json, model.safetensors, tokenizer (default ${DEFAULT_RUN.model})
  --data FILE.jsonl                  instruction data (fields --query-field, --response-field)
  --template alpaca|compact|chat     prompt format (default: the model's, else alpaca); chat renders
                                     the model's chat_template (tokenizer_config.json), loss on the
                                     assistant turn through its end-of-turn token
  --task NAME                        synthetic task when no --data (default ${DEFAULT_RUN.task})
  --train-size N, --eval-size N      examples to train on / to score before and after
  --eval-data FILE.jsonl             score the first --eval-size records (default ${DEFAULT_RUN.evalSize}) of this
                                     file before and after: exact match of the final answer
                                     ("The answer is: N", "#### N", \\boxed{N}; numbers normalised)
  --answer-regex RE                  the final answer in --eval-data responses and generations:
                                     RE's first capture group, last match (flag m)
  --eval-max-new-tokens N            tokens generated per eval item (default: the longest
                                     reference response's + 8)
  --adapt a,b,…                      module names to adapt (default all attention and MLP projections)
  --mode virtual|devices|mpi         where the K shards run (default ${DEFAULT_RUN.mode}): one device,
                                     K devices in this process, or one process per rank under mpirun
  --svd auto|exact|randomized        adapter initialisation: exact SVD on the host, randomised
                                     (Halko) on the device, or auto: exact where m·n·min(m,n) ≤ 512³,
                                     randomised top-(K·r + 10) otherwise (default auto; printed)
  --verify-replicas-every N          distributed modes: hash W on every replica every N steps
  --comm-timeout S                   mode mpi: stop the job if a peer is silent for S s (default 600)
  --out DIR                          run folder (default ${DEFAULT_RUN.out})
  --checkpoint-every N               steps between checkpoints (default ${DEFAULT_RUN.checkpointEvery})
  --loss-every N                     read the losses back every N steps; between reads the device
                                     runs ahead of the host (default ${DEFAULT_RUN.lossEvery})
  --resume                           continue from the newest valid checkpoint in --out
  --dry-run                          print the step's memory plan (weights, adapter state, batch,
                                     activation peak, largest buffer), its matmul work and a probed
                                     step time, then stop (mode virtual; writes nothing)
  --checkpoint-activations           recompute each decoder block's activations in the backward
                                     pass: a lower activation peak for one more forward pass
  --autotune                         time each matmul shape class's candidate kernels on this
                                     device at compile time and keep the fastest (cached per
                                     adapter in ~/.cache/hdpissa/autotune.json; $HDPISSA_CACHE_DIR)
  --frozen-dtype auto|f32|bf16|f16   frozen weights on the device: packed in 16 bits (half the
                                     bytes, widened in the kernels) or f32; auto: the checkpoint's
                                     own dtype when it is BF16 or F16, else f32 (default auto)
  --seed s                           seed for data order and initialisation (default ${DEFAULT_RUN.seed})
`;

const NUMERIC = new Set([
  "devices",
  "rank",
  "alpha",
  "lr",
  "warmup",
  "steps",
  "epochs",
  "batch",
  "maxLen",
  "trainSize",
  "evalSize",
  "seed",
  "checkpointEvery",
  "lossEvery",
  "verifyReplicasEvery",
  "commTimeout",
  "evalMaxNewTokens",
]);
const fields = Object.keys(DEFAULT_RUN).concat([
  "alpha",
  "epochs",
  "data",
  "template",
  "verifyReplicasEvery",
  "commTimeout",
  "dryRun",
  "checkpointActivations",
  "autotune",
  "evalData",
  "answerRegex",
  "evalMaxNewTokens",
  "rsLora",
  "frozenDtype",
]);

/** Keys a run folder's config.json records beside the settings. */
const RECORD_ONLY = ["adaptedWeights", "configHash"];

function parse(args: string[]): RunConfig {
  const options: Record<string, { type: "string" | "boolean" }> = {
    config: { type: "string" },
    help: { type: "boolean" },
  };
  const flags = ["resume", "dryRun", "checkpointActivations", "rsLora", "autotune"];
  for (const f of fields) options[kebab(f)] = { type: flags.includes(f) ? "boolean" : "string" };
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args, options, strict: true }));
  } catch (e) {
    throw new Error(`${(e as Error).message} (see --help)`);
  }
  if (values.help) {
    console.log(HELP);
    Deno.exit(0);
  }
  let cfg: Record<string, unknown> = { ...DEFAULT_RUN };
  if (typeof values.config === "string") {
    const file = JSON.parse(Deno.readTextFileSync(values.config));
    // A run folder's config.json feeds back as is: its record-only keys are dropped.
    for (const k of RECORD_ONLY) delete file[k];
    for (const k of Object.keys(file)) {
      if (!fields.includes(k)) {
        throw new ConfigError("config", `unknown field "${k}" in ${values.config}`);
      }
    }
    cfg = { ...cfg, ...file };
  }
  for (const f of fields) {
    const v = values[kebab(f)];
    if (v === undefined) continue;
    if (f === "adapt") cfg.adapt = String(v).split(",");
    else if (NUMERIC.has(f)) {
      const n = Number(v);
      if (v === "" || !Number.isFinite(n)) {
        throw new ConfigError(kebab(f), `expects a number (got "${v}")`);
      }
      cfg[f] = n;
    } else cfg[f] = v;
  }
  if (values.epochs !== undefined && values.steps === undefined) cfg.steps = 1;
  return validateRun(cfg as unknown as RunConfig);
}

if (import.meta.main) {
  let cfg: RunConfig;
  try {
    cfg = parse(Deno.args);
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    Deno.exit(2);
  }
  let stop = false;
  let phase: RunPhase = "loading the model";
  const onSigint = () => {
    if (stop) Deno.exit(130);
    if (phase !== "training") {
      // Nothing to save before training; after it, the last step's checkpoint is on disk.
      const after = phase === "final evaluation" || phase === "writing the run folder";
      console.error(
        `\ninterrupt during ${phase}: stopped` +
          (after ? ` (training finished; its checkpoint is in ${cfg.out}/checkpoints)` : ""),
      );
      Deno.exit(130);
    }
    stop = true;
    console.error("\ninterrupt: writing a checkpoint after this step (Ctrl-C again to quit now)");
  };
  Deno.addSignalListener("SIGINT", onSigint);
  // Under mpirun a Ctrl-C reaches the ranks as SIGTERM: the same graceful stop.
  Deno.addSignalListener("SIGTERM", onSigint);
  const tty = Deno.stdout.isTerminal();
  const encoder = new TextEncoder();
  let lastLine = 0;
  try {
    const result = await runTraining(cfg, {
      log: (line) => console.log(tty ? `\r\x1b[2K${line}` : line),
      progress: ({ step, total, loss, tokensPerSecond, etaSeconds }) => {
        const status = `step ${step}/${total}  loss ${loss.toFixed(4)}  ${
          tokensPerSecond.toFixed(0)
        } tok/s  ETA ${etaSeconds.toFixed(0)} s`;
        if (tty) {
          const width = 24, done = Math.round((width * step) / total);
          Deno.stdout.writeSync(
            encoder.encode(`\r\x1b[2K[${"#".repeat(done)}${".".repeat(width - done)}] ${status}`),
          );
        } else if (step === total || performance.now() - lastLine > 5000) {
          console.log(status);
          lastLine = performance.now();
        }
      },
      stopRequested: () => stop,
      phase: (name) => (phase = name),
    });
    if (tty) console.log();
    if (result.dryRun) Deno.exit(0);
    if (!result.stopped && result.leader !== false) {
      console.log(await Deno.readTextFile(`${cfg.out}/summary.md`));
      console.log(`run folder: ${cfg.out}`);
    }
    Deno.exit(result.stopped ? 130 : 0);
  } catch (e) {
    if (tty) console.log();
    console.error(`error: ${(e as Error).message}`);
    Deno.exit(e instanceof NonFiniteLossError ? 3 : e instanceof ConfigError ? 2 : 1);
  }
}
