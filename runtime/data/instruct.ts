/**
 * Instruction data for supervised fine-tuning: JSONL records with MetaMathQA's field names
 * (`query`, `response`; configurable), formatted with an Alpaca-style prompt; the loss falls on
 * the response tokens and EOS only. Sequences are truncated, padded with a 0 mask, shuffled with a
 * seed and sharded across K devices (device k takes samples k, k+K, …).
 */

import type { HostArray } from "../../dsl/host_array.ts";
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
 */
export const PROMPT_TEMPLATES = {
  alpaca: "Below is an instruction that describes a task. Write a response that appropriately " +
    "completes the request.\n\n### Instruction:\n{query}\n\n### Response:\n",
  compact: "### Instruction:\n{query}\n\n### Response:\n",
} as const;
/** Names of the built-in prompt templates. */
export type TemplateName = keyof typeof PROMPT_TEMPLATES;

/** The prompt for `query`: a named template or a custom one containing `{query}`. */
export function formatPrompt(query: string, template: TemplateName | string = "alpaca"): string {
  const t = template in PROMPT_TEMPLATES ? PROMPT_TEMPLATES[template as TemplateName] : template;
  if (!t.includes("{query}")) {
    throw new Error(`prompt template must contain {query}: ${JSON.stringify(t)}`);
  }
  return t.replace("{query}", query);
}

/** Token ids of one example and which of them are trained on (response + EOS). */
export interface EncodedExample {
  /** BOS (if the tokenizer has one), prompt, response and EOS tokens. */
  tokens: number[];
  /** 1 where the token is a target of the loss. */
  weights: number[];
}

/** Tokenizes an example's prompt and response, weighting only the response and EOS tokens. */
export function encodeExample(
  tok: Tokenizer,
  ex: Example,
  template: TemplateName | string = "alpaca",
): EncodedExample {
  const prompt = tok.encode(formatPrompt(ex.query, template));
  const response = [...tok.encode(ex.response), tok.eos];
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
  const q = fields.query ?? "query";
  const r = fields.response ?? "response";
  const out: Example[] = [];
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
    out.push({ query: rec[q] as string, response: rec[r] as string });
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
