/**
 * The "chat" template of the instruction pipeline on the real Qwen3 and Llama 3 tokenizers: the
 * prompt is the model's chat template up to the assistant turn, the response its turn through the
 * end-of-turn token, and only the response is trained on.
 */

import assert from "node:assert/strict";
import {
  collate,
  encodeChat,
  encodeExample,
  formatPrompt,
  isTemplate,
} from "../../../runtime/data/instruct.ts";
import { ByteTokenizer, HfTokenizer } from "../../../runtime/text/tokenizer.ts";
import { type RealTokenizer, realTokenizerFiles } from "../text/fixtures/real_tokenizers.ts";

const tokenizers = new Map<RealTokenizer, HfTokenizer>();
async function load(name: RealTokenizer): Promise<HfTokenizer> {
  if (!tokenizers.has(name)) {
    const { json, config } = await realTokenizerFiles(name);
    tokenizers.set(name, new HfTokenizer(json, config));
  }
  return tokenizers.get(name)!;
}

/** The targets `collate` weights, in order. */
function trainedTargets(tokens: number[], weights: number[]): number[] {
  const b = collate([{ tokens, weights }], tokens.length, 0);
  return Array.from(b.targets.data).filter((_, i) => b.mask.data[i] === 1);
}

const ex = { query: "What is 2+2?", response: "The answer is 4." };

Deno.test("data (chat, Qwen3): ChatML prompt, the turn with its think block and <|im_end|> is the loss", async () => {
  const tok = await load("qwen3");
  const prompt = "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n";
  assert.equal(formatPrompt(ex.query, "chat", tok), prompt);
  const enc = encodeExample(tok, ex, "chat");
  const response = tok.encode("<think>\n\n</think>\n\nThe answer is 4.<|im_end|>\n");
  assert.deepEqual(enc.tokens, [...tok.encode(prompt), ...response]); // Qwen3 has no BOS
  assert.equal(enc.tokens[0], 151644); // <|im_start|> is matched as one token
  assert.deepEqual(trainedTargets(enc.tokens, enc.weights), response);
  assert.ok(response.includes(tok.eos)); // <|im_end|>: generation stops where the turn ends
  assert.equal(enc.weights.filter((w) => w === 1).length, response.length);
  // Template variables reach the template: without thinking, the empty think block is prompt.
  const direct = encodeChat(tok, [
    { role: "user", content: ex.query },
    { role: "assistant", content: ex.response },
  ], { variables: { enable_thinking: false } });
  assert.deepEqual(
    trainedTargets(direct.tokens, direct.weights),
    tok.encode("The answer is 4.<|im_end|>\n"),
  );
});

Deno.test("data (chat, Llama 3): one BOS, header prompt, the content and <|eot_id|> are the loss", async () => {
  const tok = await load("llama3");
  const prompt = "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>" +
    "<|start_header_id|>assistant<|end_header_id|>\n\n";
  // The template writes {{ bos_token }}; the pipeline adds tok.bos itself, so the text drops it.
  assert.equal(formatPrompt(ex.query, "chat", tok), prompt);
  const enc = encodeExample(tok, ex, "chat");
  assert.equal(enc.tokens.filter((t) => t === tok.bos).length, 1);
  assert.equal(enc.tokens[0], tok.bos);
  const response = tok.encode("The answer is 4.<|eot_id|>");
  assert.equal(response.at(-1), 128009);
  assert.deepEqual(enc.tokens, [tok.bos, ...tok.encode(prompt), ...response]);
  assert.deepEqual(trainedTargets(enc.tokens, enc.weights), response);
  // Earlier turns of a conversation are prompt: only the last assistant turn is trained on.
  const multi = encodeChat(tok, [
    { role: "system", content: "Be brief." },
    { role: "user", content: "Hi" },
    { role: "assistant", content: "Hello." },
    { role: "user", content: ex.query },
    { role: "assistant", content: ex.response },
  ]);
  assert.deepEqual(trainedTargets(multi.tokens, multi.weights), response);
});

Deno.test("data (chat): a tokenizer without a chat template is a clear error", async () => {
  assert.throws(
    () => encodeExample(new ByteTokenizer(), ex, "chat"),
    /template "chat": the byte tokenizer has no chat template .*tokenizer_config\.json's chat_template/,
  );
  const llama2 = await load("llama2");
  assert.throws(
    () => encodeExample(llama2, ex, "chat"),
    /template "chat": the hf tokenizer has no chat template/,
  );
  assert.throws(() => formatPrompt("q", "chat"), /pass the tokenizer/);
  assert.ok(isTemplate("chat") && isTemplate("compact") && isTemplate("Q: {query}\nA:"));
  assert.ok(!isTemplate("chatml") && !isTemplate("toString"));
});
