/**
 * A model folder's tokenizer files: `tokenizer.json`, `tokenizer_config.json` and the chat
 * template (`chat_template.jinja` or `chat_template.json`, which take precedence over the
 * config's `chat_template`, as in Hugging Face's loader).
 */

import { join } from "node:path";
import { writeTextAtomic } from "../io/atomic.ts";
import { type HfTokenizer, hfTokenizerFromFiles, TOKENIZER_FILES } from "./tokenizer.ts";

async function readText(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new Error(`${path}: cannot read (${(e as Error).message})`);
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
export function loadTokenizer(dir: string): Promise<HfTokenizer> {
  return hfTokenizerFromFiles((name) => readText(join(dir, name)), (name) => join(dir, name));
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
