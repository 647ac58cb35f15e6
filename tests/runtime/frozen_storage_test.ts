/**
 * `frozenStorage`: the frozen weights of a trainer kept packed (bf16/f16) on the device. With
 * weights that the format represents exactly (a BF16 checkpoint), every method trains exactly as
 * with f32 storage, snapshots restore into the packed storage, and the step's weights take fewer
 * bytes; only the parameters the method never updates are packed.
 */

import assert from "node:assert/strict";
import type { HostArray } from "../../dsl/host_array.ts";
import { initParams, lmLoss } from "../../dsl/nn/transformer.ts";
import type { Tensor } from "../../dsl/trace.ts";
import { createTrainer, type Method, type TrainerConfig } from "../../runtime/trainer.ts";
import { TrainerConfigError } from "../../runtime/trainer_common.ts";
import { type PackedFormat, roundedTo } from "../../mod.ts";
import { randomArray } from "../helpers/models.ts";
import { TINY_LLAMA, tinyTokenizer } from "../helpers/tiny_models.ts";
import { generate } from "../../runtime/models/generate.ts";
import { assertClose } from "../helpers/arrays.ts";

type P = Record<string, Tensor>;
const cfg = TINY_LLAMA;
const loss = (p: P, b: { ids: Tensor; targets: Tensor; mask: Tensor }) => lmLoss(cfg, p, b);

const ids = (seed: number): HostArray => ({
  shape: [2, 6],
  dtype: "i32",
  data: Int32Array.from(randomArray([2, 6], seed, 1).data, (v) => Math.floor((v + 1) * 8)),
});
const batch = (seed: number) => ({
  ids: ids(seed),
  targets: ids(seed + 1),
  mask: { shape: [2, 6], dtype: "f32" as const, data: new Float32Array(12).fill(1) },
});

/** Parameters whose values `format` holds exactly, as a checkpoint stored in it. */
function representable(format: PackedFormat): Record<string, HostArray> {
  const params = initParams(cfg, 7);
  return Object.fromEntries(
    Object.entries(params).map(([k, a]) => [k, { ...a, data: roundedTo(format, a.data) }]),
  );
}

/** Same values read packed or from f32: the same kernels, up to the driver's fma contraction. */
const SAME = { rtol: 1e-6, atol: 1e-7 };
const losses = (xs: number[]): HostArray => ({
  shape: [xs.length],
  dtype: "f32",
  data: Float32Array.from(xs),
});

const adapt = ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.up_proj.weight"];

function config(method: Method, params: Record<string, HostArray>): TrainerConfig {
  return { loss, params, adapt, method, devices: 2, rank: 2, optimizer: { lr: 0.01 } };
}

Deno.test("frozen weights stored in bf16/f16 train exactly as f32, in fewer bytes", async () => {
  const shards = [0, 1, 2].map((s) => [batch(10 * s), batch(10 * s + 5)]);
  const cases: [Method, PackedFormat, "virtual" | "devices"][] = [
    ["hdpissa", "bf16", "virtual"],
    ["lora", "f16", "virtual"],
    ["pissa", "bf16", "virtual"],
    ["hdpissa", "f16", "devices"],
    ["full", "bf16", "virtual"],
  ];
  for (const [method, format, mode] of cases) {
    const label = `${method} ${format} ${mode}`;
    const params = representable(format);
    const plain = await createTrainer({ ...config(method, params), mode });
    const packed = await createTrainer({ ...config(method, params), mode, frozenStorage: format });
    for (const s of shards) {
      const [a, b] = [(await plain.step(s)).loss, (await packed.step(s)).loss];
      assertClose(losses(b), losses(a), { ...SAME, label: `${label} loss` });
    }
    const [pa, pb] = [await plain.params(), await packed.params()];
    for (const k of Object.keys(pa)) {
      assertClose(pb[k], pa[k], { ...SAME, label: `${label}: ${k}` });
    }
    if (mode === "virtual") {
      const [qa, qb] = [await plain.plan!(shards[0]), await packed.plan!(shards[0])];
      // Frozen: every weight not adapted, and LoRA's base W (PiSSA's residual and HD-PiSSA's
      // W are the method's own, in f32).
      const frozen = Object.entries(params).filter(([k]) =>
        method === "lora" || !adapt.includes(k)
      );
      const halved = frozen.reduce(
        (n, [, a]) => n + 4 * a.data.length - 4 * Math.ceil(a.data.length / 2),
        0,
      );
      assert.equal(qa.parameterBytes - qb.parameterBytes, halved, `${label}: parameter bytes`);
      // What the method trains (full fine-tuning's W, adapters) and Adam's moments stay f32.
      assert.equal(qb.adapterStateBytes, qa.adapterStateBytes, `${label}: trained state bytes`);
      assert.ok(qb.totalBytes < qa.totalBytes, label);
    }
    // A snapshot restores into the packed storage and the steps after it agree still.
    const snap = await packed.snapshot();
    await packed.restore(snap);
    await plain.restore(await plain.snapshot());
    const [a, b] = [(await plain.step(shards[0])).loss, (await packed.step(shards[0])).loss];
    assertClose(losses(b), losses(a), { ...SAME, label: `${label} after restore` });
    await plain.close(), await packed.close();
  }
});

Deno.test("generation reads a trainer's packed device weights as its host weights", async () => {
  const params = representable("bf16");
  const trainer = await createTrainer({ ...config("hdpissa", params), frozenStorage: "bf16" });
  await trainer.step([batch(1), batch(2)]);
  const device = trainer.deviceParams!();
  assert.equal(device["model.embed_tokens.weight"].storage, "bf16");
  assert.equal(device[adapt[0]].storage, undefined);
  const tok = tinyTokenizer(cfg);
  const prompts = ["abc", "de", "fgh"];
  const opts = { maxNewTokens: 4 };
  const fromDevice = await generate(cfg, tok, device, prompts, opts);
  assert.deepEqual(fromDevice, await generate(cfg, tok, await trainer.params(), prompts, opts));
  assert.ok(!device["model.embed_tokens.weight"].deleted, "generation leaves the trainer's arrays");
  await trainer.close();
});

Deno.test("frozenStorage names an unknown format", async () => {
  const params = representable("bf16");
  await assert.rejects(
    // deno-lint-ignore no-explicit-any
    () => createTrainer({ ...config("hdpissa", params), frozenStorage: "f8" as any }),
    (e) => e instanceof TrainerConfigError && /frozenStorage.*"f8"/.test(e.message),
  );
});
