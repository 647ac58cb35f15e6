/**
 * Writes a model folder shaped exactly like a Hugging Face checkpoint of GPT-2 small or
 * Qwen2.5-0.5B (names, shapes, config.json; Qwen in BF16 like the published weights), with random
 * weights generated on the device: what `deno task train --model DIR` reads.
 *
 *   deno run -A bench/scale_model.ts gpt2|qwen DIR
 *
 * GPT-2 keeps its own tokenizer (the shipped GPT-2 BPE). No Qwen tokenizer is vendored: the Qwen
 * folder names the GPT-2 BPE in config.json (`dsl_tokenizer`), whose ids all fall inside Qwen's
 * 151,936-row embedding, so the step's shapes and work are those of the real model.
 */
import { initParamsOnDevice } from "../runtime/models/init.ts";
import { saveModel } from "../runtime/models/model_dir.ts";
import { SCALE_MODELS } from "./gpu_scale.ts";

if (import.meta.main) {
  const [name = "gpt2", dir] = Deno.args;
  const cfg = SCALE_MODELS[name];
  if (!cfg || !dir) {
    console.error("usage: deno run -A bench/scale_model.ts gpt2|qwen DIR");
    Deno.exit(2);
  }
  const t0 = performance.now();
  const params = await initParamsOnDevice(cfg, 0);
  const extra = name === "qwen" ? { dsl_tokenizer: "gpt2", torch_dtype: "bfloat16" } : {};
  await saveModel(dir, cfg, params, extra, name === "qwen" ? "BF16" : "F32");
  const count = Object.values(params).reduce((n, p) => n + p.data.length, 0);
  console.log(
    `${dir}: ${name}, ${count.toLocaleString("en")} parameters, ` +
      `${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
}
