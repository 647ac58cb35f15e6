/**
 * Model folders as bytes, wherever they live: a Hugging Face-layout folder (`config.json`,
 * `model.safetensors` or a sharded `model.safetensors.index.json`, tokenizer files) is read through
 * a `ModelFiles` source — the disk in Deno (`loadModel` in model_dir.ts), `fetch` or `File`
 * objects in a browser — and a model is written as the same files in memory (`modelFileBytes`,
 * which `saveModel` writes to disk). Nothing here touches the file system, so the browser build
 * uses it unchanged.
 */

import type { HostArray } from "../../dsl/host_array.ts";
import { configFromHf, configToHf, type ModelConfig } from "../../dsl/nn/config.ts";
import { parameterShapes } from "../../dsl/nn/transformer.ts";
import {
  parseSafetensors,
  serializeSafetensors,
  type StorageDType,
} from "../io/safetensors_format.ts";
import {
  hfTokenizerFromFiles,
  type Tokenizer,
  TOKENIZER_FILES,
  tokenizerByName,
} from "../text/tokenizer.ts";

/** A model folder's contents, as `loadModel` and `loadModelFiles` return them. */
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
  /** The storage dtype of the checkpoint's float tensors (F32 where they differ; absent: F32). */
  floatDType?: "F32" | "F16" | "BF16";
}

/** The files of a model folder, read by name (a path relative to the folder). */
export interface ModelFiles {
  /** The folder in messages: a path, a URL or the name of a chosen directory. */
  readonly source: string;
  /** The bytes of `name`, or undefined when the folder has no such file. */
  read(name: string): Promise<Uint8Array | undefined>;
}

/** Where `name` is, for messages. */
function locate(files: ModelFiles, name: string): string {
  return `${files.source.replace(/\/+$/, "")}/${name}`;
}

async function readText(files: ModelFiles, name: string): Promise<string | undefined> {
  const bytes = await files.read(name);
  return bytes === undefined ? undefined : new TextDecoder().decode(bytes);
}

function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${where}: not valid JSON (${(e as Error).message})`);
  }
}

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

/** Reads and interprets config.json. */
export async function readModelConfig(
  files: ModelFiles,
): Promise<{ config: ModelConfig; hfConfig: Record<string, unknown> }> {
  const where = locate(files, "config.json");
  let hfConfig: Record<string, unknown>;
  try {
    const text = await readText(files, "config.json");
    if (text === undefined) throw new Error("no such file");
    hfConfig = JSON.parse(text);
  } catch (e) {
    throw new Error(`${where}: cannot read model config (${(e as Error).message})`);
  }
  return { config: configFromHf(hfConfig), hfConfig };
}

/**
 * Reads the weights (model.safetensors, or the shards model.safetensors.index.json names), maps
 * their names (`normalizeNames`), drops a tied lm_head and checks them against `config`.
 */
export async function readModelParams(
  files: ModelFiles,
  config: ModelConfig,
): Promise<Record<string, HostArray>> {
  return (await readModelWeights(files, config)).params;
}

/**
 * `readModelParams`, and the storage dtype the checkpoint's float tensors share (F32 where they
 * differ): what `--frozen-dtype auto` keeps the frozen weights in on the device.
 */
export async function readModelWeights(
  files: ModelFiles,
  config: ModelConfig,
): Promise<{ params: Record<string, HostArray>; floatDType: "F32" | "F16" | "BF16" }> {
  const tensors: Record<string, HostArray> = {};
  const dtypes = new Set<StorageDType>();
  const read = async (bytes: Uint8Array, where: string) => {
    const file = await parseSafetensors(bytes, where);
    Object.values(file.dtypes).forEach((d) => d !== "I32" && dtypes.add(d));
    Object.assign(tensors, file.tensors);
  };
  const single = await files.read("model.safetensors");
  if (single !== undefined) {
    await read(single, locate(files, "model.safetensors"));
  } else {
    const indexText = await readText(files, "model.safetensors.index.json");
    if (indexText === undefined) {
      throw new Error(`${files.source}: no model.safetensors or model.safetensors.index.json`);
    }
    const where = locate(files, "model.safetensors.index.json");
    const map = (parseJson(indexText, where) as { weight_map?: Record<string, string> })
      .weight_map;
    if (!map || typeof map !== "object") throw new Error(`${where}: no weight_map`);
    for (const file of new Set(Object.values(map))) {
      const bytes = await files.read(file);
      if (bytes === undefined) throw new Error(`${where}: names ${file}, which is missing`);
      await read(bytes, locate(files, file));
    }
  }
  const params = normalizeNames(config, tensors);
  if (config.tieEmbeddings) delete params["lm_head.weight"];
  checkParameters(config, params, files.source);
  const [only] = dtypes;
  const floatDType = dtypes.size === 1 && only !== "I32" ? only : "F32";
  return { params, floatDType };
}

/**
 * The folder's tokenizer, chosen as `loadModel` chooses it: the tokenizer config.json names
 * (`dsl_tokenizer`), else tokenizer.json with tokenizer_config.json and a chat template
 * (chat_template.jinja, else chat_template.json, else the config's), else GPT-2's for a GPT-2
 * vocabulary.
 */
export async function readModelTokenizer(
  files: ModelFiles,
  config: ModelConfig,
  hfConfig: Record<string, unknown>,
): Promise<Tokenizer> {
  const tokName = hfConfig.dsl_tokenizer;
  if (typeof tokName === "string") return tokenizerByName(tokName);
  if (await readText(files, "tokenizer.json") !== undefined) {
    return await hfTokenizerFromFiles(
      (name) => readText(files, name),
      (name) => locate(files, name),
    );
  }
  if (config.family === "gpt2" && config.vocab === 50257) return tokenizerByName("gpt2");
  throw new Error(
    `${files.source}: no tokenizer.json (and config.json names no dsl_tokenizer); when saving ` +
      `with saveModel, pass the tokenizer in config.json's extras, e.g. { dsl_tokenizer: "byte", ` +
      `dsl_template: "compact" } (a loaded model's hfConfig holds them)`,
  );
}

/** The prompt template a model folder names (`dsl_template`), else "alpaca". */
export function modelTemplate(hfConfig: Record<string, unknown>): string {
  return typeof hfConfig.dsl_template === "string" ? hfConfig.dsl_template : "alpaca";
}

/** Loads a model folder from any file source (the browser's counterpart of `loadModel`). */
export async function loadModelFiles(files: ModelFiles): Promise<LoadedModel> {
  const { config, hfConfig } = await readModelConfig(files);
  const { params, floatDType } = await readModelWeights(files, config);
  const tokenizer = await readModelTokenizer(files, config, hfConfig);
  return { config, params, tokenizer, template: modelTemplate(hfConfig), hfConfig, floatDType };
}

/**
 * config.json and model.safetensors of a model, in memory (what `saveModel` writes); `extra`
 * goes into config.json, `floatDType` is the weights' storage dtype (default F32).
 */
export async function modelFileBytes(
  config: ModelConfig,
  params: Record<string, HostArray>,
  extra: Record<string, unknown> = {},
  floatDType: "F32" | "F16" | "BF16" = "F32",
): Promise<Record<string, Uint8Array>> {
  const hf = { ...configToHf(config), ...extra };
  return {
    "config.json": new TextEncoder().encode(JSON.stringify(hf, null, 2) + "\n"),
    "model.safetensors": await serializeSafetensors(
      params,
      { format: "pt", config: JSON.stringify(hf) },
      { floatDType },
    ),
  };
}

/** The tokenizer files `files` holds, by name (for a fine-tuned folder to keep them). */
export async function tokenizerFileBytes(files: ModelFiles): Promise<Record<string, Uint8Array>> {
  const out: Record<string, Uint8Array> = {};
  for (const name of TOKENIZER_FILES) {
    const bytes = await files.read(name);
    if (bytes !== undefined) out[name] = bytes;
  }
  return out;
}

/** A folder held in memory: file names to bytes (or text). */
export function memoryFiles(
  entries: Record<string, Uint8Array | string>,
  source = "<memory>",
): ModelFiles {
  return {
    source,
    read: (name) => {
      const v = entries[name];
      return Promise.resolve(typeof v === "string" ? new TextEncoder().encode(v) : v);
    },
  };
}

/**
 * A folder served over HTTP(S): `read(name)` fetches `base` + name; 404 means no such file.
 * `opts.source` names it in messages (default: the URL); `opts.fetch` replaces `fetch`.
 */
export function urlFiles(
  base: string | URL,
  opts: { source?: string; fetch?: typeof fetch } = {},
): ModelFiles {
  const root = String(base).endsWith("/") ? String(base) : `${base}/`;
  const fetcher = opts.fetch ?? fetch;
  return {
    source: opts.source ?? String(base),
    async read(name) {
      const url = new URL(name, root);
      const res = await fetcher(url);
      if (res.status === 404) {
        await res.body?.cancel();
        return undefined;
      }
      if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`);
      return new Uint8Array(await res.arrayBuffer());
    },
  };
}

/** What `fileListFiles` needs of a browser `File` (Deno's `File` has it too). */
export interface FileLike {
  /** The file's name. */
  readonly name: string;
  /** Its path under a chosen directory (`<input webkitdirectory>`), "" otherwise. */
  readonly webkitRelativePath?: string;
  /** Its contents. */
  arrayBuffer(): Promise<ArrayBuffer>;
}

/**
 * A folder chosen in a browser: the files of `<input type="file" webkitdirectory>` (named by their
 * path under the chosen directory, whose own name is dropped) or of `<input type="file"
 * multiple>` (named by their file names).
 */
export function fileListFiles(list: Iterable<FileLike>, source?: string): ModelFiles {
  const byName = new Map<string, FileLike>();
  let top: string | undefined;
  for (const f of list) {
    const rel = f.webkitRelativePath ?? "";
    const parts = rel.split("/");
    if (rel && parts.length > 1) {
      top ??= parts[0];
      byName.set(parts.slice(1).join("/"), f);
    } else byName.set(f.name, f);
  }
  return {
    source: source ?? top ?? "chosen files",
    async read(name) {
      const f = byName.get(name);
      return f ? new Uint8Array(await f.arrayBuffer()) : undefined;
    },
  };
}
