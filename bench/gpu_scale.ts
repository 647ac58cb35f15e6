/**
 * Real-model step times on whatever WebGPU device this machine has (meant for a GPU machine):
 * `deno run -A bench/gpu_scale.ts [gpt2|qwen] [hdpissa|lora|full] [seqLen[,seqLen…]] [K] [perShard]
 * [steps]`.
 * Builds the model from its Hugging Face config shape with random weights (initParamsOnDevice),
 * sets up the trainer (r = 4; by default the `deno task train` K = 4 and 4 sequences per shard),
 * and reports setup time, the first step (compiles included), the median of the next steps,
 * tokens/s and the step's planned peak bytes, one JSON line per sequence length.
 */
import { createTrainer, type Method, type Trainer } from "../runtime/trainer.ts";
import type { TrainerConfig } from "../runtime/trainer_common.ts";
import { initParamsOnDevice } from "../runtime/models/init.ts";
import { conv1dWeights, type LmBatch, lmLoss } from "../dsl/nn/transformer.ts";
import type { ModelConfig } from "../dsl/nn/config.ts";
import type { Tensor } from "../dsl/trace.ts";
import type { HostArray } from "../dsl/host_array.ts";
import { BASE_CONFIG } from "../runtime/models/base_config.ts";

/**
 * GPT-2 small (124M) and Qwen2.5-0.5B (494M), as their config.json files describe them, and the
 * shipped base (the model of the default `deno task train`, for the default step's anchor).
 */
export const SCALE_MODELS: Record<string, ModelConfig> = {
  base: BASE_CONFIG,
  gpt2: {
    family: "gpt2",
    vocab: 50257,
    width: 768,
    layers: 12,
    heads: 12,
    kvHeads: 12,
    ffn: 3072,
    context: 1024,
    normEps: 1e-5,
    ropeTheta: 10000,
    tieEmbeddings: true,
  },
  qwen: {
    family: "llama",
    vocab: 151936,
    width: 896,
    layers: 24,
    heads: 14,
    kvHeads: 2,
    ffn: 4864,
    context: 32768,
    normEps: 1e-6,
    ropeTheta: 1000000,
    tieEmbeddings: true,
    attentionBias: "qkv",
  },
};

/** The projections `deno task train` adapts by default, per family. */
const ADAPTED =
  /(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj|c_attn|c_proj|c_fc)\.weight$/;

/**
 * A scale model's step with random weights: the weights, the adapted names, its batch of K shards
 * of `perShard` sequences for step s, and its trainer (r = 4, randomised SVD, the default projections adapted).
 */
export async function scaleStep(modelName: string, K = 4, perShard = 4): Promise<{
  params: Record<string, HostArray>;
  adapt: string[];
  batchAt: (seq: number, step: number) => Record<string, HostArray>[];
  trainer: (method: Method, extra?: Partial<TrainerConfig>) => Promise<Trainer>;
}> {
  const cfg = SCALE_MODELS[modelName];
  if (!cfg) {
    throw new Error(`no scale model ${modelName} (${Object.keys(SCALE_MODELS).join(", ")})`);
  }
  const params = await initParamsOnDevice(cfg, 0);
  const adapt = Object.keys(params).filter((n) => ADAPTED.test(n));
  const tokens = (seq: number, s: number): HostArray => ({
    shape: [perShard, seq],
    dtype: "i32",
    data: Int32Array.from(
      { length: perShard * seq },
      (_, i) => (s * 7919 + i * 104729) % cfg.vocab,
    ),
  });
  const shard = (seq: number, s: number) => ({
    ids: tokens(seq, s),
    targets: tokens(seq, s + 1),
    mask: {
      shape: [perShard, seq],
      dtype: "f32" as const,
      data: new Float32Array(perShard * seq).fill(1),
    },
  });
  return {
    params,
    adapt,
    batchAt: (seq, s) => Array.from({ length: K }, (_, k) => shard(seq, K * s + k)),
    trainer: (method, extra = {}) =>
      createTrainer({
        loss: (p: Record<string, Tensor>, b: LmBatch<Tensor>) => lmLoss(cfg, p, b),
        params,
        adapt,
        fanInFanOut: conv1dWeights(cfg).filter((n) => adapt.includes(n)),
        method,
        devices: K,
        rank: 4,
        optimizer: { lr: 1e-4 },
        svd: { method: "randomized" },
        ...extra,
      }),
  };
}

/** One JSON line per sequence length: setup, first and median step, tokens/s, planned peak. */
export async function measureScale(
  modelName: string,
  method: Method,
  seqs: readonly number[],
  K = 4,
  perShard = 4,
  steps = 5,
): Promise<Record<string, unknown>[]> {
  const t0 = performance.now();
  const { batchAt, trainer: newTrainer } = await scaleStep(modelName, K, perShard);
  const tInit = performance.now();
  const trainer = await newTrainer(method);
  const tSetup = performance.now();
  const rows: Record<string, unknown>[] = [];
  for (const seq of seqs) {
    const batch = (s: number) => batchAt(seq, s);
    const plan = await trainer.plan!(batch(0));
    const times: number[] = [];
    let losses: number[] = [];
    for (let s = 0; s < steps; s++) {
      const a = performance.now();
      losses = (await trainer.step(batch(s))).loss;
      times.push(performance.now() - a);
    }
    const rest = times.length > 1 ? times.slice(1).sort((x, y) => x - y) : times;
    const median = rest[rest.length >> 1];
    const row = {
      model: modelName,
      method,
      seq,
      devices: K,
      tokensPerStep: K * perShard * seq,
      initS: +((tInit - t0) / 1000).toFixed(1),
      setupS: +((tSetup - tInit) / 1000).toFixed(1),
      firstStepS: +(times[0] / 1000).toFixed(2),
      medianStepMs: +median.toFixed(1),
      tokensPerS: Math.round((K * perShard * seq) / (median / 1000)),
      kernels: trainer.stats().kernelsPerStep,
      peakGiB: +(plan.totalBytes / 2 ** 30).toFixed(2),
      tflopPerStep: +(plan.matmulFlops / 1e12).toFixed(3),
      lossFinite: losses.every(Number.isFinite),
    };
    console.log(JSON.stringify(row));
    rows.push(row);
  }
  await trainer.close();
  return rows;
}

if (import.meta.main) {
  const [model = "gpt2", method = "hdpissa", seqArg = "192", k = "4", perShard = "4", steps = "5"] =
    Deno.args;
  await measureScale(
    model,
    method as Method,
    seqArg.split(",").map(Number),
    Number(k),
    Number(perShard),
    Number(steps),
  );
}
