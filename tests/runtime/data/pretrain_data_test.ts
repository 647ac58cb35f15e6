import assert from "node:assert/strict";
import { corpusSplit, normalizeText, sentences } from "../../../runtime/data/corpus.ts";
import { evaluationWindows, PretrainStream } from "../../../runtime/data/pretrain_data.ts";
import { ANSWER_PREFIX } from "../../../runtime/data/synthetic.ts";
import { ByteTokenizer } from "../../../runtime/text/tokenizer.ts";

const tok = new ByteTokenizer();

Deno.test("corpus: offline SOTU text, normalised to ASCII, with a held-out split", () => {
  assert.equal(
    normalizeText("It\u2019s \u201cfine\u201d\u2014really\u2026  ok"),
    `It's "fine" -- really... ok`,
  );
  const { train, heldOut } = corpusSplit();
  assert.ok(
    train.length > 5_000_000 && heldOut.length > 100_000,
    `${train.length} ${heldOut.length}`,
  );
  // deno-lint-ignore no-control-regex -- printable ASCII plus tab and newline
  assert.ok(/^[\x09\x0a\x20-\x7e]*$/.test(heldOut.slice(0, 10000)));
  assert.ok(!train.includes(heldOut.slice(1000, 1200)));
  assert.ok(
    sentences("Hello there, friend of mine. This is a second sentence! Short.").length === 2,
  );
});

Deno.test("pretraining stream: deterministic per step, masks pads, teaches the format but not the tasks", () => {
  const text = corpusSplit().train.slice(0, 400_000);
  const stream = new PretrainStream(text, tok, { batch: 8, length: 128, seed: 3 });
  const a = stream.batch(5);
  assert.deepEqual(stream.batch(5), a);
  assert.notDeepEqual(stream.batch(6).ids.data, a.ids.data);
  const rows = Array.from(
    { length: 8 },
    (_, r) => tok.decode(Array.from(a.ids.data.subarray(r * 128, (r + 1) * 128))),
  );
  assert.equal(rows.filter((r) => r.startsWith("### Instruction:\n")).length, 2); // 25% formatted rows
  for (let s = 0; s < 50; s++) {
    const b = stream.batch(s);
    const textOf = tok.decode(Array.from(b.ids.data));
    assert.ok(
      !textOf.includes(ANSWER_PREFIX.trim()),
      "the fine-tuning answer format leaked into pretraining",
    );
    b.ids.data.forEach((id, i) => assert.equal(b.mask.data[i], id === tok.pad ? 0 : 1));
  }
});

Deno.test("evaluation windows tile the text without overlap", () => {
  const text = "abcdefghij".repeat(10);
  const batches = evaluationWindows(text, tok, 16, 4);
  const counted = batches.reduce(
    (n, b) => n + Array.from(b.mask.data).reduce((a, v) => a + v, 0),
    0,
  );
  assert.equal(counted, text.length - 1);
  assert.equal(batches.length, 2);
});
