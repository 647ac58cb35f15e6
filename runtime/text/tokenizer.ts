/**
 * Tokenizers: byte-level (256 bytes + specials; what the shipped base model uses, since digits stay
 * digits), GPT-2's BPE through `npm:gpt-tokenizer` (bundled vocabulary, offline), and a loader for
 * byte-level BPE `tokenizer.json` files (GPT-2, Qwen2, Llama 3, SmolLM style) for user models.
 */

import {
  decode as gpt2Decode,
  encode as gpt2Encode,
} from "npm:gpt-tokenizer@3.4.0/encoding/r50k_base";

/** Text ↔ token ids, with the special token ids a model needs. */
export interface Tokenizer {
  /** Which implementation: "byte", "gpt2" or "bpe". */
  readonly kind: string;
  /** Number of token ids the model's embedding must cover. */
  readonly vocabSize: number;
  /** Beginning-of-sequence id, if the tokenizer has one. */
  readonly bos?: number;
  /** End-of-sequence id. */
  readonly eos: number;
  /** Padding id. */
  readonly pad: number;
  /** Token ids of `text` (no special tokens added). */
  encode(text: string): number[];
  /** Text of `ids`, special tokens dropped. */
  decode(ids: readonly number[]): string;
}

/** Bytes 0–255 are themselves; specials follow. vocabSize is rounded up to a multiple of 4. */
export class ByteTokenizer implements Tokenizer {
  /** Always "byte". */
  readonly kind = "byte";
  /** `<|bos|>`. */
  readonly bos = 256;
  /** `<|eos|>`. */
  readonly eos = 257;
  /** `<|pad|>`. */
  readonly pad = 258;
  /** 256 bytes and 4 specials. */
  readonly vocabSize = 260;
  /** Names of the special tokens 256…259, in id order. */
  static readonly SPECIALS = ["<|bos|>", "<|eos|>", "<|pad|>", "<|unused|>"];

  /** The UTF-8 bytes of `text`. */
  encode(text: string): number[] {
    return Array.from(new TextEncoder().encode(text));
  }

  /** Specials are dropped; invalid UTF-8 (a cut multi-byte char) decodes to U+FFFD. */
  decode(ids: readonly number[]): string {
    return new TextDecoder().decode(Uint8Array.from(ids.filter((i) => i >= 0 && i < 256)));
  }
}

/** GPT-2's 50257-token BPE (r50k_base); eos = pad = <|endoftext|> (50256), as in HF. */
export class Gpt2Tokenizer implements Tokenizer {
  /** Always "gpt2". */
  readonly kind = "gpt2";
  /** 50257. */
  readonly vocabSize = 50257;
  /** `<|endoftext|>`. */
  readonly eos = 50256;
  /** `<|endoftext|>`. */
  readonly pad = 50256;
  /** `<|endoftext|>`. */
  readonly bos = 50256;

  /** GPT-2 BPE token ids of `text`. */
  encode(text: string): number[] {
    return gpt2Encode(text);
  }

  /** Text of `ids`, `<|endoftext|>` dropped. */
  decode(ids: readonly number[]): string {
    return gpt2Decode(ids.filter((i) => i !== this.eos));
  }
}

/** GPT-2's reversible byte → printable-character table used by byte-level BPE vocabularies. */
function byteToUnicode(): string[] {
  const table: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    table[b] = String.fromCharCode(printable ? b : 256 + extra++);
  }
  return table;
}

const PRETOKENIZE = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

interface TokenizerJson {
  model?: { type?: string; vocab?: Record<string, number>; merges?: (string | [string, string])[] };
  added_tokens?: { id: number; content: string; special?: boolean }[];
  pre_tokenizer?: { type?: string };
}

/** Byte-level BPE from a Hugging Face tokenizer.json. */
export class BpeTokenizer implements Tokenizer {
  /** Always "bpe". */
  readonly kind = "bpe";
  /** One more than the largest id in the vocabulary (added tokens included). */
  readonly vocabSize: number;
  /** The end-of-text added token (named, or found among the usual names). */
  readonly eos: number;
  /** The padding added token, else `eos`. */
  readonly pad: number;
  /** The beginning-of-text added token, if one is found. */
  readonly bos?: number;
  private readonly vocab: Map<string, number>;
  private readonly inverse: Map<number, string>;
  private readonly ranks: Map<string, number>;
  private readonly specials: Map<string, number>;
  private readonly byteChars = byteToUnicode();
  private readonly charBytes = new Map(this.byteChars.map((c, b) => [c, b]));
  private readonly cache = new Map<string, number[]>();

  /** Loads a parsed tokenizer.json; `names` overrides which added tokens are eos, bos and pad. */
  constructor(json: TokenizerJson, names: { eos?: string; bos?: string; pad?: string } = {}) {
    const model = json.model;
    if (model?.type !== "BPE" || !model.vocab || !model.merges) {
      throw new Error(
        `tokenizer.json: only BPE models are supported (got ${model?.type ?? "none"})`,
      );
    }
    this.vocab = new Map(Object.entries(model.vocab));
    this.specials = new Map((json.added_tokens ?? []).map((t) => [t.content, t.id]));
    for (const [content, id] of this.specials) this.vocab.set(content, id);
    this.inverse = new Map([...this.vocab].map(([k, v]) => [v, k]));
    this.ranks = new Map(
      model.merges.map((m, i) => [Array.isArray(m) ? m.join(" ") : m, i] as [string, number]),
    );
    this.vocabSize = Math.max(...this.vocab.values()) + 1;
    const find = (...cands: (string | undefined)[]) =>
      cands.map((c) => (c === undefined ? undefined : this.specials.get(c))).find((v) =>
        v !== undefined
      );
    const eos = find(names.eos, "<|endoftext|>", "</s>", "<|end_of_text|>", "<|im_end|>");
    if (eos === undefined) {
      throw new Error("tokenizer.json: no end-of-text token found; pass its name");
    }
    this.eos = eos;
    this.bos = find(names.bos, "<|begin_of_text|>", "<s>");
    this.pad = find(names.pad, "<pad>", "<|pad|>") ?? eos;
  }

  /** Ids of one pre-token (in byte-character form) after applying the merges, cached. */
  private bpe(word: string): number[] {
    const hit = this.cache.get(word);
    if (hit) return hit;
    let parts = Array.from(word);
    while (parts.length > 1) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i < parts.length - 1; i++) {
        const r = this.ranks.get(parts[i] + " " + parts[i + 1]);
        if (r !== undefined && r < bestRank) [best, bestRank] = [i, r];
      }
      if (best < 0) break;
      parts = [...parts.slice(0, best), parts[best] + parts[best + 1], ...parts.slice(best + 2)];
    }
    const ids = parts.map((p) => {
      const id = this.vocab.get(p);
      if (id === undefined) {
        throw new Error(`tokenizer.json: piece "${p}" is not in the vocabulary`);
      }
      return id;
    });
    this.cache.set(word, ids);
    return ids;
  }

  /** Pre-tokenizes `text` GPT-2 style, then applies the BPE merges to each piece. */
  encode(text: string): number[] {
    const out: number[] = [];
    const bytes = new TextEncoder();
    for (const piece of text.match(PRETOKENIZE) ?? []) {
      const mapped = Array.from(bytes.encode(piece), (b) => this.byteChars[b]).join("");
      out.push(...this.bpe(mapped));
    }
    return out;
  }

  /** Text of `ids`; added special tokens and unknown ids are dropped. */
  decode(ids: readonly number[]): string {
    const bytes: number[] = [];
    for (const id of ids) {
      const piece = this.inverse.get(id);
      if (piece === undefined || this.specials.has(piece)) continue;
      for (const ch of piece) {
        const b = this.charBytes.get(ch);
        if (b !== undefined) bytes.push(b);
      }
    }
    return new TextDecoder().decode(Uint8Array.from(bytes));
  }
}

/** A tokenizer by name: "byte" or "gpt2". */
export function tokenizerByName(name: string): Tokenizer {
  if (name === "byte") return new ByteTokenizer();
  if (name === "gpt2") return new Gpt2Tokenizer();
  throw new Error(
    `tokenizer: unknown name "${name}" (byte, gpt2, or a folder with tokenizer.json)`,
  );
}
