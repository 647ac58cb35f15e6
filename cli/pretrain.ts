/**
 * `deno task pretrain`: trains the shipped base model from scratch on the offline corpus and
 * writes it to runs/pretrain (config.json, model.safetensors, training_log.jsonl); `--out models/base`
 * replaces the shipped model, which the default leaves untouched.
 * Deterministic: the same flags on the same adapter give the same weights.
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { BASE_CONFIG } from "../runtime/models/base_config.ts";
import { initParams, parameterCount } from "../dsl/nn/transformer.ts";
import { adamInit, warmupCosine } from "../dsl/optim.ts";
import { array } from "../dsl/host_array.ts";
import { corpusSplit } from "../runtime/data/corpus.ts";
import { evaluationWindows, PretrainStream } from "../runtime/data/pretrain_data.ts";
import { adamTrainStep, nllSum, perplexity } from "../runtime/models/lm_steps.ts";
import { saveModel } from "../runtime/models/model_dir.ts";
import { ByteTokenizer } from "../runtime/text/tokenizer.ts";
import { gpu } from "../runtime/device.ts";
import { toDevice, toHost } from "../runtime/jit.ts";
import { writeTextAtomic } from "../runtime/io/atomic.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    out: { type: "string", default: "runs/pretrain" },
    steps: { type: "string", default: "1200" },
    batch: { type: "string", default: "16" },
    lr: { type: "string", default: "3e-3" },
    seed: { type: "string", default: "0" },
    "eval-batches": { type: "string", default: "20" },
    help: { type: "boolean", default: false },
  },
});
if (flags.help) {
  console.log(`deno task pretrain [--out DIR] [--steps N] [--batch B] [--lr LR] [--seed S]
Trains the byte-level base model on the State of the Union corpus (held out: 2014 on) mixed with
instruction-formatted corpus sentences, then reports held-out perplexity.`);
  Deno.exit(0);
}
const steps = Number(flags.steps);
const batch = Number(flags.batch);
const peak = Number(flags.lr);
const seed = Number(flags.seed);
for (const [name, v] of Object.entries({ steps, batch, lr: peak })) {
  if (!(v > 0)) throw new Error(`--${name} must be a positive number (got ${v})`);
}

const cfg = BASE_CONFIG;
const tok = new ByteTokenizer();
const device = await gpu();
console.log(
  `device: ${device.info.description ?? device.info.vendor} | model: ${
    parameterCount(cfg)
  } parameters`,
);
const { train, heldOut } = corpusSplit();
const stream = new PretrainStream(train, tok, { batch, length: cfg.context, seed });
const evalBatches = evaluationWindows(heldOut, tok, cfg.context, batch).slice(
  0,
  Number(flags["eval-batches"]),
);
const schedule = warmupCosine(peak, Math.min(100, Math.floor(steps / 10)), steps, peak / 20);

const init = initParams(cfg, seed);
let params = await toDevice(init);
let state = await toDevice(adamInit(init));
const trainStep = adamTrainStep(cfg, { weightDecay: 0.01, clip: 1, beta2: 0.99 });
const evalStep = nllSum(cfg);
const log: string[] = [];
const t0 = performance.now();
let windowLoss = 0;
const started = new Date().toISOString();
for (let step = 0; step < steps; step++) {
  const lr = schedule(step);
  const out = await trainStep.onDevice(params, state, array(lr), stream.batch(step));
  params = out.params;
  state = out.state;
  if ((step + 1) % 25 === 0 || step === steps - 1) {
    const { loss, gradNorm } = await toHost({ loss: out.loss, gradNorm: out.gradNorm }) as Record<
      string,
      { data: Float32Array }
    >;
    windowLoss = loss.data[0];
    const elapsed = (performance.now() - t0) / 1000;
    const entry = {
      step: step + 1,
      loss: windowLoss,
      gradNorm: gradNorm.data[0],
      lr,
      seconds: Math.round(elapsed),
    };
    log.push(JSON.stringify(entry));
    const eta = (elapsed / (step + 1)) * (steps - step - 1);
    console.log(
      `step ${step + 1}/${steps} loss ${windowLoss.toFixed(4)} lr ${lr.toExponential(2)} ${
        elapsed.toFixed(0)
      }s (eta ${eta.toFixed(0)}s)`,
    );
  }
}
const seconds = (performance.now() - t0) / 1000;
const ppl = await perplexity(cfg, params, evalBatches, evalStep);
const bitsPerByte = ppl.nllPerToken / Math.LN2;
console.log(
  `held-out perplexity ${ppl.perplexity.toFixed(3)} per byte (${
    bitsPerByte.toFixed(3)
  } bits/byte, ${ppl.tokens} bytes)`,
);

const finalParams = await toHost(params) as Record<
  string,
  import("../dsl/host_array.ts").HostArray
>;
const outDir = flags.out!;
await saveModel(outDir, cfg, finalParams, {
  dsl_tokenizer: "byte",
  dsl_template: "compact",
  dsl_pretraining: {
    steps,
    batch,
    lr: peak,
    seed,
    seconds: Math.round(seconds),
    heldOutPerplexity: ppl.perplexity,
    bitsPerByte,
    device: device.info.description ?? device.info.vendor,
    finished: new Date().toISOString(),
    started,
  },
});
await writeTextAtomic(join(outDir, "training_log.jsonl"), log.join("\n") + "\n");
console.log(`wrote ${outDir} in ${seconds.toFixed(0)} s of training`);
