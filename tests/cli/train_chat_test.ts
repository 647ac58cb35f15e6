/**
 * `deno task train --template chat` on a tiny model whose folder holds a tokenizer.json and a
 * ChatML chat template: it trains, evaluates with the chat prompt and writes a run folder whose
 * model keeps the tokenizer and the template; a model without a chat template is a clear error.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { initParams } from "../../dsl/nn/transformer.ts";
import { loadModel, saveModel } from "../../runtime/models/model_dir.ts";
import { saveTinyByteModel, TINY_BYTE_LLAMA } from "../helpers/tiny_models.ts";
import { train } from "../helpers/train_cli.ts";
import { writeByteChatTokenizer } from "../runtime/text/fixtures/byte_chat_tokenizer.ts";

const root = await Deno.makeTempDir({ prefix: "train-chat-" });
const BASE = [
  "--task",
  "addition",
  "--devices",
  "2",
  "--rank",
  "2",
  "--batch",
  "2",
  "--max-len",
  "80",
  "--train-size",
  "16",
  "--eval-size",
  "2",
  "--steps",
  "2",
];

Deno.test({
  name: "train CLI: --template chat trains on the model's chat template; the run's model keeps it",
  sanitizeResources: false,
  async fn() {
    const modelDir = join(root, "chat-model");
    // The byte Llama's shape, read through a tokenizer.json: 256 bytes + 3 specials ≤ 260 rows.
    const cfg = { ...TINY_BYTE_LLAMA, bos: undefined, eos: 258, pad: 256 };
    await saveModel(modelDir, cfg, initParams(cfg, 1));
    await writeByteChatTokenizer(modelDir);
    const out = join(root, "run");
    const r = await train(["--model", modelDir, ...BASE, "--template", "chat", "--out", out]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /accuracy after \(addition\): .*%/);
    const run = JSON.parse(await Deno.readTextFile(join(out, "config.json")));
    assert.equal(run.template, "chat");
    const tuned = await loadModel(join(out, "model"));
    assert.equal(tuned.template, "chat");
    assert.equal(tuned.tokenizer.kind, "hf");
    assert.ok(tuned.tokenizer.chatTemplate);
  },
});

Deno.test({
  name: "train CLI: --template chat without a chat template, or an unknown template, is exit 2",
  sanitizeResources: false,
  async fn() {
    const byteDir = join(root, "byte-model");
    await saveTinyByteModel(byteDir);
    const none = await train(["--model", byteDir, ...BASE, "--template", "chat"]);
    assert.equal(none.code, 2, none.stderr);
    assert.match(
      none.stderr,
      /--template: chat needs the model's chat template, and .*byte-model has none \(no chat_template in tokenizer_config\.json/,
    );
    const bad = await train(["--model", byteDir, ...BASE, "--template", "chatml"]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(
      bad.stderr,
      /--template: must be alpaca, compact, chat or a prompt containing \{query\} \(got "chatml"\)/,
    );
  },
});
