/**
 * Decoder-only language models (Llama and GPT-2 families) as functions of a flat parameter record
 * keyed by Hugging Face names, so a checkpoint's tensors are the parameters as they are.
 */

import { DslError } from "../errors.ts";
import type { HostArray } from "../host_array.ts";
import { interpret } from "../interpret.ts";
import { add, mul } from "../ops/elementwise.ts";
import { crossEntropy, layerNorm, rmsNorm } from "../ops/nn.ts";
import { slice } from "../ops/shape.ts";
import { foldIn, normal, prngKey } from "../random.ts";
import type { Tensor } from "../trace.ts";
import type { ModelConfig } from "./config.ts";
import {
  applyRotary,
  causalAttention,
  conv1d,
  embedding,
  linear,
  mergeHeads,
  mlpGelu,
  splitHeads,
  swiglu,
} from "./layers.ts";

export type Params<T> = Record<string, T>;

/** Every parameter's Hugging Face name and shape. */
export function parameterShapes(cfg: ModelConfig): Record<string, number[]> {
  const { width: d, vocab: v, ffn: f } = cfg;
  const out: Record<string, number[]> = {};
  if (cfg.family === "llama") {
    const head = d / cfg.heads;
    out["model.embed_tokens.weight"] = [v, d];
    for (let i = 0; i < cfg.layers; i++) {
      const p = `model.layers.${i}.`;
      out[p + "input_layernorm.weight"] = [d];
      out[p + "self_attn.q_proj.weight"] = [cfg.heads * head, d];
      out[p + "self_attn.k_proj.weight"] = [cfg.kvHeads * head, d];
      out[p + "self_attn.v_proj.weight"] = [cfg.kvHeads * head, d];
      out[p + "self_attn.o_proj.weight"] = [d, cfg.heads * head];
      out[p + "post_attention_layernorm.weight"] = [d];
      out[p + "mlp.gate_proj.weight"] = [f, d];
      out[p + "mlp.up_proj.weight"] = [f, d];
      out[p + "mlp.down_proj.weight"] = [d, f];
    }
    out["model.norm.weight"] = [d];
    if (!cfg.tieEmbeddings) out["lm_head.weight"] = [v, d];
    return out;
  }
  out["transformer.wte.weight"] = [v, d];
  out["transformer.wpe.weight"] = [cfg.context, d];
  for (let i = 0; i < cfg.layers; i++) {
    const p = `transformer.h.${i}.`;
    out[p + "ln_1.weight"] = [d];
    out[p + "ln_1.bias"] = [d];
    out[p + "attn.c_attn.weight"] = [d, 3 * d];
    out[p + "attn.c_attn.bias"] = [3 * d];
    out[p + "attn.c_proj.weight"] = [d, d];
    out[p + "attn.c_proj.bias"] = [d];
    out[p + "ln_2.weight"] = [d];
    out[p + "ln_2.bias"] = [d];
    out[p + "mlp.c_fc.weight"] = [d, f];
    out[p + "mlp.c_fc.bias"] = [f];
    out[p + "mlp.c_proj.weight"] = [f, d];
    out[p + "mlp.c_proj.bias"] = [d];
  }
  out["transformer.ln_f.weight"] = [d];
  out["transformer.ln_f.bias"] = [d];
  if (!cfg.tieEmbeddings) out["lm_head.weight"] = [v, d];
  return out;
}

/** Number of scalars in the model. */
export function parameterCount(cfg: ModelConfig): number {
  return Object.values(parameterShapes(cfg)).reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
}

function get(params: Params<Tensor>, name: string): Tensor {
  const t = params[name];
  if (t === undefined) throw new DslError("transformer", `missing parameter "${name}"`);
  return t;
}

function llamaLogits(cfg: ModelConfig, p: Params<Tensor>, ids: Tensor): Tensor {
  let h = embedding(get(p, "model.embed_tokens.weight"), ids);
  for (let i = 0; i < cfg.layers; i++) {
    const w = (n: string) => get(p, `model.layers.${i}.${n}`);
    const x = rmsNorm(h, w("input_layernorm.weight"), cfg.normEps);
    const q = applyRotary(
      splitHeads(linear(x, w("self_attn.q_proj.weight")), cfg.heads),
      cfg.ropeTheta,
    );
    const k = applyRotary(
      splitHeads(linear(x, w("self_attn.k_proj.weight")), cfg.kvHeads),
      cfg.ropeTheta,
    );
    const v = splitHeads(linear(x, w("self_attn.v_proj.weight")), cfg.kvHeads);
    h = add(h, linear(mergeHeads(causalAttention(q, k, v)), w("self_attn.o_proj.weight")));
    const y = rmsNorm(h, w("post_attention_layernorm.weight"), cfg.normEps);
    h = add(
      h,
      swiglu(y, w("mlp.gate_proj.weight"), w("mlp.up_proj.weight"), w("mlp.down_proj.weight")),
    );
  }
  h = rmsNorm(h, get(p, "model.norm.weight"), cfg.normEps);
  return linear(h, get(p, cfg.tieEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight"));
}

function gpt2Logits(cfg: ModelConfig, p: Params<Tensor>, ids: Tensor): Tensor {
  const t = ids.shape[ids.ndim - 1];
  if (t > cfg.context) {
    throw new DslError("gpt2", `sequence length ${t} exceeds the context ${cfg.context}`);
  }
  const positions = slice(get(p, "transformer.wpe.weight"), [0, 0], [t, cfg.width]);
  let h = add(embedding(get(p, "transformer.wte.weight"), ids), positions);
  for (let i = 0; i < cfg.layers; i++) {
    const w = (n: string) => get(p, `transformer.h.${i}.${n}`);
    const x = layerNorm(h, w("ln_1.weight"), w("ln_1.bias"), cfg.normEps);
    const qkv = conv1d(x, w("attn.c_attn.weight"), w("attn.c_attn.bias"));
    const [b, ,] = qkv.shape;
    const part = (j: number) =>
      splitHeads(slice(qkv, [0, 0, j * cfg.width], [b, t, (j + 1) * cfg.width]), cfg.heads);
    const attn = mergeHeads(causalAttention(part(0), part(1), part(2)));
    h = add(h, conv1d(attn, w("attn.c_proj.weight"), w("attn.c_proj.bias")));
    const y = layerNorm(h, w("ln_2.weight"), w("ln_2.bias"), cfg.normEps);
    const fc = { weight: w("mlp.c_fc.weight"), bias: w("mlp.c_fc.bias") };
    const proj = { weight: w("mlp.c_proj.weight"), bias: w("mlp.c_proj.bias") };
    h = add(h, mlpGelu(y, fc, proj, "conv1d"));
  }
  h = layerNorm(h, get(p, "transformer.ln_f.weight"), get(p, "transformer.ln_f.bias"), cfg.normEps);
  return linear(h, get(p, cfg.tieEmbeddings ? "transformer.wte.weight" : "lm_head.weight"));
}

/** Next-token logits [B, T, vocab] for token ids [B, T] (i32). */
export function forward(cfg: ModelConfig, params: Params<Tensor>, ids: Tensor): Tensor {
  if (ids.dtype !== "i32" || ids.ndim !== 2) {
    throw new DslError(
      "forward",
      `token ids must be i32 [batch, length], got ${ids.dtype}[${ids.shape}]`,
    );
  }
  return cfg.family === "llama" ? llamaLogits(cfg, params, ids) : gpt2Logits(cfg, params, ids);
}

/** A language-model batch: inputs, next-token targets, and a 0/1 loss mask, all [B, T]. */
export interface LmBatch<T> {
  ids: T;
  targets: T;
  mask: T;
}

/** Mean next-token cross-entropy over the masked positions. */
export function lmLoss(cfg: ModelConfig, params: Params<Tensor>, batch: LmBatch<Tensor>): Tensor {
  return crossEntropy(forward(cfg, params, batch.ids), batch.targets, { mask: batch.mask });
}

/**
 * Fresh parameters: N(0, 0.02) weights (GPT-2's residual projections scaled by 1/√(2·layers), as
 * in its paper), unit norms, zero biases. Each tensor's key is folded in from its position, so the
 * result depends only on (config, seed).
 */
export function initParams(cfg: ModelConfig, seed: number): Params<HostArray> {
  const shapes = parameterShapes(cfg);
  const out: Params<HostArray> = {};
  const key = prngKey(seed);
  Object.entries(shapes).forEach(([name, shape], index) => {
    const size = shape.reduce((a, b) => a * b, 1);
    if (/norm|ln_/.test(name)) {
      const data = new Float32Array(size).fill(name.endsWith(".bias") ? 0 : 1);
      out[name] = { shape, dtype: "f32", data };
    } else if (name.endsWith(".bias")) {
      out[name] = { shape, dtype: "f32", data: new Float32Array(size) };
    } else {
      const std = name.endsWith("c_proj.weight") ? 0.02 / Math.sqrt(2 * cfg.layers) : 0.02;
      out[name] = interpret(
        (k: Tensor) => mul(normal(foldIn(k, index), shape), std),
        key,
      ) as HostArray;
    }
  });
  return out;
}
