/**
 * Decoder-only language models (Llama and GPT-2 families) as functions of a flat parameter record
 * keyed by Hugging Face names, so a checkpoint's tensors are the parameters as they are.
 */

import { checkpoint } from "../checkpoint.ts";
import { DslError } from "../errors.ts";
import type { HostArray } from "../host_array.ts";
import { interpret } from "../interpret.ts";
import {
  add,
  cast,
  clip,
  div,
  greaterEqual,
  less,
  logicalAnd,
  maximum,
  mul,
  sub,
  where,
} from "../ops/elementwise.ts";
import { logsumexp, sum } from "../ops/reduce.ts";
import { crossEntropy, layerNorm, rmsNorm } from "../ops/nn.ts";
import { concat, reshape, slice, take } from "../ops/shape.ts";
import { foldIn, normal, prngKey } from "../random.ts";
import type { Tensor } from "../trace.ts";
import { asTensor, type TensorLike } from "../ops/coerce.ts";
import type { ModelConfig } from "./config.ts";
import {
  causalAttention,
  conv1d,
  embedding,
  linear,
  mergeHeads,
  mlpGelu,
  rotaryTables,
  rotate,
  splitHeads,
  swiglu,
} from "./layers.ts";

/** Model parameters keyed by their Hugging Face names. */
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
      if (cfg.attentionBias) {
        out[p + "self_attn.q_proj.bias"] = [cfg.heads * head];
        out[p + "self_attn.k_proj.bias"] = [cfg.kvHeads * head];
        out[p + "self_attn.v_proj.bias"] = [cfg.kvHeads * head];
        if (cfg.attentionBias === "qkvo") out[p + "self_attn.o_proj.bias"] = [d];
      }
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

/**
 * The weights stored [in, out] and applied as x·W: GPT-2's Conv1D projections (c_attn, c_proj,
 * c_fc); none for the Llama family. A trainer adapting them takes them as `fanInFanOut`.
 */
export function conv1dWeights(cfg: ModelConfig): string[] {
  if (cfg.family !== "gpt2") return [];
  const names: string[] = [];
  for (let i = 0; i < cfg.layers; i++) {
    for (const w of ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]) {
      names.push(`transformer.h.${i}.${w}.weight`);
    }
  }
  return names;
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

/**
 * How a decoder pass sees positions and attends: the full causal pass over positions 0…T−1, or
 * one step of incremental decoding against a key/value cache (dsl/nn/decode.ts).
 */
export interface AttentionPlan {
  /** Position of each token, i32 [B, T]; null means 0…T−1 for every row. */
  positions: Tensor | null;
  /** Attention of q [B, H, T, D] over k, v [B, Hkv, T, D] of this layer's new tokens. */
  attend(layer: number, q: Tensor, k: Tensor, v: Tensor): Tensor;
}

/** The plan of a full causal pass: positions 0…T−1 and causal self-attention over them. */
export const CAUSAL: AttentionPlan = {
  positions: null,
  attend: (_layer, q, k, v) => causalAttention(q, k, v),
};

/** cos/sin broadcastable to [B, H, T, D] for the plan's positions. */
function rotaryFor(cfg: ModelConfig, plan: AttentionPlan, t: number): [Tensor, Tensor] {
  const head = cfg.width / cfg.heads;
  if (plan.positions === null) return rotaryTables(t, head, cfg.ropeTheta);
  const [b] = plan.positions.shape;
  const tables = rotaryTables(cfg.context, head, cfg.ropeTheta);
  const at = (table: Tensor) => reshape(take(table, plan.positions!, 0), [b, 1, t, head]);
  return [at(tables[0]), at(tables[1])];
}

/** Options of `forward` and `lmLoss`. */
export interface ForwardOptions {
  /**
   * Recompute each decoder block's activations in the backward pass instead of keeping them
   * (`checkpoint`): the step's peak memory holds one block's intermediates, for one more forward
   * pass. Values and gradients are unchanged.
   */
  checkpointBlocks?: boolean;
  /**
   * `lmLoss`: most logits computed at once (default `LOSS_CHUNK_LOGITS`); past that, positions
   * are scored against blocks of the vocabulary. The loss is the same up to the summation order.
   */
  lossChunkLogits?: number;
  /**
   * `lmLoss`: score each target as h·w[target] (a gather of the head's rows, scattered back in
   * the gradient) rather than against a one-hot of the logits. Default: for vocabularies past
   * `TARGET_ROWS_RATIO`× the width, and always past one block of logits. The loss is the same up
   * to rounding.
   */
  targetRows?: boolean;
}

/**
 * Past this many vocabulary entries per unit of width, `lmLoss` scores targets by the head's rows:
 * the one-hot path's gradient writes a [positions, vocab] term (43 ms of GPT-2 small's 2.8 s step
 * at 2 × 64 tokens, lavapipe) where the rows cost [positions, width]; below it the one-hot is
 * recomputed where it is read and the rows' gather and scatter would be kernels of their own (the
 * shipped base: 8 more pipelines at an even step).
 */
export const TARGET_ROWS_RATIO = 8;

/** `block` run as is, or checkpointed. */
function blockRunner(opts: ForwardOptions): (block: (h: Tensor) => Tensor, h: Tensor) => Tensor {
  return opts.checkpointBlocks ? (block, h) => checkpoint(block)(h) : (block, h) => block(h);
}

function llamaHidden(
  cfg: ModelConfig,
  p: Params<Tensor>,
  ids: Tensor,
  plan: AttentionPlan,
  opts: ForwardOptions,
): Tensor {
  const [cos, sin] = rotaryFor(cfg, plan, ids.shape[1]);
  const run = blockRunner(opts);
  let h = embedding(get(p, "model.embed_tokens.weight"), ids);
  for (let i = 0; i < cfg.layers; i++) h = run((h) => llamaBlock(cfg, p, plan, i, h, cos, sin), h);
  return rmsNorm(h, get(p, "model.norm.weight"), cfg.normEps);
}

function llamaBlock(
  cfg: ModelConfig,
  p: Params<Tensor>,
  plan: AttentionPlan,
  i: number,
  h: Tensor,
  cos: Tensor,
  sin: Tensor,
): Tensor {
  const w = (n: string) => get(p, `model.layers.${i}.${n}`);
  const bias = (proj: string) =>
    cfg.attentionBias?.includes(proj[0]) ? w(`self_attn.${proj}.bias`) : null;
  const x = rmsNorm(h, w("input_layernorm.weight"), cfg.normEps);
  const heads = (name: string, n: number) =>
    splitHeads(linear(x, w(`self_attn.${name}.weight`), bias(name)), n);
  const q = rotate(heads("q_proj", cfg.heads), cos, sin);
  const k = rotate(heads("k_proj", cfg.kvHeads), cos, sin);
  const v = heads("v_proj", cfg.kvHeads);
  const attended = mergeHeads(plan.attend(i, q, k, v));
  h = add(h, linear(attended, w("self_attn.o_proj.weight"), bias("o_proj")));
  const y = rmsNorm(h, w("post_attention_layernorm.weight"), cfg.normEps);
  return add(
    h,
    swiglu(y, w("mlp.gate_proj.weight"), w("mlp.up_proj.weight"), w("mlp.down_proj.weight")),
  );
}

function gpt2Hidden(
  cfg: ModelConfig,
  p: Params<Tensor>,
  ids: Tensor,
  plan: AttentionPlan,
  opts: ForwardOptions,
): Tensor {
  const t = ids.shape[1];
  const wpe = get(p, "transformer.wpe.weight");
  if (plan.positions === null && t > cfg.context) {
    throw new DslError("gpt2", `sequence length ${t} exceeds the context ${cfg.context}`);
  }
  const positions = plan.positions === null
    ? slice(wpe, [0, 0], [t, cfg.width])
    : take(wpe, plan.positions, 0);
  let h = add(embedding(get(p, "transformer.wte.weight"), ids), positions);
  const run = blockRunner(opts);
  for (let i = 0; i < cfg.layers; i++) h = run((h) => gpt2Block(cfg, p, plan, i, h), h);
  return layerNorm(
    h,
    get(p, "transformer.ln_f.weight"),
    get(p, "transformer.ln_f.bias"),
    cfg.normEps,
  );
}

function gpt2Block(
  cfg: ModelConfig,
  p: Params<Tensor>,
  plan: AttentionPlan,
  i: number,
  h: Tensor,
): Tensor {
  const [b, t] = h.shape;
  const w = (n: string) => get(p, `transformer.h.${i}.${n}`);
  const x = layerNorm(h, w("ln_1.weight"), w("ln_1.bias"), cfg.normEps);
  const qkv = conv1d(x, w("attn.c_attn.weight"), w("attn.c_attn.bias"));
  const part = (j: number) =>
    splitHeads(slice(qkv, [0, 0, j * cfg.width], [b, t, (j + 1) * cfg.width]), cfg.heads);
  const attn = mergeHeads(plan.attend(i, part(0), part(1), part(2)));
  h = add(h, conv1d(attn, w("attn.c_proj.weight"), w("attn.c_proj.bias")));
  const y = layerNorm(h, w("ln_2.weight"), w("ln_2.bias"), cfg.normEps);
  const fc = { weight: w("mlp.c_fc.weight"), bias: w("mlp.c_fc.bias") };
  const proj = { weight: w("mlp.c_proj.weight"), bias: w("mlp.c_proj.bias") };
  return add(h, mlpGelu(y, fc, proj, "conv1d"));
}

/** Next-token logits [B, T, vocab] for token ids [B, T] (i32). */
export function forward(
  cfg: ModelConfig,
  params: Params<Tensor>,
  ids: TensorLike,
  plan: AttentionPlan = CAUSAL,
  opts: ForwardOptions = {},
): Tensor {
  const tokens = tokenIds(ids, "forward");
  return linear(hiddenStates(cfg, params, tokens, plan, opts), headWeight(cfg, params));
}

/** `ids` as a tensor, checked to be i32 [batch, length] (`op` names the caller in the error). */
function tokenIds(ids: TensorLike, op: string): Tensor {
  const tokens = asTensor(ids, op);
  if (tokens.dtype !== "i32" || tokens.ndim !== 2) {
    throw new DslError(
      op,
      `token ids must be i32 [batch, length], got ${tokens.dtype}[${tokens.shape}]`,
    );
  }
  return tokens;
}

/** The final hidden states [B, T, width] the LM head reads. */
export function hiddenStates(
  cfg: ModelConfig,
  params: Params<Tensor>,
  tokens: Tensor,
  plan: AttentionPlan,
  opts: ForwardOptions,
): Tensor {
  return cfg.family === "llama"
    ? llamaHidden(cfg, params, tokens, plan, opts)
    : gpt2Hidden(cfg, params, tokens, plan, opts);
}

/** The LM head's [vocab, width] weight: its own, or the tied embedding. */
export function headWeight(cfg: ModelConfig, params: Params<Tensor>): Tensor {
  const head = !cfg.tieEmbeddings
    ? "lm_head.weight"
    : cfg.family === "llama"
    ? "model.embed_tokens.weight"
    : "transformer.wte.weight";
  return get(params, head);
}

/**
 * Most logits one block of `lmLoss` computes at once: 2²² f32 (16 MiB), so that a block stays
 * inside the 128 MiB binding every WebGPU device grants even when the trainer's step runs 8
 * shards side by side (vmap), and is never bound in windows.
 */
export const LOSS_CHUNK_LOGITS = 1 << 22;

/** A language-model batch: inputs, next-token targets, and a 0/1 loss mask, all [B, T]. */
export interface LmBatch<T> {
  /** Input token ids. */
  ids: T;
  /** The token id to predict at each position. */
  targets: T;
  /** 1 where a position counts towards the loss, 0 elsewhere. */
  mask: T;
}

/** Mean next-token cross-entropy over the masked positions. */
export function lmLoss(
  cfg: ModelConfig,
  params: Params<Tensor>,
  batch: LmBatch<Tensor>,
  opts: ForwardOptions = {},
): Tensor {
  const tokens = tokenIds(batch.ids, "lmLoss");
  const h = hiddenStates(cfg, params, tokens, CAUSAL, opts);
  const w = headWeight(cfg, params);
  const n = tokens.shape[0] * tokens.shape[1];
  const budget = opts.lossChunkLogits ?? LOSS_CHUNK_LOGITS;
  const targetRows = opts.targetRows ?? cfg.vocab > TARGET_ROWS_RATIO * cfg.width;
  if (n * cfg.vocab <= budget && !targetRows) {
    return crossEntropy(linear(h, w), batch.targets, { mask: batch.mask });
  }
  // A vocabulary-sized head: the loss over blocks of the vocabulary, each block's logits [n,
  // cols] one buffer of at most `budget` (never [positions, vocab] at once, which lavapipe would
  // bind in windows and reread through selects). Each position's log-sum-exp is the log-sum-exp
  // of its blocks' log-sum-exps. Blocks of the vocabulary read the head's rows once per pass with
  // every position: blocks of positions read all of them once per block, a few rows at a time
  // (Qwen2.5's 151,936 rows for 27 positions at once).
  const flatH = reshape(h, [n, cfg.width]);
  const mask = cast(reshape(asTensor(batch.mask, "lmLoss"), [n]), "f32");
  const cols = lossBlockColumns(budget, n, cfg.vocab);
  const blockLse: Tensor[] = [];
  for (let s = 0; s < cfg.vocab; s += cols) {
    const z = linear(flatH, slice(w, [s, 0], [Math.min(cfg.vocab, s + cols), cfg.width]));
    blockLse.push(logsumexp(z, -1, { keepDims: true }));
  }
  // The target's logit as h·w[target]: no one-hot of [positions, vocab], and the logits'
  // gradient is the softmax's alone. A target outside the vocabulary scores 0, as
  // `crossEntropy`'s one-hot of zeros gives.
  const targets = reshape(asTensor(batch.targets, "lmLoss"), [n]);
  const inVocab = logicalAnd(greaterEqual(targets, 0), less(targets, cfg.vocab));
  const rows = take(w, clip(targets, 0, cfg.vocab - 1), 0);
  const lse = blockLse.length === 1
    ? reshape(blockLse[0], [n])
    : logsumexp(concat(blockLse, -1), -1);
  const perPosition = where(inVocab, sub(lse, sum(mul(flatH, rows), -1)), 0);
  return div(sum(mul(perPosition, mask)), maximum(sum(mask), 1));
}

/**
 * Vocabulary columns of one `lmLoss` block: at most `budget` logits for `n` positions, a multiple
 * of 4 where that leaves a column (the products and the head's slices then read whole vec4s).
 */
export function lossBlockColumns(budget: number, n: number, vocab: number): number {
  const cols = Math.min(vocab, Math.max(1, Math.floor(budget / n)));
  return cols >= 8 ? cols - (cols % 4) : cols;
}

/** How `initParams` fills one tensor: a constant, or N(0, std²) from its own key. */
export interface InitSpec {
  /** Hugging Face name. */
  name: string;
  /** The tensor's shape. */
  shape: number[];
  /** The constant every element takes (norm weights 1, biases 0), or undefined for normal. */
  constant?: number;
  /** Standard deviation of the normal entries. */
  std: number;
  /** The tensor's key is foldIn(prngKey(seed), index). */
  index: number;
}

/**
 * The initialisation of every parameter: N(0, 0.02) weights (GPT-2's residual projections scaled
 * by 1/√(2·layers), as in its paper), unit norms, zero biases. Each tensor's key is folded in from
 * its position, so the values depend only on (config, seed).
 */
export function initSpecs(cfg: ModelConfig): InitSpec[] {
  return Object.entries(parameterShapes(cfg)).map(([name, shape], index) => {
    const std = name.endsWith("c_proj.weight") ? 0.02 / Math.sqrt(2 * cfg.layers) : 0.02;
    const constant = /norm|ln_/.test(name)
      ? (name.endsWith(".bias") ? 0 : 1)
      : name.endsWith(".bias")
      ? 0
      : undefined;
    return { name, shape, constant, std, index };
  });
}

/**
 * Fresh parameters (`initSpecs`) on the CPU reference. It evaluates the PRNG element by element:
 * minutes for a 100M-parameter model, where `initParamsOnDevice` (runtime) takes seconds.
 */
export function initParams(cfg: ModelConfig, seed: number): Params<HostArray> {
  const out: Params<HostArray> = {};
  const key = prngKey(seed);
  for (const { name, shape, constant, std, index } of initSpecs(cfg)) {
    const size = shape.reduce((a, b) => a * b, 1);
    out[name] = constant !== undefined
      ? { shape, dtype: "f32", data: new Float32Array(size).fill(constant) }
      : interpret((k: Tensor) => mul(normal(foldIn(k, index), shape), std), key) as HostArray;
  }
  return out;
}
