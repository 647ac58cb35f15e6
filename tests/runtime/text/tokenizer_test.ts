import assert from "node:assert/strict";

import { ByteTokenizer, Gpt2Tokenizer, HfTokenizer } from "../../../runtime/text/tokenizer.ts";
import { checkProperty, fc } from "../../helpers/property.ts";

Deno.test("tokenizer (byte): ids are UTF-8 bytes; specials are dropped on decode; round trip", () => {
  const tok = new ByteTokenizer();
  assert.deepEqual(tok.encode("Hé!"), [72, 195, 169, 33]);
  assert.equal(tok.decode([tok.bos, 72, 105, tok.eos, tok.pad]), "Hi");
  assert.equal(tok.vocabSize % 4, 0);
  checkProperty(
    fc.property(fc.string({ unit: "grapheme" }), (s) => tok.decode(tok.encode(s)) === s),
  );
});

Deno.test("tokenizer (gpt2): known ids and round trips through the bundled vocabulary", () => {
  const tok = new Gpt2Tokenizer();
  assert.deepEqual(tok.encode("Hello world"), [15496, 995]);
  assert.deepEqual(tok.encode(" The answer is: 42"), [383, 3280, 318, 25, 5433]);
  assert.equal(tok.decode([15496, 995, tok.eos]), "Hello world");
  assert.deepEqual(tok.encode("a<|endoftext|>b"), [64, 50256, 65]); // a special in text, as in HF
  // Ids past the vocabulary (a model generating from embedding rows no token has) are skipped.
  assert.equal(tok.decode([15496, 51888, -1, 995]), "Hello world");
  checkProperty(
    fc.property(fc.string(), (s) => tok.decode(tok.encode(s)) === s),
  );
});

/** Nine byte-level pieces, merges ranked "b c" < "a b" < "Ġ ab" < "a bc", and <|endoftext|>. */
const TINY = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/tiny_bytelevel_tokenizer.json", import.meta.url)),
);

Deno.test("tokenizer (tokenizer.json): merges applied by rank, byte-level spaces, specials", () => {
  const tok = new HfTokenizer(TINY);
  assert.equal(tok.kind, "hf");
  assert.deepEqual(tok.encode("ab ab"), [4, 5]);
  assert.deepEqual(tok.encode("abc"), [7]); // b c → bc (rank 0), then a bc → abc (rank 3)
  assert.deepEqual(tok.encode("ab!"), [4, 8]);
  assert.deepEqual(tok.encode("a<|endoftext|>b"), [0, 9, 1]); // added tokens in text are matched
  assert.deepEqual(tok.encode("zab"), [4]); // no unk_token: the Rust reference skips "z" too
  assert.equal(tok.decode([4, 5, 9, 7]), "ab ababc");
  assert.deepEqual([tok.eos, tok.pad, tok.bos, tok.vocabSize], [9, 9, undefined, 10]);
  assert.deepEqual(tok.specialTokens, ["<|endoftext|>"]);
  assert.equal(tok.tokenId("Ġab"), 5);
});

Deno.test("tokenizer (tokenizer.json): tokenizer_config.json names the special tokens", () => {
  const added = [
    ...TINY.added_tokens,
    { ...TINY.added_tokens[0], id: 10, content: "<s>" },
    { ...TINY.added_tokens[0], id: 11, content: "<pad>" },
  ];
  const json = { ...TINY, added_tokens: added };
  const found = new HfTokenizer(json);
  assert.deepEqual([found.bos, found.eos, found.pad], [10, 9, 11]); // by their usual names
  const named = new HfTokenizer(json, {
    bos_token: null, // the model has none, even though "<s>" exists
    eos_token: { content: "<pad>" }, // AddedToken form
    pad_token: "abc",
  });
  assert.deepEqual([named.bos, named.eos, named.pad], [undefined, 11, 7]);
});

Deno.test("tokenizer (tokenizer.json): errors name the file and what is wrong", () => {
  const origin = { json: "m/tokenizer.json", config: "m/tokenizer_config.json" };
  assert.throws(
    () => new HfTokenizer({ version: "1.0" }, {}, origin),
    /m\/tokenizer\.json: not a Hugging Face tokenizer\.json \(no "model" section\)/,
  );
  assert.throws(
    () => new HfTokenizer({ model: { type: "WordLevel", vocab: {} } }, {}, origin),
    /m\/tokenizer\.json: model type "WordLevel" is not supported \(BPE, Unigram, WordPiece\)/,
  );
  assert.throws(
    () => new HfTokenizer({ ...TINY, pre_tokenizer: { type: "Nonsense" } }, {}, origin),
    /m\/tokenizer\.json: cannot load the tokenizer \(.*Nonsense/,
  );
  assert.throws(
    () => new HfTokenizer(TINY, { eos_token: "</s>" }, origin),
    /m\/tokenizer_config\.json: eos_token "<\/s>" is not a token of m\/tokenizer\.json/,
  );
  assert.throws(
    () => new HfTokenizer({ ...TINY, added_tokens: [] }, {}, origin),
    /m\/tokenizer\.json: no end-of-sequence token: m\/tokenizer_config\.json names no eos_token/,
  );
  const wordPiece = new HfTokenizer(
    {
      pre_tokenizer: { type: "Whitespace" },
      added_tokens: [{ id: 2, content: "[SEP]", special: true }],
      model: {
        type: "WordPiece",
        vocab: { a: 0, "##b": 1 },
        unk_token: "[UNK]",
        continuing_subword_prefix: "##",
        max_input_chars_per_word: 100,
      },
    },
    { eos_token: "[SEP]" },
    origin,
  );
  assert.deepEqual(wordPiece.encode("ab a[SEP]"), [0, 1, 0, 2]);
  assert.throws(
    () => wordPiece.encode("ab zz"),
    /m\/tokenizer\.json: piece "\[UNK\]" has no id \(is the model's unk_token missing/,
  );
  assert.throws(
    () => new HfTokenizer(TINY, { chat_template: [{ name: "tool_use", template: "x" }] }, origin),
    /m\/tokenizer_config\.json: chat_template lists named templates \(tool_use\) but none is named "default"/,
  );
  assert.throws(
    () => new HfTokenizer(TINY, { chat_template: "{% for m in messages %}" }, origin),
    /m\/tokenizer_config\.json: chat_template is not a valid template/,
  );
});
