import assert from "node:assert/strict";
import { interpret } from "../../dsl/interpret.ts";
import { valueAndGrad } from "../../dsl/mod.ts";
import type { HostArray } from "../../dsl/host_array.ts";
import { configFromHf, configToHf, type ModelConfig } from "../../dsl/nn/config.ts";
import {
  forward,
  type ForwardOptions,
  initParams,
  type LmBatch,
  lmLoss,
  lossBlockColumns,
  parameterCount,
  parameterShapes,
  TARGET_ROWS_RATIO,
} from "../../dsl/nn/transformer.ts";
import type { Tensor } from "../../dsl/trace.ts";
import { assertClose } from "../helpers/arrays.ts";
import { referenceLogits } from "../helpers/reference_lm.ts";
import { TINY_GPT2, TINY_LLAMA, TINY_QWEN2 } from "../helpers/tiny_models.ts";

const ids = (rows: number[][]): HostArray => ({
  shape: [rows.length, rows[0].length],
  dtype: "i32",
  data: Int32Array.from(rows.flat()),
});

/** Parameters with non-trivial norms and biases, so every term of the model is exercised. */
function perturbed(cfg: ModelConfig, seed: number): Record<string, HostArray> {
  const p = initParams(cfg, seed);
  let s = seed + 1;
  for (const [name, a] of Object.entries(p)) {
    const scale = a.shape.length === 1 ? 0.3 : 8;
    a.data.forEach((v, i) => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      const noise = (s / 2 ** 32 - 0.5) * 0.2;
      a.data[i] = a.shape.length === 1
        ? v + noise * scale * (name.endsWith("bias") ? 2 : 1)
        : v * scale;
    });
  }
  return p;
}

const LLAMA_ALL_BIASES: ModelConfig = { ...TINY_LLAMA, attentionBias: "qkvo" };
for (
  const cfg of [
    TINY_LLAMA,
    TINY_GPT2,
    { ...TINY_LLAMA, tieEmbeddings: true, kvHeads: 4 },
    TINY_QWEN2,
    LLAMA_ALL_BIASES,
  ]
) {
  const biases = cfg.attentionBias ? `, ${cfg.attentionBias} biases` : "";
  const label =
    `${cfg.family} (kv ${cfg.kvHeads}/${cfg.heads}, tied ${cfg.tieEmbeddings}${biases})`;
  Deno.test(`nn ${label}: logits equal an independent loop implementation of the HF equations`, () => {
    const params = perturbed(cfg, 5);
    const batch = [[1, 5, 9, 2, 14, 3, 3, 0], [7, 7, 1, 0, 12, 11, 4, 6]];
    const got = interpret(
      (p: Record<string, Tensor>, x: Tensor) => forward(cfg, p, x),
      params,
      ids(batch),
    ) as HostArray;
    assert.deepEqual(got.shape, [2, 8, cfg.vocab]);
    const want = batch.flatMap((row) => referenceLogits(cfg, params, row).flat());
    assertClose(got, want, { rtol: 2e-4, atol: 2e-4 });
    const spread = Math.max(...want) - Math.min(...want);
    assert.ok(spread > 1, `logits too flat to be a meaningful check (${spread})`);
  });
}

Deno.test("nn: causal — logits at a position do not depend on later tokens", () => {
  const params = perturbed(TINY_LLAMA, 1);
  const f = (x: number[][]) =>
    interpret(
      (p: Record<string, Tensor>, t: Tensor) => forward(TINY_LLAMA, p, t),
      params,
      ids(x),
    ) as HostArray;
  const a = f([[1, 2, 3, 4, 5]]);
  const b = f([[1, 2, 3, 9, 0]]);
  const v = TINY_LLAMA.vocab;
  assert.deepEqual(a.data.subarray(0, 3 * v), b.data.subarray(0, 3 * v));
  assert.notDeepEqual(Array.from(a.data.subarray(3 * v)), Array.from(b.data.subarray(3 * v)));
});

Deno.test("nn: lmLoss is the masked mean cross-entropy of forward's logits (uniform logits: log V)", () => {
  const cfg = TINY_GPT2;
  const lmLossOf = (params: Record<string, HostArray>, batch: LmBatch<HostArray>, chunk?: number) =>
    (interpret(
      (p: Record<string, Tensor>, b: LmBatch<Tensor>) =>
        lmLoss(cfg, p, b, { lossChunkLogits: chunk }),
      params,
      batch,
    ) as HostArray).data[0];
  const zeroed = initParams(cfg, 0);
  for (const a of Object.values(zeroed)) if (a.shape.length === 2) a.data.fill(0);
  const uniform = {
    ids: ids([[1, 2, 3]]),
    targets: ids([[2, 3, 4]]),
    mask: { shape: [1, 3], dtype: "f32" as const, data: Float32Array.of(1, 0, 1) },
  };
  const u = lmLossOf(zeroed, uniform);
  assert.ok(Math.abs(u - Math.log(cfg.vocab)) < 1e-5, `${u}`);
  // Uniform logits cannot tell which positions the mask keeps: with varied logits, the loss is
  // Σ mask·ℓ / Σ mask for ℓ the per-position cross-entropy of forward's logits (in f64 here).
  const params = perturbed(cfg, 2);
  const tokens = [[1, 5, 9, 2, 14, 3], [7, 7, 1, 0, 12, 11]];
  const targets = [[5, 9, 2, 14, 3, 8], [7, 1, 0, 12, 11, 4]];
  const keep = [[1, 0, 1, 1, 0, 0], [0, 1, 1, 0, 1, 0]];
  const logits = interpret(
    (p: Record<string, Tensor>, x: Tensor) => forward(cfg, p, x),
    params,
    ids(tokens),
  ) as HostArray;
  const v = cfg.vocab;
  const ce = targets.flat().map((t, pos) => {
    const row = Array.from(logits.data.subarray(pos * v, (pos + 1) * v));
    const top = Math.max(...row);
    return top + Math.log(row.reduce((a, z) => a + Math.exp(z - top), 0)) - row[t];
  });
  const maskFlat = keep.flat();
  const masked = ce.reduce((a, l, i) => a + maskFlat[i] * l, 0) / maskFlat.reduce((a, m) => a + m);
  const unmasked = ce.reduce((a, l) => a + l, 0) / ce.length;
  assert.ok(Math.abs(masked - unmasked) > 1e-2, "the mask must matter for this check");
  const batch = {
    ids: ids(tokens),
    targets: ids(targets),
    mask: { shape: [2, 6], dtype: "f32" as const, data: Float32Array.from(maskFlat) },
  };
  // One block of logits, and blocks of the vocabulary (5·vocab logits over 12 positions).
  for (const chunk of [undefined, 5 * v]) {
    const got = lmLossOf(params, batch, chunk);
    assert.ok(Math.abs(got - masked) <= 1e-5 * masked, `chunk ${chunk}: ${got} vs ${masked}`);
  }
});

/** `lmLoss` and its gradients on the CPU reference. */
function lmLossAndGrad(
  cfg: ModelConfig,
  params: Record<string, HostArray>,
  batch: LmBatch<HostArray>,
  opts: ForwardOptions,
): [HostArray, Record<string, HostArray>] {
  const f = (p: Record<string, Tensor>, b: LmBatch<Tensor>) => lmLoss(cfg, p, b, opts);
  return interpret(valueAndGrad(f), params, batch) as [HostArray, Record<string, HostArray>];
}

/** A 2 × 7 batch of fixed ids with `targets`, the positions `masked` picks (flat index) off. */
const twoBySeven = (targets: number[][], masked: (i: number) => boolean) => ({
  ids: ids([[1, 2, 3, 4, 5, 6, 7], [7, 6, 5, 4, 3, 2, 1]]),
  targets: ids(targets),
  mask: {
    shape: [2, 7],
    dtype: "f32" as const,
    data: Float32Array.from({ length: 14 }, (_, i) => (masked(i) ? 0 : 1)),
  },
});

Deno.test("nn: lmLoss scored in blocks of the vocabulary equals one block (loss and gradients)", () => {
  // Blocks of 3·vocab/14 and of 12 columns (a multiple of 4) over 2×7 positions, a partial mask,
  // the last block short.
  assert.equal(lossBlockColumns(14 * 12 + 5, 14, 50), 12);
  assert.equal(lossBlockColumns(14 * 7, 14, 50), 7);
  assert.equal(lossBlockColumns(3, 14, 50), 1);
  for (
    const [cfg, chunk] of [[TINY_GPT2, 3 * TINY_GPT2.vocab], [TINY_QWEN2, 14 * 12 + 5]] as const
  ) {
    const params = initParams(cfg, 3);
    // Two targets outside the vocabulary score no logit (a one-hot of zeros) in both.
    const batch = twoBySeven(
      [[2, 3, 4, 5, 6, 7, 8], [6, 5, -1, 3, 2, cfg.vocab + 3, 0]],
      (i) => i % 5 === 2,
    );
    const lossAndGrad = (lossChunkLogits?: number) =>
      lmLossAndGrad(cfg, params, batch, { lossChunkLogits });
    const [whole, gWhole] = lossAndGrad();
    assert.ok(14 * cfg.vocab > chunk && lossBlockColumns(chunk, 14, cfg.vocab) < cfg.vocab);
    const [blocks, gBlocks] = lossAndGrad(chunk);
    assertClose(blocks, whole, { rtol: 1e-6, atol: 1e-6, label: `${cfg.family} loss` });
    for (const name of Object.keys(gWhole)) {
      assertClose(gBlocks[name], gWhole[name], { rtol: 1e-5, atol: 1e-6, label: name });
    }
  }
});

Deno.test("nn: lmLoss scores a large vocabulary's targets by the head's rows, as the one-hot does", () => {
  // Vocabularies past TARGET_ROWS_RATIO× the width take h·w[target] even in one block; forcing
  // the one-hot (targetRows: false) gives the same loss and gradients, out-of-vocabulary targets
  // (score 0) and a partial mask included, for a tied (GPT-2) and an untied (Llama) head.
  for (const base of [TINY_GPT2, TINY_LLAMA]) {
    const cfg = { ...base, vocab: TARGET_ROWS_RATIO * base.width + 9 };
    const params = initParams(cfg, 5);
    const batch = twoBySeven(
      [[2, 3, 130, 5, 6, 7, 8], [6, 5, -1, 3, 2, cfg.vocab + 3, 0]],
      (i) => i % 4 === 3,
    );
    const lossAndGrad = (opts: ForwardOptions) => lmLossAndGrad(cfg, params, batch, opts);
    const [rows, gRows] = lossAndGrad({});
    const [oneHot, gOneHot] = lossAndGrad({ targetRows: false });
    const [blocks, gBlocks] = lossAndGrad({ lossChunkLogits: 14 * 40 });
    assert.ok(rows.data[0] > 0);
    for (
      const [got, grads, what] of [[oneHot, gOneHot, "one-hot"], [
        blocks,
        gBlocks,
        "blocks",
      ]] as const
    ) {
      assertClose(got, rows, { rtol: 1e-6, atol: 1e-6, label: `${cfg.family} loss, ${what}` });
      for (const name of Object.keys(gRows)) {
        assertClose(grads[name], gRows[name], {
          rtol: 1e-5,
          atol: 1e-6,
          label: `${name}, ${what}`,
        });
      }
    }
  }
});

Deno.test("nn config: HF config.json round trip and parameter names", () => {
  for (const cfg of [TINY_LLAMA, TINY_GPT2, TINY_QWEN2, LLAMA_ALL_BIASES]) {
    assert.deepEqual(configFromHf(configToHf(cfg)), cfg);
  }
  // Qwen2 checkpoints name q/k/v biases (never o_proj's); Llama's attention_bias adds all four.
  assert.equal(configToHf(TINY_QWEN2).model_type, "qwen2");
  const qwen = parameterShapes(TINY_QWEN2);
  assert.deepEqual(qwen["model.layers.0.self_attn.q_proj.bias"], [16]);
  assert.deepEqual(qwen["model.layers.0.self_attn.k_proj.bias"], [4]);
  assert.deepEqual(qwen["model.layers.1.self_attn.v_proj.bias"], [4]);
  assert.equal(qwen["model.layers.0.self_attn.o_proj.bias"], undefined);
  assert.deepEqual(parameterShapes(LLAMA_ALL_BIASES)["model.layers.1.self_attn.o_proj.bias"], [16]);
  assert.equal(parameterShapes(TINY_LLAMA)["model.layers.0.self_attn.q_proj.bias"], undefined);
  assert.equal(
    configFromHf({ ...configToHf(TINY_LLAMA), model_type: "mistral" }).attentionBias,
    undefined,
  );
  // Qwen2.5-0.5B's published size: 494,032,768 parameters (tied, 14 heads / 2 KV heads).
  const qwen05 = configFromHf({
    model_type: "qwen2",
    hidden_size: 896,
    intermediate_size: 4864,
    num_hidden_layers: 24,
    num_attention_heads: 14,
    num_key_value_heads: 2,
    vocab_size: 151936,
    max_position_embeddings: 32768,
    rope_theta: 1000000,
    rms_norm_eps: 1e-6,
    tie_word_embeddings: true,
  });
  assert.equal(parameterCount(qwen05), 494_032_768);
  const shapes = parameterShapes(TINY_LLAMA);
  assert.deepEqual(shapes["model.layers.1.self_attn.k_proj.weight"], [8, 16]);
  assert.deepEqual(shapes["model.layers.0.mlp.down_proj.weight"], [16, 24]);
  assert.deepEqual(parameterShapes(TINY_GPT2)["transformer.h.0.attn.c_attn.weight"], [16, 48]);
  // GPT-2 small's published size: 124,439,808 parameters (tied head, 1024 positions).
  const gpt2 = configFromHf({
    model_type: "gpt2",
    n_embd: 768,
    n_layer: 12,
    n_head: 12,
    vocab_size: 50257,
    n_positions: 1024,
  });
  assert.equal(parameterCount(gpt2), 124_439_808);
  assert.throws(() => configFromHf({ model_type: "bert" }), /model_type "bert" is not supported/);
  assert.throws(
    () => configFromHf({ ...configToHf(TINY_LLAMA), num_attention_heads: 3 }),
    /divisible by heads/,
  );
});
