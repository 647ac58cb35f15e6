import assert from "node:assert/strict";

import { BpeTokenizer, ByteTokenizer, Gpt2Tokenizer } from "../../../runtime/text/tokenizer.ts";
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
  checkProperty(
    fc.property(fc.string(), (s) => tok.decode(tok.encode(s)) === s),
  );
});

const TINY = {
  model: {
    type: "BPE",
    // Byte-level symbols (Ġ is the space byte), then merged pieces.
    vocab: { a: 0, b: 1, c: 2, "Ġ": 3, ab: 4, "Ġab": 5, bc: 6, abc: 7, "!": 8 },
    // Rank order decides: "b c" outranks "a b", so "abc" becomes a + bc, not ab + c.
    merges: ["b c", "a b", "Ġ ab", "a bc"],
  },
  added_tokens: [{ id: 9, content: "<|endoftext|>", special: true }],
};

Deno.test("tokenizer (tokenizer.json BPE): merges applied by rank, byte-level spaces, specials", () => {
  const tok = new BpeTokenizer(TINY);
  assert.deepEqual(tok.encode("ab ab"), [4, 5]);
  assert.deepEqual(tok.encode("abc"), [7]); // b c → bc (rank 0), then a bc → abc (rank 3)
  assert.deepEqual(tok.encode("ab!"), [4, 8]);
  assert.equal(tok.decode([4, 5, 9, 7]), "ab ababc");
  assert.equal(tok.eos, 9);
  assert.equal(tok.vocabSize, 10);
  assert.throws(() => tok.encode("z"), /piece "z" is not in the vocabulary/);
  assert.throws(() => new BpeTokenizer({ model: { type: "Unigram" } }), /only BPE models/);
});
