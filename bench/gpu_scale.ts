/**
 * Real-model step times on whatever WebGPU device this machine has (meant for a GPU machine):
 * `deno run -A bench/gpu_scale.ts [gpt2|qwen] [hdpissa|lora|full] [seqLen]`. Builds the model
 * from its Hugging Face config shape with random weights (initParamsOnDevice), sets up the
 * trainer with the `deno task train` defaults (K = 4, r = 4, 4 sequences per shard), and reports
 * setup time, the first step (compiles included), the median of the next steps, tokens/s and the
 * step's planned peak bytes, as one JSON line.
 */
import { createTrainer, type Method } from "../runtime/trainer.ts";
import { initParamsOnDevice } from "../runtime/models/init.ts";
import { type LmBatch, lmLoss } from "../dsl/nn/transformer.ts";
import type { ModelConfig } from "../dsl/nn/config.ts";
import type { Tensor } from "../dsl/trace.ts";
import type { HostArray } from "../dsl/host_array.ts";

/** GPT-2 small (124M) and Qwen2.5-0.5B (494M), as their config.json files describe them. */
export const SCALE_MODELS: Record<string, ModelConfig> = {
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

if (import.meta.main) {
  const [modelName = "gpt2", method = "hdpissa", seqArg = "192"] = Deno.args;
  const cfg = SCALE_MODELS[modelName];
  const seq = Number(seqArg), K = 4, perShard = 4;
  const t0 = performance.now();
  const params = await initParamsOnDevice(cfg, 0);
  const tInit = performance.now();
  const trainer = await createTrainer({
    loss: (p: Record<string, Tensor>, b: LmBatch<Tensor>) => lmLoss(cfg, p, b),
    params,
    adapt: Object.keys(params).filter((n) => ADAPTED.test(n)),
    method: method as Method,
    devices: K,
    rank: 4,
    optimizer: { lr: 1e-4 },
    svd: { method: "randomized" },
  });
  const tSetup = performance.now();
  const tokens = (s: number): HostArray => ({
    shape: [perShard, seq],
    dtype: "i32",
    data: Int32Array.from(
      { length: perShard * seq },
      (_, i) => (s * 7919 + i * 104729) % cfg.vocab,
    ),
  });
  const shard = (s: number) => ({
    ids: tokens(s),
    targets: tokens(s + 1),
    mask: {
      shape: [perShard, seq],
      dtype: "f32" as const,
      data: new Float32Array(perShard * seq).fill(1),
    },
  });
  const batch = (s: number) => Array.from({ length: K }, (_, k) => shard(K * s + k));
  const plan = await trainer.plan!(batch(0));
  const times: number[] = [];
  let losses: number[] = [];
  for (let s = 0; s < 5; s++) {
    const a = performance.now();
    losses = (await trainer.step(batch(s))).loss;
    times.push(performance.now() - a);
  }
  const rest = times.slice(1).sort((x, y) => x - y);
  const median = rest[rest.length >> 1];
  console.log(JSON.stringify({
    model: modelName,
    method,
    seq,
    tokensPerStep: K * perShard * seq,
    initS: +((tInit - t0) / 1000).toFixed(1),
    setupS: +((tSetup - tInit) / 1000).toFixed(1),
    firstStepS: +(times[0] / 1000).toFixed(2),
    medianStepMs: +median.toFixed(1),
    tokensPerS: Math.round((K * perShard * seq) / (median / 1000)),
    kernels: trainer.stats().kernelsPerStep,
    peakGiB: +(plan.totalBytes / 2 ** 30).toFixed(2),
    tflopPerStep: +(plan.matmulFlops / 1e12).toFixed(2),
    lossFinite: losses.every(Number.isFinite),
  }));
  await trainer.close();
}
