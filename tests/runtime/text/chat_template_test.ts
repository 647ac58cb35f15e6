/**
 * Chat templates rendered with @huggingface/jinja equal transformers' apply_chat_template on the
 * real Qwen3 and Llama 3 templates (fixtures/chat_reference.json, written by
 * fixtures/make_chat_fixtures.py), and a conversation's last turn splits into prompt and response.
 */

import assert from "node:assert/strict";
import { type ChatMessage, ChatTemplate } from "../../../runtime/text/chat_template.ts";
import { HfTokenizer } from "../../../runtime/text/tokenizer.ts";
import { type RealTokenizer, realTokenizerFiles } from "./fixtures/real_tokenizers.ts";

interface ChatCase {
  tokenizer: RealTokenizer;
  variables: Record<string, unknown>;
  messages: ChatMessage[];
  prompt: string;
  whole: string;
}
const REF: { reference: string; cases: ChatCase[] } = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/chat_reference.json", import.meta.url)),
);

const templates = new Map<RealTokenizer, ChatTemplate>();
async function template(name: RealTokenizer): Promise<ChatTemplate> {
  if (!templates.has(name)) {
    const { json, config } = await realTokenizerFiles(name);
    const chat = new HfTokenizer(json, config).chatTemplate;
    assert.ok(chat, `${name} has a chat template`);
    templates.set(name, chat);
  }
  return templates.get(name)!;
}

Deno.test(`chat template: renderings equal ${REF.reference} (Qwen3, Llama 3)`, async () => {
  assert.equal(REF.cases.length, 15);
  for (const c of REF.cases) {
    const chat = await template(c.tokenizer);
    const variables = c.variables;
    const prompt = chat.render(c.messages.slice(0, -1), { addGenerationPrompt: true, variables });
    const whole = chat.render(c.messages, { variables });
    const what = `${c.tokenizer} ${JSON.stringify(variables)} ${JSON.stringify(c.messages)}`;
    assert.equal(prompt, c.prompt, `prompt of ${what}`);
    assert.equal(whole, c.whole, `whole of ${what}`);
  }
});

Deno.test("chat template: the last turn is the template's text through its end-of-turn token", async () => {
  for (const c of REF.cases) {
    const chat = await template(c.tokenizer);
    const turn = chat.turn(c.messages, { variables: c.variables });
    assert.equal(turn.prompt, c.prompt);
    const content = c.messages.at(-1)!.content;
    // Hand-checked: Qwen3 closes a turn with "<|im_end|>\n" (after an empty think block unless
    // enable_thinking is false); Llama 3 trims the content and closes with <|eot_id|>, while its
    // template goes on with the next assistant header, which is not part of the turn.
    const expected = c.tokenizer === "llama3"
      ? `${content.trim()}<|eot_id|>`
      : c.variables.enable_thinking === false
      ? `${content}<|im_end|>\n`
      : `<think>\n\n</think>\n\n${content.replace(/^\n+/, "")}<|im_end|>\n`;
    assert.equal(turn.response, expected, `${c.tokenizer} ${JSON.stringify(c.messages)}`);
  }
});

Deno.test("chat template: errors name the template's file and the problem", () => {
  const origin = "m/tokenizer_config.json";
  const plain = new ChatTemplate(
    "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}" +
      "{% if add_generation_prompt %}assistant:\n{% endif %}",
    { origin, specialTokens: ["</s>"] },
  );
  const convo = [{ role: "user", content: "q" }, { role: "assistant", content: "a" }];
  assert.equal(plain.render(convo), "user: q\nassistant: a\n");
  // The generation prompt "assistant:\n" is not how the conversation goes on ("assistant: a").
  assert.throws(
    () => plain.turn(convo),
    /m\/tokenizer_config\.json: chat_template: the conversation rendered with the assistant's message does not begin with/,
  );
  assert.throws(() => plain.turn(convo.slice(0, 1)), /the last message must be the assistant's/);
  assert.throws(
    () => plain.render([{ role: "user" } as unknown as ChatMessage]),
    /chat message 0: expected \{ role: string, content: string \}/,
  );
  const strict = new ChatTemplate(
    "{% if messages[0].role != 'user' %}{{ raise_exception('Conversations start with a user') }}" +
      "{% endif %}{{ eos_token }}",
    { origin, tokens: { eos_token: "</s>" } },
  );
  assert.equal(strict.render([{ role: "user", content: "x" }]), "</s>");
  assert.throws(
    () => strict.render([{ role: "system", content: "x" }]),
    /m\/tokenizer_config\.json: chat_template failed to render \(.*Conversations start with a user/,
  );
  assert.throws(() => new ChatTemplate("  ", { origin }), /chat_template is empty/);
});

Deno.test("chat template: a template without special tokens gives the whole tail as the response", () => {
  const chat = new ChatTemplate(
    "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}" +
      "{% if add_generation_prompt %}<assistant>{% endif %}",
  );
  const turn = chat.turn([{ role: "user", content: "q" }, { role: "assistant", content: "a" }]);
  assert.deepEqual(turn, { prompt: "<user>q\n<assistant>", response: "a\n" });
});

Deno.test("chat template: strip, lstrip and rstrip take Python's chars argument, as in Jinja2", () => {
  const render = (expr: string) => new ChatTemplate(`{{ ${expr} }}`).render([]);
  assert.equal(render("'\\n\\n  x \\n'.lstrip('\\n')"), "  x \n");
  assert.equal(render("'\\n x \\n\\n'.rstrip('\\n')"), "\n x ");
  assert.equal(render("'xy</answer>'.strip('</answer>')"), "xy");
  assert.equal(render("' \\t a b \\n'.strip()"), "a b");
  assert.equal(render("'  a  '.lstrip() + '|' + '  a  '.rstrip()"), "a  |  a");
});
