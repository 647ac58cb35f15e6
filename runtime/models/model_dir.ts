/**
 * Model folders in the Hugging Face layout: `config.json`, `model.safetensors` (or sharded with
 * `model.safetensors.index.json`) and a tokenizer (`tokenizer.json`, or this project's byte
 * tokenizer named in config.json). Parameters keep their Hugging Face names.
 */

import { join } from "node:path";
import type { HostArray } from "../../dsl/host_array.ts";
import { configFromHf, configToHf, type ModelConfig } from "../../dsl/nn/config.ts";
import { parameterShapes } from "../../dsl/nn/transformer.ts";
import { writeTextAtomic } from "../io/atomic.ts";
import { readSafetensorsFile, writeSafetensors } from "../io/safetensors.ts";
import { BpeTokenizer, type Tokenizer, tokenizerByName } from "../text/tokenizer.ts";

/** A model folder's contents, as `loadModel` returns them. */
export interface LoadedModel {
  /** The model's sizes and settings, from config.json. */
  config: ModelConfig;
  /** Parameters by Hugging Face name. */
  params: Record<string, HostArray>;
  /** The model's tokenizer. */
  tokenizer: Tokenizer;
  /** Prompt template this model was trained with ("compact" for the shipped base). */
  template: string;
  /** config.json as read. */
  hfConfig: Record<string, unknown>;
}

const exists = async (path: string) => {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
};

/**
 * Maps checkpoint names to the names `forward` uses: GPT-2 checkpoints saved from GPT2Model lack
 * the "transformer." prefix, and carry attention-mask buffers that are not parameters.
 */
export function normalizeNames(
  cfg: ModelConfig,
  tensors: Record<string, HostArray>,
): Record<string, HostArray> {
  const out: Record<string, HostArray> = {};
  for (const [name, t] of Object.entries(tensors)) {
    if (cfg.family === "gpt2") {
      if (/\.attn\.(masked_)?bias$/.test(name)) continue;
      out[/^(transformer\.|lm_head\.)/.test(name) ? name : `transformer.${name}`] = t;
    } else {
      out[name] = t;
    }
  }
  return out;
}

/** Checks every expected parameter is present with its shape; extra tensors are an error too. */
export function checkParameters(
  cfg: ModelConfig,
  params: Record<string, HostArray>,
  source: string,
): void {
  const shapes = parameterShapes(cfg);
  const problems: string[] = [];
  for (const [name, shape] of Object.entries(shapes)) {
    const t = params[name];
    if (!t) problems.push(`missing ${name} [${shape}]`);
    else if (t.shape.join() !== shape.join()) {
      problems.push(`${name} is [${t.shape}], expected [${shape}]`);
    }
  }
  for (const name of Object.keys(params)) {
    if (!(name in shapes) && !(cfg.tieEmbeddings && name === "lm_head.weight")) {
      problems.push(`unexpected tensor ${name}`);
    }
  }
  if (problems.length) {
    throw new Error(
      `${source}: checkpoint does not match config.json:\n  ${problems.slice(0, 10).join("\n  ")}`,
    );
  }
}

/** Loads a model folder. */
export async function loadModel(dir: string): Promise<LoadedModel> {
  const configPath = join(dir, "config.json");
  let hfConfig: Record<string, unknown>;
  try {
    hfConfig = JSON.parse(await Deno.readTextFile(configPath));
  } catch (e) {
    throw new Error(`${configPath}: cannot read model config (${(e as Error).message})`);
  }
  const config = configFromHf(hfConfig);
  let tensors: Record<string, HostArray> = {};
  const single = join(dir, "model.safetensors");
  const index = join(dir, "model.safetensors.index.json");
  if (await exists(single)) {
    tensors = (await readSafetensorsFile(single)).tensors;
  } else if (await exists(index)) {
    const map = JSON.parse(await Deno.readTextFile(index)).weight_map as Record<string, string>;
    for (const file of new Set(Object.values(map))) {
      Object.assign(tensors, (await readSafetensorsFile(join(dir, file))).tensors);
    }
  } else {
    throw new Error(`${dir}: no model.safetensors or model.safetensors.index.json`);
  }
  const params = normalizeNames(config, tensors);
  if (config.tieEmbeddings) delete params["lm_head.weight"];
  checkParameters(config, params, dir);
  const tokName = hfConfig.dsl_tokenizer;
  let tokenizer: Tokenizer;
  if (typeof tokName === "string") tokenizer = tokenizerByName(tokName);
  else if (await exists(join(dir, "tokenizer.json"))) {
    tokenizer = new BpeTokenizer(JSON.parse(await Deno.readTextFile(join(dir, "tokenizer.json"))));
  } else if (config.family === "gpt2" && config.vocab === 50257) {
    tokenizer = tokenizerByName("gpt2");
  } else {
    throw new Error(
      `${dir}: no tokenizer.json (and config.json names no dsl_tokenizer); when saving with ` +
        `saveModel, pass the tokenizer in config.json's extras, e.g. { dsl_tokenizer: "byte", ` +
        `dsl_template: "compact" } (a loaded model's hfConfig holds them)`,
    );
  }
  const template = typeof hfConfig.dsl_template === "string" ? hfConfig.dsl_template : "alpaca";
  return { config, params, tokenizer, template, hfConfig };
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
  const hf = { ...configToHf(config), ...extra };
  await writeSafetensors(join(dir, "model.safetensors"), params, {
    format: "pt",
    config: JSON.stringify(hf),
  }, { floatDType });
  await writeTextAtomic(join(dir, "config.json"), JSON.stringify(hf, null, 2) + "\n");
}
