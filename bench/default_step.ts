/**
 * The default `deno task train` run's data and trainer, as `runTraining` builds them with
 * DEFAULT_RUN (shipped base, HD-PiSSA, K = 4, cipher task), for benchmarks of its step.
 */

import { lmLoss } from "../dsl/nn/transformer.ts";
import type { Tensor } from "../dsl/trace.ts";
import type { HostArray } from "../dsl/host_array.ts";
import { BatchSampler, collate, encodeExample, shard } from "../runtime/data/instruct.ts";
import { taskSplits } from "../runtime/data/synthetic.ts";
import { loadModel } from "../runtime/models/model_dir.ts";
import { createTrainer, type Method, type Trainer } from "../runtime/trainer.ts";
import type { TrainerConfig } from "../runtime/trainer_common.ts";
import { adaptedWeights, DEFAULT_RUN, runSchedule } from "../runtime/train/config.ts";

/** The default run's model, its shards for step s, and a way to build its trainer. */
export async function defaultStep(): Promise<{
  shardsAt: (step: number) => Record<string, HostArray>[];
  trainer: (method?: Method, extra?: Partial<TrainerConfig>) => Promise<Trainer>;
}> {
  const cfg = DEFAULT_RUN;
  const model = await loadModel(cfg.model);
  const tok = model.tokenizer;
  const template = cfg.template ?? model.template;
  const { train } = taskSplits(cfg.task, { train: cfg.trainSize, test: cfg.evalSize }, cfg.seed);
  const encoded = train.map((ex) => encodeExample(tok, ex, template));
  const K = cfg.devices, perStep = K * cfg.batch;
  const sampler = new BatchSampler(encoded.length, cfg.seed);
  const shardsAt = (step: number) => {
    const indices = sampler.take(step * perStep, perStep);
    return Array.from(
      { length: K },
      (_, k) => collate(shard(indices, k, K).map((i) => encoded[i]), cfg.maxLen, tok.pad),
    );
  };
  const trainer = (method: Method = cfg.method, extra: Partial<TrainerConfig> = {}) =>
    createTrainer({
      loss: (p: Record<string, Tensor>, b: { ids: Tensor; targets: Tensor; mask: Tensor }) =>
        lmLoss(model.config, p, b),
      params: model.params,
      adapt: adaptedWeights(model.params, cfg.adapt),
      method,
      devices: K,
      rank: cfg.rank,
      optimizer: { lr: runSchedule(cfg) },
      mode: cfg.mode,
      svd: { method: cfg.svd, seed: cfg.seed },
      seed: cfg.seed,
      ...extra,
    });
  return { shardsAt, trainer };
}
