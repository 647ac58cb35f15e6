/**
 * Model folders in the Hugging Face layout: `config.json`, `model.safetensors` (or sharded with
 * `model.safetensors.index.json`) and a tokenizer (`tokenizer.json` with `tokenizer_config.json`
 * and its chat template, or this project's byte tokenizer named in config.json). Parameters keep
 * their Hugging Face names.
 */

import { join } from "node:path";
import type { HostArray } from "../../dsl/host_array.ts";
import type { ModelConfig } from "../../dsl/nn/config.ts";
import { writeFileAtomic } from "../io/atomic.ts";
import {
  type LoadedModel,
  modelFileBytes,
  type ModelFiles,
  modelTemplate,
  readModelConfig,
  readModelWeights,
} from "./model_bytes.ts";
import { type Tokenizer, tokenizerByName } from "../text/tokenizer.ts";
import { hasTokenizerJson, loadTokenizer } from "../text/tokenizer_files.ts";

export { checkParameters, type LoadedModel, normalizeNames } from "./model_bytes.ts";

/** A folder on disk as a `ModelFiles` source (see model_bytes.ts, shared with the browser). */
export function folderFiles(dir: string): ModelFiles {
  return {
    source: dir,
    async read(name) {
      try {
        return await Deno.readFile(join(dir, name));
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) return undefined;
        throw new Error(`${join(dir, name)}: cannot read (${(e as Error).message})`);
      }
    },
  };
}

/** Loads a model folder. */
export async function loadModel(dir: string): Promise<LoadedModel> {
  const files = folderFiles(dir);
  const { config, hfConfig } = await readModelConfig(files);
  const { params, floatDType } = await readModelWeights(files, config);
  const tokName = hfConfig.dsl_tokenizer;
  let tokenizer: Tokenizer;
  if (typeof tokName === "string") tokenizer = tokenizerByName(tokName);
  else if (await hasTokenizerJson(dir)) tokenizer = await loadTokenizer(dir);
  else if (config.family === "gpt2" && config.vocab === 50257) {
    tokenizer = tokenizerByName("gpt2");
  } else {
    throw new Error(
      `${dir}: no tokenizer.json (and config.json names no dsl_tokenizer); when saving with ` +
        `saveModel, pass the tokenizer in config.json's extras, e.g. { dsl_tokenizer: "byte", ` +
        `dsl_template: "compact" } (a loaded model's hfConfig holds them)`,
    );
  }
  return { config, params, tokenizer, template: modelTemplate(hfConfig), hfConfig, floatDType };
}

/**
 * Writes config.json and model.safetensors (atomically); `extra` goes into config.json. A folder
 * without tokenizer files needs `dsl_tokenizer` (and `dsl_template`) there for `loadModel` to read
 * it back: pass the `dsl_*` keys of the loaded model's `hfConfig`. `floatDType` is the storage
 * dtype of the weights (default F32; BF16 as Qwen and Llama checkpoints are published).
 */
export async function saveModel(
  dir: string,
  config: ModelConfig,
  params: Record<string, HostArray>,
  extra: Record<string, unknown> = {},
  floatDType: "F32" | "F16" | "BF16" = "F32",
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const files = await modelFileBytes(config, params, extra, floatDType);
  await writeFileAtomic(join(dir, "model.safetensors"), files["model.safetensors"]);
  await writeFileAtomic(join(dir, "config.json"), files["config.json"]);
}
