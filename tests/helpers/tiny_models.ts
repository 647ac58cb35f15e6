/** Tiny decoder configurations for tests (seconds on the CPU reference and on llvmpipe). */

import type { ModelConfig } from "../../dsl/nn/config.ts";
import { initParams } from "../../dsl/nn/transformer.ts";
import { saveModel } from "../../runtime/models/model_dir.ts";
import type { Tokenizer } from "../../runtime/text/tokenizer.ts";

export const TINY_LLAMA: ModelConfig = {
  family: "llama",
  vocab: 20,
  width: 16,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  ffn: 24,
  context: 12,
  normEps: 1e-5,
  ropeTheta: 10000,
  tieEmbeddings: false,
  bos: 17,
  eos: 18,
  pad: 19,
};

/** Qwen2-shaped: grouped-query attention, biases on q/k/v (not o), tied embeddings. */
export const TINY_QWEN2: ModelConfig = {
  ...TINY_LLAMA,
  kvHeads: 1,
  tieEmbeddings: true,
  ropeTheta: 1_000_000,
  attentionBias: "qkv",
};

export const TINY_GPT2: ModelConfig = {
  family: "gpt2",
  vocab: 20,
  width: 16,
  layers: 2,
  heads: 2,
  kvHeads: 2,
  ffn: 32,
  context: 12,
  normEps: 1e-5,
  ropeTheta: 0,
  tieEmbeddings: true,
  bos: 17,
  eos: 18,
  pad: 19,
};

/** A tiny byte-level Llama (the shipped base's tokenizer and layout, one small layer). */
export const TINY_BYTE_LLAMA: ModelConfig = {
  family: "llama",
  vocab: 260,
  width: 16,
  layers: 1,
  heads: 2,
  kvHeads: 2,
  ffn: 32,
  context: 128,
  normEps: 1e-5,
  ropeTheta: 10000,
  tieEmbeddings: true,
  bos: 256,
  eos: 257,
  pad: 258,
};

/** Writes TINY_BYTE_LLAMA (seed 1) as a Hugging Face model folder, the way the train CLI reads it. */
export async function saveTinyByteModel(dir: string): Promise<void> {
  await saveModel(dir, TINY_BYTE_LLAMA, initParams(TINY_BYTE_LLAMA, 1), {
    dsl_tokenizer: "byte",
    dsl_template: "compact",
  });
}

/** Symbols a–p are ids 0–15; bos/eos/pad as the tiny configs say. */
export const tinyTokenizer = (cfg: ModelConfig): Tokenizer => ({
  kind: "tiny",
  vocabSize: cfg.vocab,
  bos: cfg.bos,
  eos: cfg.eos!,
  pad: cfg.pad!,
  encode: (text) => [...text].map((c) => c.charCodeAt(0) - 97),
  decode: (ids) => ids.filter((i) => i < 16).map((i) => String.fromCharCode(97 + i)).join(""),
});
