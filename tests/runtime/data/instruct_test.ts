import assert from "node:assert/strict";
import {
  BatchSampler,
  collate,
  encodeExample,
  formatPrompt,
  parseJsonl,
  PROMPT_TEMPLATES,
  shard,
} from "../../../runtime/data/instruct.ts";
import { ByteTokenizer } from "../../../runtime/text/tokenizer.ts";

const tok = new ByteTokenizer();

Deno.test("data: the loss mask covers exactly the response tokens and EOS", () => {
  const ex = encodeExample(tok, { query: "Q?", response: "ok" }, "compact");
  const prompt = tok.encode(formatPrompt("Q?", "compact"));
  assert.deepEqual(ex.tokens, [tok.bos, ...prompt, 111, 107, tok.eos]);
  const b = collate([ex], 64, tok.pad);
  const mask = Array.from(b.mask.data);
  const targets = Array.from(b.targets.data);
  const trained = targets.filter((_, i) => mask[i] === 1);
  assert.deepEqual(trained, [111, 107, tok.eos]); // "o", "k", EOS
  // ids are the tokens shifted by one; padding carries mask 0.
  assert.deepEqual(
    Array.from(b.ids.data.subarray(0, ex.tokens.length - 1)),
    ex.tokens.slice(0, -1),
  );
  assert.equal(mask.slice(ex.tokens.length - 1).every((m) => m === 0), true);
  assert.equal(b.ids.data[63], tok.pad);
});

Deno.test("data: truncation keeps the head, padding fills rows, shapes are [B, T]", () => {
  const long = encodeExample(tok, { query: "x".repeat(30), response: "y".repeat(30) }, "compact");
  const short = encodeExample(tok, { query: "a", response: "b" }, "compact");
  const b = collate([long, short], 40, tok.pad);
  assert.deepEqual(b.ids.shape, [2, 40]);
  assert.deepEqual(Array.from(b.ids.data.subarray(0, 40)), long.tokens.slice(0, 40));
  const masked = Array.from(b.mask.data.subarray(0, 40)).reduce((a, v) => a + v, 0);
  assert.equal(masked, long.weights.slice(1, 41).reduce((a, v) => a + v, 0));
});

Deno.test("data: the Alpaca prompt is the papers' prompt", () => {
  assert.equal(
    formatPrompt("What is 2+2?"),
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nWhat is 2+2?\n\n### Response:\n",
  );
  assert.ok(PROMPT_TEMPLATES.compact.endsWith("### Response:\n"));
  assert.throws(() => formatPrompt("q", "no placeholder"), /must contain \{query\}/);
});

Deno.test("data: JSONL with MetaMathQA or custom field names; bad lines name line and field", () => {
  const text = '{"query": "a", "response": "b", "type": "x"}\n\n{"query": "c", "response": "d"}\n';
  assert.deepEqual(parseJsonl(text), [{ query: "a", response: "b" }, {
    query: "c",
    response: "d",
  }]);
  assert.deepEqual(
    parseJsonl('{"instruction": "i", "output": "o"}', { query: "instruction", response: "output" }),
    [
      { query: "i", response: "o" },
    ],
  );
  assert.throws(
    () => parseJsonl('{"query": "a"}', {}, "train.jsonl"),
    /train\.jsonl:1: field "response" is missing/,
  );
  assert.throws(
    () => parseJsonl('{"query": "a", "response": "b"}\n{oops', {}, "t.jsonl"),
    /t\.jsonl:2: not valid JSON/,
  );
});

Deno.test("data: sharding gives device k samples k, k+K, …; the sampler is a seeded per-epoch permutation", () => {
  const items = Array.from({ length: 10 }, (_, i) => i);
  assert.deepEqual(shard(items, 1, 4), [1, 5, 9]);
  assert.deepEqual([0, 1, 2, 3].flatMap((k) => shard(items, k, 4)).sort((a, b) => a - b), items);
  assert.throws(() => shard(items, 4, 4), /invalid/);
  const s = new BatchSampler(7, 3);
  const epoch0 = s.take(0, 7);
  assert.deepEqual([...epoch0].sort(), [0, 1, 2, 3, 4, 5, 6]);
  assert.deepEqual(new BatchSampler(7, 3).take(5, 4), [...epoch0.slice(5), ...s.take(7, 2)]);
  assert.notDeepEqual(s.take(7, 7), epoch0);
  assert.notDeepEqual(new BatchSampler(7, 4).take(0, 7), epoch0);
});
