import assert from "node:assert/strict";
import { interpret } from "../../dsl/interpret.ts";
import type { HostArray } from "../../dsl/host_array.ts";
import { forward, initParams } from "../../dsl/nn/transformer.ts";
import type { ModelConfig } from "../../dsl/nn/config.ts";
import type { Tensor } from "../../dsl/trace.ts";
import { generate, MIN_SHARED_PREFIX, sharedPrefixLength } from "../../runtime/models/generate.ts";
import type { Tokenizer } from "../../runtime/text/tokenizer.ts";
import { TINY_GPT2, TINY_LLAMA, tinyTokenizer } from "../helpers/tiny_models.ts";

/** Greedy decoding by re-running the full causal forward on the CPU reference. */
function referenceGreedy(
  cfg: ModelConfig,
  params: Record<string, HostArray>,
  tok: Tokenizer,
  prompt: string,
  steps: number,
) {
  const ids = [tok.bos!, ...tok.encode(prompt)];
  const out: number[] = [];
  for (let s = 0; s < steps; s++) {
    const logits = interpret(
      (p: Record<string, Tensor>, x: Tensor) => forward(cfg, p, x),
      params,
      { shape: [1, ids.length], dtype: "i32", data: Int32Array.from(ids) },
    ) as HostArray;
    const row = logits.data.slice((ids.length - 1) * cfg.vocab, ids.length * cfg.vocab);
    const next = row.indexOf(Math.max(...row));
    if (next === tok.eos) break;
    out.push(next);
    ids.push(next);
  }
  return tok.decode(out);
}

for (const cfg of [TINY_LLAMA, TINY_GPT2]) {
  Deno.test(`generate (${cfg.family}): KV-cache decoding on WebGPU equals greedy full-forward decoding`, async () => {
    const params = initParams(cfg, 3);
    // Larger weights so the greedy path is not one repeated token.
    for (const a of Object.values(params)) {
      if (a.shape.length === 2) a.data.forEach((v, i) => (a.data[i] = v * 40));
    }
    const tok = tinyTokenizer(cfg);
    const prompts = ["abc", "p", "hello", "jjj"];
    const got = await generate(cfg, tok, params, prompts, {
      maxNewTokens: 5,
      batchSize: 3,
      checkEvery: 2,
    });
    const want = prompts.map((p) => referenceGreedy(cfg, params, tok, p, 5));
    assert.deepEqual(got, want);
    assert.ok(want.some((w) => new Set(w).size > 1), `degenerate reference ${want}`);
  });
}

Deno.test("generate: a row ends at the tokenizer's stopIds (end-of-turn tokens) as at eos", async () => {
  const cfg = TINY_LLAMA;
  const params = initParams(cfg, 3);
  for (const a of Object.values(params)) {
    if (a.shape.length === 2) a.data.forEach((v, i) => (a.data[i] = v * 40));
  }
  const prompts = ["abc", "hello"];
  const plain = tinyTokenizer(cfg);
  const full = await generate(cfg, plain, params, prompts, { maxNewTokens: 6 });
  // Stop at a letter the first continuation writes after its first one.
  const stopChar = [...full[0]].slice(1).find((c) => c !== full[0][0]);
  assert.ok(stopChar, `continuation ${full[0]} has no second letter`);
  const stopId = stopChar.charCodeAt(0) - 97;
  const cut = await generate(cfg, { ...plain, stopIds: [stopId] }, params, prompts, {
    maxNewTokens: 6,
  });
  assert.deepEqual(cut, full.map((text) => text.split(stopChar)[0]));
});

for (const base of [TINY_LLAMA, TINY_GPT2]) {
  Deno.test(`generate (${base.family}): a prompt prefix every row shares runs once and changes no output`, async () => {
    const cfg: ModelConfig = { ...base, context: 40 };
    const params = initParams(cfg, 5);
    for (const a of Object.values(params)) {
      if (a.shape.length === 2) a.data.forEach((v, i) => (a.data[i] = v * 40));
    }
    const tok = tinyTokenizer(cfg);
    // An 18-symbol "system prompt" (19 shared tokens with bos), then 1–4 symbols per row.
    const system = "abcdefghijklmnopab";
    const prompts = ["c", "dd", "pon", "jklm", "e"].map((s) => system + s);
    const encoded = prompts.map((p) => [tok.bos!, ...tok.encode(p)]);
    assert.ok(sharedPrefixLength(encoded) >= MIN_SHARED_PREFIX, "the shared path runs");
    const opts = { maxNewTokens: 6, batchSize: 4, checkEvery: 3 };
    const shared = await generate(cfg, tok, params, prompts, opts);
    const plain = await generate(cfg, tok, params, prompts, { ...opts, sharePrefix: false });
    assert.deepEqual(shared, plain);
    assert.deepEqual(shared, prompts.map((p) => referenceGreedy(cfg, params, tok, p, 6)));
    assert.ok(shared.some((s) => s.length > 0), "something was generated");
  });
}

Deno.test("sharedPrefixLength leaves every row a token of its own", () => {
  assert.equal(sharedPrefixLength([[1, 2, 3], [1, 2, 4]]), 2);
  assert.equal(sharedPrefixLength([[1, 2], [1, 2, 3]]), 1);
  assert.equal(sharedPrefixLength([[5, 6, 7]]), 2);
  assert.equal(sharedPrefixLength([[1], [2]]), 0);
});
