import assert from "node:assert/strict";
import { join } from "node:path";
import {
  copyTokenizerFiles,
  hasTokenizerJson,
  loadTokenizer,
} from "../../../runtime/text/tokenizer_files.ts";
import { BYTE_CHAT_SPECIALS, writeByteChatTokenizer } from "./fixtures/byte_chat_tokenizer.ts";

Deno.test("tokenizer files: tokenizer.json + tokenizer_config.json give ids, specials and the chat template", async () => {
  const dir = await Deno.makeTempDir();
  assert.equal(await hasTokenizerJson(dir), false);
  await writeByteChatTokenizer(dir);
  assert.equal(await hasTokenizerJson(dir), true);
  const tok = await loadTokenizer(dir);
  assert.deepEqual(tok.encode("Hi<|im_end|>"), [72, 105, BYTE_CHAT_SPECIALS.imEnd]);
  assert.deepEqual([tok.eos, tok.pad, tok.bos], [258, 256, undefined]);
  assert.equal(tok.chatTemplate?.origin, join(dir, "tokenizer_config.json"));
  assert.equal(
    tok.chatTemplate?.render([{ role: "user", content: "Hi" }], { addGenerationPrompt: true }),
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("tokenizer files: chat_template.jinja (or .json) wins over the config's, as in transformers", async () => {
  const dir = await Deno.makeTempDir();
  await writeByteChatTokenizer(dir);
  await Deno.writeTextFile(join(dir, "chat_template.json"), JSON.stringify({ chat_template: "J" }));
  assert.equal((await loadTokenizer(dir)).chatTemplate?.render([]), "J");
  await Deno.writeTextFile(join(dir, "chat_template.jinja"), "{{ messages | length }} messages");
  const tok = await loadTokenizer(dir);
  assert.equal(tok.chatTemplate?.origin, join(dir, "chat_template.jinja"));
  assert.equal(tok.chatTemplate?.render([{ role: "user", content: "x" }]), "1 messages");
  // Copies go with a fine-tuned model; a folder without them loads with no chat template.
  const out = await Deno.makeTempDir();
  assert.deepEqual(await copyTokenizerFiles(dir, out), [
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "chat_template.json",
  ]);
  assert.equal((await loadTokenizer(out)).chatTemplate?.render([]), "0 messages");
  await writeByteChatTokenizer(out, null);
  for (const f of ["chat_template.jinja", "chat_template.json"]) await Deno.remove(join(out, f));
  assert.equal((await loadTokenizer(out)).chatTemplate, undefined);
  await Deno.remove(dir, { recursive: true });
  await Deno.remove(out, { recursive: true });
});

Deno.test("tokenizer files: unreadable files are named in the error", async () => {
  const dir = await Deno.makeTempDir();
  await assert.rejects(
    loadTokenizer(dir),
    new RegExp(`${join(dir, "tokenizer.json")}: no such file`),
  );
  await writeByteChatTokenizer(dir);
  await Deno.writeTextFile(join(dir, "tokenizer_config.json"), "{ not json");
  await assert.rejects(
    loadTokenizer(dir),
    new RegExp(`${join(dir, "tokenizer_config.json")}: not valid JSON`),
  );
  await Deno.writeTextFile(join(dir, "tokenizer_config.json"), "[]");
  await assert.rejects(loadTokenizer(dir), /tokenizer_config\.json: not a JSON object/);
  await Deno.writeTextFile(join(dir, "tokenizer_config.json"), '{"eos_token": "<eos>"}');
  await assert.rejects(
    loadTokenizer(dir),
    /tokenizer_config\.json: eos_token "<eos>" is not a token of .*tokenizer\.json/,
  );
  await Deno.writeTextFile(join(dir, "tokenizer_config.json"), "{}");
  await Deno.writeTextFile(join(dir, "chat_template.json"), '{"template": "x"}');
  await assert.rejects(loadTokenizer(dir), /chat_template\.json: expected \{ "chat_template"/);
  await Deno.remove(dir, { recursive: true });
});
