/** Decoder configuration, read from and written to Hugging Face `config.json` files. */

import { DslError } from "../errors.ts";

/** The decoder architectures supported: Llama-style (also Mistral, Qwen2) and GPT-2. */
export type ModelFamily = "llama" | "gpt2";

/** The sizes and settings of a decoder model. */
export interface ModelConfig {
  /** Architecture, which fixes the parameter names and the layer structure. */
  family: ModelFamily;
  /** Vocabulary size. */
  vocab: number;
  /** Hidden (embedding) width. */
  width: number;
  /** Number of decoder blocks. */
  layers: number;
  /** Attention (query) heads. */
  heads: number;
  /** Key/value heads (grouped-query attention); equals `heads` for GPT-2. */
  kvHeads: number;
  /** Hidden width of the MLP. */
  ffn: number;
  /** Longest sequence (GPT-2: learned positions; Llama: the trained context). */
  context: number;
  /** Epsilon of the RMSNorm (Llama) or LayerNorm (GPT-2) layers. */
  normEps: number;
  /** Base of the rotary position embedding frequencies (0 for GPT-2, which has none). */
  ropeTheta: number;
  /** The output projection reuses the token embedding matrix. */
  tieEmbeddings: boolean;
  /**
   * Llama family: which attention projections have a bias. Qwen2 has q/k/v biases ("qkv");
   * Llama's `attention_bias: true` gives all four ("qkvo"). Absent: none.
   */
  attentionBias?: "qkv" | "qkvo";
  /** Beginning-of-sequence token id, if the config names one. */
  bos?: number;
  /** End-of-sequence token id, if the config names one. */
  eos?: number;
  /** Padding token id, if the config names one. */
  pad?: number;
}

type Json = Record<string, unknown>;

function num(json: Json, key: string, fallback?: number): number {
  const v = json[key] ?? fallback;
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new DslError("modelConfig", `config.json: "${key}" must be a number (got ${v})`);
  }
  return v;
}

const optionalId = (v: unknown) => (typeof v === "number" ? v : undefined);

/** Reads a Hugging Face config.json object (model_type "llama" or "gpt2"). */
export function configFromHf(json: Json): ModelConfig {
  const type = json.model_type;
  let cfg: ModelConfig;
  if (type === "llama" || type === "mistral" || type === "qwen2") {
    const heads = num(json, "num_attention_heads");
    cfg = {
      family: "llama",
      vocab: num(json, "vocab_size"),
      width: num(json, "hidden_size"),
      layers: num(json, "num_hidden_layers"),
      heads,
      kvHeads: num(json, "num_key_value_heads", heads),
      ffn: num(json, "intermediate_size"),
      context: num(json, "max_position_embeddings"),
      normEps: num(json, "rms_norm_eps", 1e-6),
      ropeTheta: num(json, "rope_theta", 10000),
      tieEmbeddings: json.tie_word_embeddings === true,
    };
    // Qwen2's q/k/v projections always have biases (its modeling code hard-codes them); Llama
    // and Mistral configs may ask for biases on all four with attention_bias.
    if (type === "qwen2") cfg.attentionBias = "qkv";
    else if (json.attention_bias === true) cfg.attentionBias = "qkvo";
  } else if (type === "gpt2") {
    const width = num(json, "n_embd");
    cfg = {
      family: "gpt2",
      vocab: num(json, "vocab_size"),
      width,
      layers: num(json, "n_layer"),
      heads: num(json, "n_head"),
      kvHeads: num(json, "n_head"),
      ffn: typeof json.n_inner === "number" ? json.n_inner : 4 * width,
      context: num(json, "n_positions", num(json, "n_ctx", 1024)),
      normEps: num(json, "layer_norm_epsilon", 1e-5),
      ropeTheta: 0,
      tieEmbeddings: json.tie_word_embeddings !== false,
    };
  } else {
    throw new DslError(
      "modelConfig",
      `config.json: model_type "${type}" is not supported (supported: llama, mistral, qwen2, gpt2)`,
    );
  }
  cfg.bos = optionalId(json.bos_token_id);
  cfg.eos = optionalId(json.eos_token_id);
  cfg.pad = optionalId(json.pad_token_id);
  return validateConfig(cfg);
}

/** The Hugging Face config.json object for `cfg`. */
export function configToHf(cfg: ModelConfig): Json {
  const ids = { bos_token_id: cfg.bos, eos_token_id: cfg.eos, pad_token_id: cfg.pad };
  if (cfg.family === "gpt2") {
    return {
      model_type: "gpt2",
      architectures: ["GPT2LMHeadModel"],
      vocab_size: cfg.vocab,
      n_embd: cfg.width,
      n_layer: cfg.layers,
      n_head: cfg.heads,
      n_inner: cfg.ffn,
      n_positions: cfg.context,
      n_ctx: cfg.context,
      layer_norm_epsilon: cfg.normEps,
      activation_function: "gelu_new",
      tie_word_embeddings: cfg.tieEmbeddings,
      ...ids,
    };
  }
  const qwen2 = cfg.attentionBias === "qkv";
  return {
    model_type: qwen2 ? "qwen2" : "llama",
    architectures: [qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM"],
    vocab_size: cfg.vocab,
    hidden_size: cfg.width,
    num_hidden_layers: cfg.layers,
    num_attention_heads: cfg.heads,
    num_key_value_heads: cfg.kvHeads,
    intermediate_size: cfg.ffn,
    max_position_embeddings: cfg.context,
    rms_norm_eps: cfg.normEps,
    rope_theta: cfg.ropeTheta,
    hidden_act: "silu",
    tie_word_embeddings: cfg.tieEmbeddings,
    torch_dtype: "float32",
    ...(qwen2 ? {} : { attention_bias: cfg.attentionBias === "qkvo" }),
    ...ids,
  };
}

/** Checks the sizes fit together; returns the config. */
export function validateConfig(cfg: ModelConfig): ModelConfig {
  const positive = ["vocab", "width", "layers", "heads", "kvHeads", "ffn", "context"] as const;
  for (const k of positive) {
    if (!Number.isInteger(cfg[k]) || cfg[k] <= 0) {
      throw new DslError("modelConfig", `${k} must be a positive integer (got ${cfg[k]})`);
    }
  }
  if (cfg.width % cfg.heads !== 0) {
    throw new DslError("modelConfig", `width ${cfg.width} must be divisible by heads ${cfg.heads}`);
  }
  if (cfg.heads % cfg.kvHeads !== 0) {
    throw new DslError(
      "modelConfig",
      `heads ${cfg.heads} must be a multiple of kvHeads ${cfg.kvHeads}`,
    );
  }
  if (cfg.attentionBias !== undefined) {
    if (cfg.family !== "llama" || !["qkv", "qkvo"].includes(cfg.attentionBias)) {
      throw new DslError(
        "modelConfig",
        `attentionBias must be "qkv" or "qkvo" on a llama-family model (got ${cfg.attentionBias} ` +
          `on ${cfg.family})`,
      );
    }
  }
  if (cfg.family === "llama" && (cfg.width / cfg.heads) % 2 !== 0) {
    throw new DslError(
      "modelConfig",
      `rotary embeddings need an even head size (got ${cfg.width / cfg.heads})`,
    );
  }
  return cfg;
}
