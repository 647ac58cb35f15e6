/**
 * A model folder's tokenizer files: `tokenizer.json`, `tokenizer_config.json` and the chat
 * template (`chat_template.jinja` or `chat_template.json`, which take precedence over the
 * config's `chat_template`, as in Hugging Face's loader).
 */

import { join } from "node:path";
import { writeTextAtomic } from "../io/atomic.ts";
import { HfTokenizer, type TokenizerConfig } from "./tokenizer.ts";

/** Files that make up a Hugging Face tokenizer, in the order `loadTokenizer` reads them. */
export const TOKENIZER_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "chat_template.jinja",
  "chat_template.json",
  "special_tokens_map.json",
] as const;

async function readText(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new Error(`${path}: cannot read (${(e as Error).message})`);
  }
}

function parseJson(text: string, path: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

/** Whether `dir` holds a tokenizer.json. */
export async function hasTokenizerJson(dir: string): Promise<boolean> {
  try {
    return (await Deno.stat(join(dir, "tokenizer.json"))).isFile;
  } catch {
    return false;
  }
}

/** Reads `dir`'s tokenizer.json, tokenizer_config.json (optional) and chat template (optional). */
export async function loadTokenizer(dir: string): Promise<HfTokenizer> {
  const jsonPath = join(dir, "tokenizer.json");
  const jsonText = await readText(jsonPath);
  if (jsonText === undefined) throw new Error(`${jsonPath}: no such file`);
  const configPath = join(dir, "tokenizer_config.json");
  const configText = await readText(configPath);
  const config = configText === undefined ? {} : parseJson(configText, configPath);
  if (typeof config !== "object" || config === null || Array.isArray(config)) {
    throw new Error(`${configPath}: not a JSON object`);
  }
  const origin = { json: jsonPath, config: configPath, chatTemplate: configPath };
  const merged: TokenizerConfig = { ...config };
  const jinjaPath = join(dir, "chat_template.jinja");
  const jinja = await readText(jinjaPath);
  const chatJsonPath = join(dir, "chat_template.json");
  const chatJson = jinja === undefined ? await readText(chatJsonPath) : undefined;
  if (jinja !== undefined) {
    merged.chat_template = jinja;
    origin.chatTemplate = jinjaPath;
  } else if (chatJson !== undefined) {
    const parsed = parseJson(chatJson, chatJsonPath) as { chat_template?: unknown };
    if (typeof parsed?.chat_template !== "string") {
      throw new Error(`${chatJsonPath}: expected { "chat_template": "<template>" }`);
    }
    merged.chat_template = parsed.chat_template;
    origin.chatTemplate = chatJsonPath;
  }
  return new HfTokenizer(parseJson(jsonText, jsonPath), merged, origin);
}

/** Copies the tokenizer files `from` holds into `to` (a fine-tuned model keeps its tokenizer). */
export async function copyTokenizerFiles(from: string, to: string): Promise<string[]> {
  const copied: string[] = [];
  for (const name of TOKENIZER_FILES) {
    const text = await readText(join(from, name));
    if (text === undefined) continue;
    await writeTextAtomic(join(to, name), text);
    copied.push(name);
  }
  return copied;
}
