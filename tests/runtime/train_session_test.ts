/**
 * `FineTuneSession` (what the browser app runs), on a tiny byte-level Llama: a run stopped and
 * resumed — on the same trainer, or on a rebuilt one restored from the in-memory snapshot —
 * retraces the uninterrupted run exactly; the update rank is recorded; the merged model loads back
 * as a folder and the PEFT adapter has PEFT's names and shapes (PiSSA as a rank-2r LoRA); bad
 * settings are refused with the field named.
 */

import assert from "node:assert/strict";
import type { HostArray } from "../../dsl/host_array.ts";
import { initParams } from "../../dsl/nn/transformer.ts";
import { taskSplits } from "../../runtime/data/synthetic.ts";
import { parseSafetensors } from "../../runtime/io/safetensors_format.ts";
import { type LoadedModel, loadModelFiles, memoryFiles } from "../../runtime/models/model_bytes.ts";
import { ByteTokenizer } from "../../runtime/text/tokenizer.ts";
import { FineTuneSession, type SessionSettings } from "../../runtime/train/session.ts";
import { TINY_BYTE_LLAMA } from "../helpers/tiny_models.ts";

const model: LoadedModel = {
  config: TINY_BYTE_LLAMA,
  params: initParams(TINY_BYTE_LLAMA, 1),
  tokenizer: new ByteTokenizer(),
  template: "compact",
  hfConfig: { dsl_tokenizer: "byte", dsl_template: "compact" },
};
const examples = taskSplits("addition", { train: 24, test: 0 }, 3).train;
const settings: SessionSettings = {
  method: "hdpissa",
  devices: 2,
  rank: 2,
  steps: 4,
  lr: 1e-2,
  schedule: "constant",
  batch: 2,
  maxLen: 64,
  rankEvery: 2,
};

Deno.test("session: a stopped run resumes where it stopped, on the same or a rebuilt trainer", async () => {
  const straight = await FineTuneSession.create(model, examples, settings);
  assert.equal(await straight.run(), "done");
  const want = straight.losses.map((l) => l.loss);
  assert.equal(want.length, 4);
  assert.ok(want.every(Number.isFinite));
  assert.ok(want[3] < want[0], `loss ${want}`);
  // Rank 0 before training, then W − W₀ has rank > 0 and at most the matrix's.
  assert.deepEqual(straight.ranks.map((r) => r.step), [0, 2, 4]);
  // One entry per adapted layer type (an empty list would pass the checks below vacuously).
  const types = new Set(straight.adapt.map((n) => n.split(".").at(-2)));
  for (const r of straight.ranks) assert.equal(r.byType.length, types.size, `step ${r.step}`);
  assert.ok(straight.ranks[0].byType.every((t) => t.maxRank === 0));
  assert.ok(straight.ranks[2].byType.every((t) => t.meanRank > 0 && t.maxRank <= 32));
  const wantModel = await straight.mergedModelFiles();
  await straight.close();

  // Stop after step 1, resume with the same settings (the trainer is kept) …
  const kept = await FineTuneSession.create(model, examples, settings);
  const running = kept.run();
  kept.stop();
  assert.equal(await running, "stopped");
  assert.equal(kept.step, 1);
  assert.equal(kept.snapshot?.step, 1);
  assert.equal(await kept.resume(), "done");
  assert.deepEqual(kept.losses.map((l) => l.loss), want);
  assert.deepEqual(kept.losses.map((l) => l.step), [1, 2, 3, 4]);
  await kept.close();

  // … or stop after step 2 of a 3-step run and resume with 4 steps: a new trainer is built and
  // restored from the snapshot (a constant rate, so the trajectory is the straight run's).
  const rebuilt = await FineTuneSession.create(model, examples, { ...settings, steps: 3 });
  assert.equal(
    await rebuilt.run((s) => {
      if (s.step === 2) s.stop();
    }),
    "stopped",
  );
  assert.equal(await rebuilt.resume({ steps: 4 }), "done");
  assert.equal(rebuilt.settings.steps, 4);
  assert.deepEqual(rebuilt.losses.map((l) => l.loss), want);
  assert.deepEqual(await rebuilt.mergedModelFiles(), wantModel);
  await assert.rejects(rebuilt.resume({ lr: 0 }), /learning rate must be > 0/);
  await rebuilt.close();
  await assert.rejects(rebuilt.run(), /closed/);
});

Deno.test("session: the merged model loads back; LoRA and PiSSA adapters in PEFT's layout", async () => {
  const q = "model.layers.0.self_attn.q_proj.weight";
  for (const method of ["hdpissa", "lora", "pissa"] as const) {
    const s = await FineTuneSession.create(model, examples, {
      ...settings,
      method,
      steps: 2,
      rankEvery: 0,
    });
    await s.run();
    assert.equal(s.ranks.length, 0);
    const files = await s.mergedModelFiles(memoryFiles({ "tokenizer_config.json": "{}" }));
    assert.deepEqual(Object.keys(files).sort(), [
      "config.json",
      "model.safetensors",
      "tokenizer_config.json",
    ]);
    const back = await loadModelFiles(memoryFiles(files));
    assert.deepEqual(back.config, TINY_BYTE_LLAMA);
    assert.equal(back.tokenizer.kind, "byte");
    assert.deepEqual(Object.keys(back.params).sort(), Object.keys(model.params).sort());
    const changed = (a: HostArray, b: HostArray) => a.data.some((v, i) => v !== b.data[i]);
    assert.ok(changed(back.params[q], model.params[q]), `${method}: q_proj unchanged`);
    assert.ok(!changed(back.params["model.norm.weight"], model.params["model.norm.weight"]));
    const adapter = await s.adapterFiles("tiny");
    if (method === "hdpissa") {
      assert.equal(adapter, undefined);
    } else {
      const r = method === "pissa" ? 4 : 2;
      const config = JSON.parse(new TextDecoder().decode(adapter!["adapter_config.json"]));
      assert.equal(config.r, r);
      assert.equal(config.base_model_name_or_path, "tiny");
      const tensors = (await parseSafetensors(adapter!["adapter_model.safetensors"])).tensors;
      assert.equal(Object.keys(tensors).length, 2 * s.adapt.length);
      assert.deepEqual(tensors[`base_model.model.${q.slice(0, -7)}.lora_A.weight`].shape, [r, 16]);
      assert.deepEqual(tensors[`base_model.model.${q.slice(0, -7)}.lora_B.weight`].shape, [16, r]);
    }
    await s.close();
  }
});

Deno.test("session: settings that cannot train are refused, naming the field", async () => {
  const bad = (over: Partial<SessionSettings>) =>
    FineTuneSession.create(model, examples, { ...settings, ...over });
  await assert.rejects(bad({ maxLen: 20 }), /maxLen 20 cuts every example before its response/);
  await assert.rejects(bad({ maxLen: 1000 }), /maxLen must be an integer in \[2, 128\]/);
  await assert.rejects(bad({ devices: 0 }), /devices \(K\) must be an integer ≥ 1/);
  await assert.rejects(bad({ steps: 1.5 }), /steps must be an integer/);
  await assert.rejects(bad({ lr: -1 }), /learning rate must be > 0/);
  await assert.rejects(bad({ adapt: ["nope"] }), /no 2-D weights named nope/);
  await assert.rejects(FineTuneSession.create(model, [], settings), /no training examples/);
});
