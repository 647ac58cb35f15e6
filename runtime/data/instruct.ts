/**
 * Instruction data for supervised fine-tuning: JSONL records with MetaMathQA's field names
 * (`query`, `response`; configurable), formatted with an Alpaca-style prompt or with the model's
 * own chat template ("chat"); the loss falls on the response tokens only (and EOS, or the chat
 * template's end-of-turn text). Sequences are truncated, padded with a 0 mask, shuffled with a
 * seed and sharded across K devices (device k takes samples k, k+K, …).
 */

import type { HostArray } from "../../dsl/host_array.ts";
import type { ChatMessage, ChatRenderOptions, ChatTemplate } from "../text/chat_template.ts";
import type { Tokenizer } from "../text/tokenizer.ts";
import { permutation } from "./rng.ts";

/** One instruction-tuning record. */
export interface Example {
  /** The instruction (prompt body). */
  query: string;
  /** The target response. */
  response: string;
}

/**
 * Prompt templates; `{query}` is replaced. "alpaca" is the prompt the HD-PiSSA/PiSSA papers use
 * on MetaMathQA; "compact" keeps its section markers but drops the 90-byte preamble, which a
 * byte-level model with a 256-token context cannot afford (the shipped base model uses it).
 * The "chat" template (see `formatPrompt`) is the model's own, so it is not listed here.
 */
export const PROMPT_TEMPLATES = {
  alpaca: "Below is an instruction that describes a task. Write a response that appropriately " +
    "completes the request.\n\n### Instruction:\n{query}\n\n### Response:\n",
  compact: "### Instruction:\n{query}\n\n### Response:\n",
} as const;
/** Names of the built-in prompt templates; "chat" renders the tokenizer's chat template. */
export type TemplateName = keyof typeof PROMPT_TEMPLATES | "chat";

/** Whether `template` is a built-in name or a custom template containing `{query}`. */
export function isTemplate(template: string): boolean {
  return template === "chat" || Object.hasOwn(PROMPT_TEMPLATES, template) ||
    template.includes("{query}");
}

/** The tokenizer's chat template, or an error that says where one comes from. */
function chatTemplateOf(tok: Tokenizer | undefined): ChatTemplate {
  if (!tok) {
    throw new Error('template "chat" renders the tokenizer\'s chat template: pass the tokenizer');
  }
  if (!tok.chatTemplate) {
    throw new Error(
      `template "chat": the ${tok.kind} tokenizer has no chat template (a model folder gives ` +
        "one in tokenizer_config.json's chat_template or in chat_template.jinja); use the " +
        "alpaca or compact template instead",
    );
  }
  return tok.chatTemplate;
}

/**
 * A rendered chat prompt as the pipeline tokenizes it: every sequence starts with the
 * tokenizer's BOS id (see `encodeExample` and `generate`), so the BOS text a template writes
 * (Llama 3's `{{ bos_token }}`) is dropped rather than doubled.
 */
function withoutBos(tok: Tokenizer, chat: ChatTemplate, text: string): string {
  const bos = chat.bosToken;
  return tok.bos !== undefined && bos && text.startsWith(bos) ? text.slice(bos.length) : text;
}

/**
 * The prompt for `query`: a named template, a custom one containing `{query}`, or "chat": the
 * tokenizer's chat template rendered for one user message with the generation prompt (the
 * tokenizer is then required).
 */
export function formatPrompt(
  query: string,
  template: TemplateName | string = "alpaca",
  tok?: Tokenizer,
): string {
  if (template === "chat") {
    const chat = chatTemplateOf(tok);
    const text = chat.render([{ role: "user", content: query }], { addGenerationPrompt: true });
    return withoutBos(tok!, chat, text);
  }
  const t = Object.hasOwn(PROMPT_TEMPLATES, template)
    ? PROMPT_TEMPLATES[template as keyof typeof PROMPT_TEMPLATES]
    : template;
  if (!t.includes("{query}")) {
    throw new Error(
      `prompt template must contain {query} (or be alpaca, compact or chat): ${JSON.stringify(t)}`,
    );
  }
  return t.replace("{query}", query);
}

/** Token ids of one example and which of them are trained on (the response). */
export interface EncodedExample {
  /** BOS (if the tokenizer has one), prompt and response tokens (EOS or end-of-turn included). */
  tokens: number[];
  /** 1 where the token is a target of the loss. */
  weights: number[];
}

/**
 * Tokenizes an example's prompt and response, weighting only the response: with a text template
 * the response is followed by EOS; with "chat" it is the assistant turn as the model's chat
 * template writes it, through its end-of-turn text (see `encodeChat`).
 */
export function encodeExample(
  tok: Tokenizer,
  ex: Example,
  template: TemplateName | string = "alpaca",
): EncodedExample {
  if (template === "chat") {
    return encodeChat(tok, [
      { role: "user", content: ex.query },
      { role: "assistant", content: ex.response },
    ]);
  }
  const prompt = tok.encode(formatPrompt(ex.query, template));
  const response = [...tok.encode(ex.response), tok.eos];
  return masked(tok, prompt, response);
}

/**
 * Tokenizes a conversation whose last message is the assistant's, with the tokenizer's chat
 * template: the prompt is the conversation before that message rendered with the generation
 * prompt (`add_generation_prompt`), the response is the rest up to and including the template's
 * end-of-turn text (`ChatTemplate.turn`); only the response is weighted. `options.variables`
 * reach the template (e.g. `{ enable_thinking: false }` for Qwen3).
 */
export function encodeChat(
  tok: Tokenizer,
  messages: readonly ChatMessage[],
  options: Omit<ChatRenderOptions, "addGenerationPrompt"> = {},
): EncodedExample {
  const chat = chatTemplateOf(tok);
  const turn = chat.turn(messages, options);
  return masked(tok, tok.encode(withoutBos(tok, chat, turn.prompt)), tok.encode(turn.response));
}

function masked(tok: Tokenizer, prompt: number[], response: number[]): EncodedExample {
  const head = tok.bos === undefined ? prompt : [tok.bos, ...prompt];
  return {
    tokens: [...head, ...response],
    weights: [...head.map(() => 0), ...response.map(() => 1)],
  };
}

/**
 * A [B, T] batch: ids = tokens[0..T), targets = tokens[1..T], mask = weight of each target.
 * Longer sequences are truncated (their tail is lost: the mask says what still counts); shorter
 * ones are padded with `pad` and mask 0.
 */
export function collate(
  examples: readonly EncodedExample[],
  length: number,
  pad: number,
): { ids: HostArray; targets: HostArray; mask: HostArray } {
  const b = examples.length;
  const ids = new Int32Array(b * length).fill(pad);
  const targets = new Int32Array(b * length).fill(pad);
  const mask = new Float32Array(b * length);
  examples.forEach((ex, row) => {
    if (!Array.isArray(ex?.tokens)) {
      throw new TypeError(
        `collate: example ${row} has no tokens; encode examples first with ` +
          "encodeExample(tokenizer, { query, response }, template)",
      );
    }
    const n = Math.min(ex.tokens.length - 1, length);
    for (let t = 0; t < n; t++) {
      ids[row * length + t] = ex.tokens[t];
      targets[row * length + t] = ex.tokens[t + 1];
      mask[row * length + t] = ex.weights[t + 1];
    }
  });
  const shape = [b, length];
  return {
    ids: { shape, dtype: "i32", data: ids },
    targets: { shape, dtype: "i32", data: targets },
    mask: { shape, dtype: "f32", data: mask },
  };
}

/** Field names of the query and response in instruction JSONL records. */
export interface JsonlFields {
  /** Field holding the query (default "query"). */
  query?: string;
  /** Field holding the response (default "response"). */
  response?: string;
}

/** Parses instruction JSONL; a bad line is reported with its number and the missing field. */
export function parseJsonl(text: string, fields: JsonlFields = {}, source = "data"): Example[] {
  return parseJsonlLines(text, fields, source).map(({ query, response }) => ({ query, response }));
}

/** An instruction record and the 1-based line of the JSONL text it came from. */
export interface NumberedExample extends Example {
  /** Line number in the file (blank lines count), for messages that point at the record. */
  line: number;
}

/** `parseJsonl` keeping each record's line number (see `NumberedExample`). */
export function parseJsonlLines(
  text: string,
  fields: JsonlFields = {},
  source = "data",
): NumberedExample[] {
  const q = fields.query ?? "query";
  const r = fields.response ?? "response";
  const out: NumberedExample[] = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line);
    } catch (e) {
      throw new Error(`${source}:${i + 1}: not valid JSON (${(e as Error).message})`);
    }
    for (const f of [q, r]) {
      if (typeof rec[f] !== "string") {
        throw new Error(`${source}:${i + 1}: field "${f}" is missing or not a string`);
      }
    }
    out.push({ query: rec[q] as string, response: rec[r] as string, line: i + 1 });
  });
  if (out.length === 0) throw new Error(`${source}: no examples`);
  return out;
}

/** Reads and parses an instruction JSONL file (see `parseJsonl`). */
export async function readJsonl(path: string, fields: JsonlFields = {}): Promise<Example[]> {
  return parseJsonl(await Deno.readTextFile(path), fields, path);
}

/** The samples device `k` of `devices` takes: k, k+K, k+2K, … */
export function shard<T>(items: readonly T[], k: number, devices: number): T[] {
  if (!(devices >= 1) || k < 0 || k >= devices) {
    throw new Error(`shard ${k} of ${devices} is invalid`);
  }
  return items.filter((_, i) => i % devices === k);
}

/**
 * Deterministic epoch-based batching: position `p` (a count of samples served) maps to epoch
 * ⌊p/n⌋ and an index in that epoch's permutation — so a resumed run continues exactly.
 */
export class BatchSampler {
  private epochOrder: number[] = [];
  private epochIndex = -1;

  /** A sampler over `size` examples whose epoch orders derive from `seed`. */
  constructor(readonly size: number, readonly seed: number) {
    if (size <= 0) throw new Error("BatchSampler: no examples");
  }

  /** Indices of the `count` samples starting at position `position`. */
  take(position: number, count: number): number[] {
    const out: number[] = [];
    for (let p = position; p < position + count; p++) {
      const epoch = Math.floor(p / this.size);
      if (epoch !== this.epochIndex) {
        this.epochOrder = permutation(this.size, this.seed, epoch);
        this.epochIndex = epoch;
      }
      out.push(this.epochOrder[p % this.size]);
    }
    return out;
  }
}
