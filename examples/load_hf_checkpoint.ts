/**
 * Research script: load a Hugging Face checkpoint folder (config.json, model.safetensors or a
 * sharded index, tokenizer files) and use it — here the shipped base model, a byte-level Llama.
 * Prints the configuration read from config.json, the parameter count, a greedy continuation, and
 * the model's loss per byte on a held-out sentence. Llama/Mistral/Qwen2 and GPT-2 folders (with
 * GPT-2's Conv1D layout) load the same way.
 *
 *   deno run --allow-read --allow-env examples/load_hf_checkpoint.ts [model-dir]
 */

import { collate, encodeExample, generate, jit, loadModel, nn, type Tensor } from "../mod.ts";

const dir = Deno.args[0] ?? new URL("../models/base", import.meta.url).pathname;
const model = await loadModel(dir);
const { config, params, tokenizer } = model;
const count = Object.values(params).reduce((s, p) => s + p.data.length, 0);
console.log(
  `${dir}: ${config.family}, width ${config.width}, ${config.layers} layers, ` +
    `${config.heads} heads (${config.kvHeads} kv), context ${config.context}, vocab ${config.vocab}`,
);
console.log(
  `${count.toLocaleString("en")} parameters in ${Object.keys(params).length} tensors, e.g.`,
);
for (const name of Object.keys(params).slice(0, 4)) console.log(`  ${name} ${params[name].shape}`);

const prompt = "The State of the Union is";
const [continuation] = await generate(config, tokenizer, params, [prompt], { maxNewTokens: 48 });
console.log(`\ngreedy continuation of "${prompt}":\n  ${JSON.stringify(continuation)}`);

// Loss per byte on a sentence, computed as training computes it.
const text = {
  query: "",
  response: "We will build a stronger economy for every family in this country.",
};
const batch = collate([encodeExample(tokenizer, text, model.template)], 96, tokenizer.pad);
const loss = jit((p: Record<string, Tensor>, b: nn.LmBatch<Tensor>) => nn.lmLoss(config, p, b));
const nats = (await loss(params, batch)).data[0];
console.log(
  `loss on a sentence: ${nats.toFixed(3)} nats/byte (perplexity ${Math.exp(nats).toFixed(2)})`,
);
