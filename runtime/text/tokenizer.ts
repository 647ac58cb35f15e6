/**
 * Tokenizers: byte-level (256 bytes + specials; what the shipped base model uses, since digits stay
 * digits), GPT-2's BPE through `npm:gpt-tokenizer` (bundled vocabulary, offline), and any Hugging
 * Face `tokenizer.json` (byte-level BPE, SentencePiece-style BPE and Unigram, WordPiece; added and
 * special tokens) through `npm:@huggingface/tokenizers`, with `tokenizer_config.json`'s special
 * tokens and chat template.
 */

import { Tokenizer as HfLibTokenizer } from "npm:@huggingface/tokenizers@0.2.0";
import {
  decode as gpt2Decode,
  encode as gpt2Encode,
} from "npm:gpt-tokenizer@3.4.0/encoding/r50k_base";
import { ChatTemplate } from "./chat_template.ts";

/** Text ↔ token ids, with the special token ids a model needs. */
export interface Tokenizer {
  /** Which implementation: "byte", "gpt2" or "hf" (a Hugging Face tokenizer.json). */
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
  /** The model's chat template (tokenizer_config.json's `chat_template`), if it has one. */
  readonly chatTemplate?: ChatTemplate;
  /** Ids besides `eos` that end a generation (end-of-turn tokens such as `<|eot_id|>`). */
  readonly stopIds?: readonly number[];
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

  /** GPT-2 BPE token ids of `text`; `<|endoftext|>` written in it is that token, as in HF. */
  encode(text: string): number[] {
    // gpt-tokenizer 3.4.0 throws on the special token, or spells it out when it is allowed.
    return text.split("<|endoftext|>").flatMap((part, i) =>
      i === 0 ? gpt2Encode(part) : [this.eos, ...gpt2Encode(part)]
    );
  }

  /**
   * Text of `ids`, `<|endoftext|>` dropped, and ids the vocabulary lacks too (a model's embedding
   * may have more rows than its tokenizer has tokens, as Qwen's does; HfTokenizer skips them too).
   */
  decode(ids: readonly number[]): string {
    return gpt2Decode(ids.filter((i) => i !== this.eos && i >= 0 && i < this.vocabSize));
  }
}

/** A special token in tokenizer_config.json: its text, or an AddedToken record; null for none. */
export type ConfigToken = string | { content: string } | null;

/** The fields of a Hugging Face `tokenizer_config.json` this project reads. */
export interface TokenizerConfig {
  /** Beginning-of-sequence token (null: the model has none). */
  bos_token?: ConfigToken;
  /** End-of-sequence token. */
  eos_token?: ConfigToken;
  /** Padding token (null or absent: the end-of-sequence token pads). */
  pad_token?: ConfigToken;
  /** Unknown-piece token. */
  unk_token?: ConfigToken;
  /** Jinja chat template, or named templates (the one named "default" is used). */
  chat_template?: string | { name: string; template: string }[];
  /** Other fields are kept but not read. */
  [field: string]: unknown;
}

/** Names of the files a `HfTokenizer` was read from, for error messages. */
export interface TokenizerOrigin {
  /** The tokenizer.json (default "tokenizer.json"). */
  json?: string;
  /** The tokenizer_config.json (default "tokenizer_config.json"). */
  config?: string;
  /** Where the chat template came from (default: the config). */
  chatTemplate?: string;
}

const EOS_NAMES = [
  "<|endoftext|>",
  "</s>",
  "<|end_of_text|>",
  "<|im_end|>",
  "<|eot_id|>",
  "<eos>",
  "<|end|>",
];
const BOS_NAMES = ["<|begin_of_text|>", "<s>", "<bos>"];
const PAD_NAMES = ["<pad>", "<|pad|>", "[PAD]"];
const MODEL_TYPES = ["BPE", "Unigram", "WordPiece"];

const isRecord = (x: unknown): x is Record<string, unknown> =>
  typeof x === "object" && x !== null && !Array.isArray(x);

/**
 * A Hugging Face `tokenizer.json` (BPE, byte-level or SentencePiece-style with byte fallback,
 * Unigram, WordPiece; normalizers, pre-tokenizers, added and special tokens) run by
 * `@huggingface/tokenizers`, whose encodings match the Rust reference. Special tokens come from
 * `tokenizer_config.json` (`bos_token`, `eos_token`, `pad_token`), else from the usual names
 * among the added tokens.
 */
export class HfTokenizer implements Tokenizer {
  /** Always "hf". */
  readonly kind = "hf";
  /** One more than the largest id of the vocabulary and the added tokens. */
  readonly vocabSize: number;
  /** `eos_token`, else the first added token among `<|endoftext|>`, `</s>`, `<|end_of_text|>`, … */
  readonly eos: number;
  /** `pad_token`, else an added `<pad>`/`<|pad|>`/`[PAD]`, else `eos`. */
  readonly pad: number;
  /** `bos_token` (none when the config sets it to null), else `<|begin_of_text|>`, `<s>`, `<bos>`. */
  readonly bos?: number;
  /** The chat template of tokenizer_config.json (or chat_template.jinja), if there is one. */
  readonly chatTemplate?: ChatTemplate;
  /** Texts of the added tokens marked special (dropped by `decode`). */
  readonly specialTokens: readonly string[];
  /** The special added tokens among `<|endoftext|>`, `</s>`, `<|eot_id|>`, `<|im_end|>`, … */
  readonly stopIds: readonly number[];
  private readonly lib: HfLibTokenizer;
  private readonly source: string;

  /**
   * Builds the tokenizer from a parsed tokenizer.json and (optionally) tokenizer_config.json;
   * `origin` names the files in error messages.
   */
  constructor(json: unknown, config: TokenizerConfig = {}, origin: TokenizerOrigin = {}) {
    const jsonName = origin.json ?? "tokenizer.json";
    this.source = jsonName;
    const configName = origin.config ?? "tokenizer_config.json";
    const model = isRecord(json) ? json.model : undefined;
    if (!isRecord(json) || !isRecord(model)) {
      throw new Error(`${jsonName}: not a Hugging Face tokenizer.json (no "model" section)`);
    }
    if (typeof model.type === "string" && !MODEL_TYPES.includes(model.type)) {
      throw new Error(
        `${jsonName}: model type "${model.type}" is not supported (${MODEL_TYPES.join(", ")})`,
      );
    }
    if (!isRecord(config)) throw new Error(`${configName}: not a JSON object`);
    const text = (key: "bos_token" | "eos_token" | "pad_token" | "unk_token") => {
      const v = config[key];
      if (v === undefined || v === null) return v;
      const t = typeof v === "string" ? v : isRecord(v) ? v.content : undefined;
      if (typeof t !== "string") {
        throw new Error(
          `${configName}: ${key} must be a string or { content } (got ${JSON.stringify(v)})`,
        );
      }
      return t;
    };
    const names = {
      bos: text("bos_token"),
      eos: text("eos_token"),
      pad: text("pad_token"),
      unk: text("unk_token"),
    };
    try {
      this.lib = new HfLibTokenizer(
        {
          normalizer: null,
          pre_tokenizer: null,
          post_processor: null,
          decoder: null,
          ...json,
          added_tokens: json.added_tokens ?? [],
        },
        // Only what the Rust reference reads: the Python-side options of tokenizer_config.json
        // (clean-up of spaces, extra special tokens) are not applied.
        { eos_token: names.eos ?? undefined, clean_up_tokenization_spaces: false },
      );
    } catch (e) {
      throw new Error(`${jsonName}: cannot load the tokenizer (${(e as Error).message})`);
    }
    let size = 0;
    for (const id of this.lib.get_vocab(true).values()) if (id >= size) size = id + 1;
    this.vocabSize = size;
    const added = [...this.lib.get_added_tokens_decoder().values()];
    this.specialTokens = added.filter((t) => t.special).map((t) => t.content);
    const addedIds = new Map(added.map((t) => [t.content, t.id]));
    // A chat model ends its turn with one of these even where eos names another (Llama 3:
    // eos <|end_of_text|>, turns end with <|eot_id|>), as generation_config.json lists them.
    const specialIds = new Map(added.filter((t) => t.special).map((t) => [t.content, t.id]));
    this.stopIds = EOS_NAMES.flatMap((n) => specialIds.has(n) ? [specialIds.get(n)!] : []);
    const idOf = (key: string, content: string) => {
      const id = this.lib.token_to_id(content);
      if (id === undefined) {
        throw new Error(`${configName}: ${key} "${content}" is not a token of ${jsonName}`);
      }
      return id;
    };
    const search = (cands: string[]) =>
      cands.map((c) => addedIds.get(c)).find((id) => id !== undefined);
    const eos = names.eos ? idOf("eos_token", names.eos) : search(EOS_NAMES);
    if (eos === undefined) {
      throw new Error(
        `${jsonName}: no end-of-sequence token: ${configName} names no eos_token and none of ` +
          `${EOS_NAMES.join(" ")} is an added token`,
      );
    }
    this.eos = eos;
    if (names.bos) this.bos = idOf("bos_token", names.bos);
    else if (names.bos === undefined) this.bos = search(BOS_NAMES);
    this.pad = names.pad ? idOf("pad_token", names.pad) : search(PAD_NAMES) ?? eos;
    const chat = config.chat_template;
    if (chat !== undefined && chat !== null) {
      const chatOrigin = origin.chatTemplate ?? configName;
      let source: unknown = chat;
      if (Array.isArray(chat)) {
        source = chat.find((t) => t?.name === "default")?.template;
        if (source === undefined) {
          throw new Error(
            `${chatOrigin}: chat_template lists named templates (${
              chat.map((t) => t?.name).join(", ")
            }) but none is named "default"`,
          );
        }
      }
      const tokenText = (id: number | undefined) =>
        id === undefined ? undefined : this.lib.id_to_token(id);
      this.chatTemplate = new ChatTemplate(source as string, {
        origin: chatOrigin,
        specialTokens: this.specialTokens,
        tokens: {
          bos_token: tokenText(this.bos),
          eos_token: tokenText(this.eos),
          pad_token: tokenText(this.pad),
          unk_token: names.unk ?? undefined,
        },
      });
    }
  }

  /** Token ids of `text`; special and added tokens written in it are matched as such. */
  encode(text: string): number[] {
    const { ids, tokens } = this.lib.encode(text, { add_special_tokens: false });
    const missing = ids.findIndex((id) => id === undefined);
    if (missing >= 0) {
      throw new Error(
        `${this.source}: piece ${JSON.stringify(tokens[missing])} has no id (is the model's ` +
          "unk_token missing from its vocabulary?)",
      );
    }
    return ids;
  }

  /** Text of `ids`; special tokens and ids outside the vocabulary are dropped. */
  decode(ids: readonly number[]): string {
    const known = ids.filter((id) => this.lib.id_to_token(id) !== undefined);
    if (known.length === 0) return "";
    return this.lib.decode(known, {
      skip_special_tokens: true,
      clean_up_tokenization_spaces: false,
    });
  }

  /** The id of a token's text (vocabulary or added token), if it has one. */
  tokenId(text: string): number | undefined {
    return this.lib.token_to_id(text);
  }
}

/** A tokenizer by name: "byte" or "gpt2" (a tokenizer.json is read with `loadTokenizer`). */
export function tokenizerByName(name: string): Tokenizer {
  if (name === "byte") return new ByteTokenizer();
  if (name === "gpt2") return new Gpt2Tokenizer();
  throw new Error(
    `tokenizer: unknown name "${name}" (byte, gpt2, or a folder with tokenizer.json)`,
  );
}

function parseJsonFile(text: string, path: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

/**
 * A Hugging Face tokenizer from its files, read through `read(name)` (undefined when absent) on
 * any source (a folder, the browser's files); `where(name)` names a file in errors. tokenizer.json
 * is required; tokenizer_config.json is optional; the chat template comes, as in transformers,
 * from chat_template.jinja, else chat_template.json, else the config's `chat_template`.
 */
export async function hfTokenizerFromFiles(
  read: (name: string) => Promise<string | undefined>,
  where: (name: string) => string,
): Promise<HfTokenizer> {
  const jsonPath = where("tokenizer.json");
  const jsonText = await read("tokenizer.json");
  if (jsonText === undefined) throw new Error(`${jsonPath}: no such file`);
  const configPath = where("tokenizer_config.json");
  const configText = await read("tokenizer_config.json");
  const config = configText === undefined ? {} : parseJsonFile(configText, configPath);
  if (!isRecord(config)) throw new Error(`${configPath}: not a JSON object`);
  const origin = { json: jsonPath, config: configPath, chatTemplate: configPath };
  const merged: TokenizerConfig = { ...config };
  const jinja = await read("chat_template.jinja");
  const chatJson = jinja === undefined ? await read("chat_template.json") : undefined;
  if (jinja !== undefined) {
    merged.chat_template = jinja;
    origin.chatTemplate = where("chat_template.jinja");
  } else if (chatJson !== undefined) {
    const chatJsonPath = where("chat_template.json");
    const parsed = parseJsonFile(chatJson, chatJsonPath) as { chat_template?: unknown };
    if (typeof parsed?.chat_template !== "string") {
      throw new Error(`${chatJsonPath}: expected { "chat_template": "<template>" }`);
    }
    merged.chat_template = parsed.chat_template;
    origin.chatTemplate = chatJsonPath;
  }
  return new HfTokenizer(parseJsonFile(jsonText, jsonPath), merged, origin);
}

/** Files that make up a Hugging Face tokenizer, in the order `hfTokenizerFromFiles` reads them. */
export const TOKENIZER_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "chat_template.jinja",
  "chat_template.json",
  "special_tokens_map.json",
] as const;
