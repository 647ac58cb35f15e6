import assert from "node:assert/strict";
import { join } from "node:path";
import type { HostArray } from "../../../dsl/host_array.ts";
import { interpret } from "../../../dsl/interpret.ts";
import { configToHf, type ModelConfig } from "../../../dsl/nn/config.ts";
import { forward, initParams } from "../../../dsl/nn/transformer.ts";
import type { Tensor } from "../../../dsl/trace.ts";
import { writeSafetensors } from "../../../runtime/io/safetensors.ts";
import { jit } from "../../../runtime/jit.ts";
import { loadModel, saveModel } from "../../../runtime/models/model_dir.ts";
import { formatPrompt } from "../../../runtime/data/instruct.ts";
import { assertClose } from "../../helpers/arrays.ts";
import { TINY_GPT2, TINY_LLAMA, TINY_QWEN2 } from "../../helpers/tiny_models.ts";
import { frozenStorageFor } from "../../../runtime/train/config.ts";
import { writeRealTokenizer } from "../text/fixtures/real_tokenizers.ts";

const batch: HostArray = {
  shape: [2, 6],
  dtype: "i32",
  data: Int32Array.of(1, 4, 9, 16, 2, 0, 3, 3, 8, 19, 5, 7),
};
const logits = (cfg: ModelConfig, params: Record<string, HostArray>) =>
  interpret(
    (p: Record<string, Tensor>, x: Tensor) => forward(cfg, p, x),
    params,
    batch,
  ) as HostArray;

Deno.test("models: a GPT-2 checkpoint in HF layout (no transformer. prefix, mask buffers, Conv1D) loads unchanged", async () => {
  const dir = await Deno.makeTempDir();
  const params = initParams(TINY_GPT2, 7);
  // As GPT2Model.save_pretrained writes it: bare names, plus the causal-mask buffers.
  const hf: Record<string, HostArray> = {};
  for (const [name, a] of Object.entries(params)) hf[name.replace(/^transformer\./, "")] = a;
  const mask = {
    shape: [1, 1, 12, 12],
    dtype: "f32" as const,
    data: new Float32Array(144).fill(1),
  };
  hf["h.0.attn.bias"] = mask;
  hf["h.1.attn.masked_bias"] = { shape: [], dtype: "f32", data: Float32Array.of(-1e4) };
  await writeSafetensors(join(dir, "model.safetensors"), hf, {}, { checksum: false });
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(configToHf(TINY_GPT2)));
  await Deno.writeTextFile(join(dir, "tokenizer.json"), JSON.stringify(TINY_BPE));
  const model = await loadModel(dir);
  assert.equal(model.config.family, "gpt2");
  assert.deepEqual(Object.keys(model.params).sort(), Object.keys(params).sort());
  assert.deepEqual(logits(model.config, model.params).data, logits(TINY_GPT2, params).data);
  assert.equal(model.tokenizer.kind, "hf");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("models: a sharded Llama checkpoint (index.json) loads; saveModel round trips", async () => {
  const dir = await Deno.makeTempDir();
  const params = initParams(TINY_LLAMA, 9);
  const names = Object.keys(params);
  const half = Math.floor(names.length / 2);
  const shards = [names.slice(0, half), names.slice(half)];
  const weightMap: Record<string, string> = {};
  for (const [i, shard] of shards.entries()) {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    await writeSafetensors(join(dir, file), Object.fromEntries(shard.map((n) => [n, params[n]])));
    shard.forEach((n) => (weightMap[n] = file));
  }
  await Deno.writeTextFile(
    join(dir, "model.safetensors.index.json"),
    JSON.stringify({ weight_map: weightMap }),
  );
  await Deno.writeTextFile(
    join(dir, "config.json"),
    JSON.stringify({ ...configToHf(TINY_LLAMA), dsl_tokenizer: "byte" }),
  );
  const model = await loadModel(dir);
  assert.deepEqual(model.config, TINY_LLAMA);
  assert.deepEqual(logits(model.config, model.params).data, logits(TINY_LLAMA, params).data);

  const out = await Deno.makeTempDir();
  await saveModel(out, TINY_LLAMA, params, { dsl_tokenizer: "byte", dsl_template: "compact" });
  const again = await loadModel(out);
  assert.deepEqual(again.params, params);
  assert.equal(again.template, "compact");
  await Deno.remove(dir, { recursive: true });
  await Deno.remove(out, { recursive: true });
});

Deno.test("models: a checkpoint that does not match its config is rejected, naming the tensors", async () => {
  const dir = await Deno.makeTempDir();
  const params = initParams(TINY_LLAMA, 1);
  delete params["model.norm.weight"];
  params["model.layers.0.mlp.up_proj.weight"] = {
    shape: [3, 3],
    dtype: "f32",
    data: new Float32Array(9),
  };
  await saveModel(dir, TINY_LLAMA, params, { dsl_tokenizer: "byte" });
  await assert.rejects(loadModel(dir), (e: Error) => {
    assert.match(e.message, /missing model\.norm\.weight \[16\]/);
    assert.match(e.message, /up_proj\.weight is \[3,3\], expected \[24,16\]/);
    return true;
  });
  await Deno.remove(dir, { recursive: true });
});

for (const cfg of [TINY_LLAMA, TINY_GPT2, TINY_QWEN2]) {
  const name = cfg.attentionBias ? "qwen2" : cfg.family;
  Deno.test(`models (${name}): the compiled WebGPU forward matches the CPU reference`, async () => {
    const params = initParams(cfg, 2);
    for (const a of Object.values(params)) {
      if (a.shape.length === 2) a.data.forEach((v, i) => (a.data[i] = v * 20));
    }
    const f = jit((p: Record<string, Tensor>, x: Tensor) => forward(cfg, p, x));
    assertClose(await f(params, batch), logits(cfg, params), { rtol: 1e-4, atol: 1e-4 });
  });
}

/** A two-merge BPE vocabulary (enough for the loader to accept the folder). */
const TINY_BPE = {
  model: {
    type: "BPE",
    vocab: { "a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġab": 4 },
    merges: ["a b", "Ġ ab"],
  },
  added_tokens: [{ id: 5, content: "<|endoftext|>", special: true }],
};

Deno.test("models: a Qwen2 folder (HF names, q/k/v biases, BF16, model_type qwen2) loads and runs", async () => {
  const dir = await Deno.makeTempDir();
  const params = initParams(TINY_QWEN2, 4);
  // Non-zero biases, exactly representable in BF16 (so the comparison below is exact).
  for (const [name, a] of Object.entries(params)) {
    a.data.forEach((v, i) => {
      const x = name.endsWith(".bias") ? ((i % 7) - 3) / 8 : v;
      a.data[i] = new Float32Array(
        new Uint32Array([new Uint32Array(Float32Array.of(x).buffer)[0] & 0xffff0000]).buffer,
      )[0];
    });
  }
  await writeSafetensors(join(dir, "model.safetensors"), params, {}, { floatDType: "BF16" });
  const hf = configToHf(TINY_QWEN2);
  assert.equal(hf.model_type, "qwen2");
  await Deno.writeTextFile(
    join(dir, "config.json"),
    JSON.stringify({ ...hf, dsl_tokenizer: "byte" }),
  );
  const model = await loadModel(dir);
  assert.deepEqual(model.config, TINY_QWEN2);
  // What --frozen-dtype auto keeps the frozen weights in on the device.
  assert.equal(model.floatDType, "BF16");
  assert.equal(frozenStorageFor("auto", model.floatDType), "bf16");
  assert.equal(frozenStorageFor("f32", model.floatDType), "f32");
  assert.equal(frozenStorageFor(undefined, "F32"), "f32");
  assert.deepEqual(
    model.params["model.layers.1.self_attn.k_proj.bias"],
    params["model.layers.1.self_attn.k_proj.bias"],
  );
  assert.deepEqual(logits(model.config, model.params).data, logits(TINY_QWEN2, params).data);
  // The biases matter: dropping them changes the logits.
  const noBias = { ...TINY_QWEN2, attentionBias: undefined };
  const stripped = Object.fromEntries(
    Object.entries(params).filter(([n]) => !n.endsWith("proj.bias")),
  );
  assert.notDeepEqual(logits(noBias, stripped).data, logits(TINY_QWEN2, params).data);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("models: a Qwen3-sized folder with the real tokenizer.json and tokenizer_config.json loads and runs", async () => {
  const dir = await Deno.makeTempDir();
  const cfg: ModelConfig = { ...TINY_QWEN2, vocab: 151936 }; // Qwen3's embedding rows
  // The small layers from initParams; the 151936-row (tied) embedding filled cheaply.
  const params = initParams(TINY_QWEN2, 5);
  const embedding = new Float32Array(cfg.vocab * cfg.width).map((_, i) => Math.sin(i) / 8);
  params["model.embed_tokens.weight"] = {
    shape: [cfg.vocab, cfg.width],
    dtype: "f32",
    data: embedding,
  };
  await writeSafetensors(join(dir, "model.safetensors"), params, {}, { checksum: false });
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(configToHf(cfg)));
  await writeRealTokenizer(dir, "qwen3"); // 11 MB, 151k merges
  const model = await loadModel(dir);
  const tok = model.tokenizer;
  assert.equal(tok.kind, "hf");
  assert.deepEqual(tok.encode("Hello world"), [9707, 1879]); // as the Rust reference
  assert.deepEqual([tok.vocabSize, tok.eos, tok.pad, tok.bos], [151669, 151645, 151643, undefined]);
  const prompt = formatPrompt("What is 2+2?", "chat", tok);
  assert.equal(prompt, "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n");
  const ids = tok.encode(prompt);
  const x: HostArray = { shape: [1, ids.length], dtype: "i32", data: Int32Array.from(ids) };
  const out = interpret(
    (p: Record<string, Tensor>, t: Tensor) => forward(model.config, p, t),
    model.params,
    x,
  ) as HostArray;
  assert.deepEqual(out.shape, [1, ids.length, 151936]);
  assert.ok(out.data.every(Number.isFinite));
  await Deno.remove(dir, { recursive: true });
});

Deno.test("models: a Llama 2 folder (SentencePiece-style tokenizer.json) loads; BOS from its config", async () => {
  const dir = await Deno.makeTempDir();
  const cfg: ModelConfig = { ...TINY_LLAMA, vocab: 32000, bos: 1, eos: 2, pad: undefined };
  const params = initParams(TINY_LLAMA, 6);
  for (const name of ["model.embed_tokens.weight", "lm_head.weight"]) {
    params[name] = {
      shape: [cfg.vocab, cfg.width],
      dtype: "f32",
      data: new Float32Array(cfg.vocab * cfg.width),
    };
  }
  await saveModel(dir, cfg, params);
  await writeRealTokenizer(dir, "llama2");
  const model = await loadModel(dir);
  const tok = model.tokenizer;
  assert.deepEqual(tok.encode("Hello world"), [22557, 1526]);
  assert.deepEqual(
    tok.encode("你好，世界！今天天气很好。"),
    [
      28705,
      29383,
      29530,
      28924,
      30050,
      29822,
      29267,
      30316,
      29354,
      29354,
      30627,
      30111,
      29530,
      28944,
    ],
  );
  assert.equal(tok.decode([tok.bos!, 22557, 1526, tok.eos]), "Hello world");
  assert.deepEqual([tok.bos, tok.eos, tok.pad, tok.chatTemplate], [1, 2, 2, undefined]);
  await Deno.remove(dir, { recursive: true });
});
