/** Configuration of the shipped base model (models/base), trained by `deno task pretrain`. */

import type { ModelConfig } from "../../dsl/nn/config.ts";

/** The shipped base: a Llama-family decoder (RMSNorm, RoPE, SwiGLU — the family HD-PiSSA adapts). */
export const BASE_CONFIG: ModelConfig = {
  family: "llama",
  vocab: 260,
  width: 144,
  layers: 4,
  heads: 4,
  kvHeads: 4,
  ffn: 384,
  context: 256,
  normEps: 1e-5,
  ropeTheta: 10000,
  tieEmbeddings: true,
  bos: 256,
  eos: 257,
  pad: 258,
};
