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
import { assertClose } from "../../helpers/arrays.ts";
import { TINY_GPT2, TINY_LLAMA, TINY_QWEN2 } from "../../helpers/tiny_models.ts";

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
  assert.equal(model.tokenizer.kind, "bpe");
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

/** A two-merge byte-level BPE vocabulary (enough for the loader to accept the folder). */
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
