import assert from "node:assert/strict";
import { join } from "node:path";
import { type HostArray, transposed } from "../../../dsl/host_array.ts";
import { linear } from "../../../dsl/nn/layers.ts";
import { matmul, mean, square, sub } from "../../../mod.ts";
import type { Tensor } from "../../../dsl/trace.ts";
import { readSafetensors } from "../../../runtime/io/safetensors.ts";
import { pissaToLora, saveLoraAdapter } from "../../../runtime/models/peft.ts";
import { createTrainer, type Method } from "../../../runtime/trainer.ts";
import { randomArray } from "../../helpers/models.ts";

const NAME = "model.layers.0.self_attn.q_proj.weight";
const loss = (p: Record<string, Tensor>, b: { x: Tensor; y: Tensor }) =>
  mean(square(sub(linear(b.x, p[NAME]), b.y)));

/**
 * The merge PEFT does from adapter_config.json: V = W + s·B·A with s = α/r (α/√r with
 * use_rslora); with use_dora, W' = magnitude ⊙ V / ‖V‖ (norm of each output row).
 */
function applyLora(
  w: HostArray,
  a: HostArray,
  b: HostArray,
  config: { lora_alpha: number; use_rslora: boolean; use_dora: boolean },
  magnitude?: HostArray,
): Float64Array {
  const [m, n] = w.shape, r = a.shape[0];
  const scale = config.lora_alpha / (config.use_rslora ? Math.sqrt(r) : r);
  const v = Float64Array.from(w.data, (x, idx) => {
    const i = Math.floor(idx / n), j = idx % n;
    let s = 0;
    for (let c = 0; c < r; c++) s += b.data[i * r + c] * a.data[c * n + j];
    return x + scale * s;
  });
  if (!config.use_dora) return v;
  for (let i = 0; i < m; i++) {
    const row = v.subarray(i * n, (i + 1) * n);
    const norm = Math.hypot(...row);
    row.forEach((x, j) => (row[j] = (magnitude!.data[i] / norm) * x));
  }
  return v;
}

const CASES: { method: Method; rsLora?: boolean; r: number; alpha: number }[] = [
  { method: "pissa", r: 4, alpha: 8 },
  { method: "lora", r: 2, alpha: 4 },
  { method: "milora", r: 4, alpha: 8 },
  { method: "pissa", rsLora: true, r: 4, alpha: 4 * Math.SQRT2 },
  { method: "dora", r: 2, alpha: 4 },
];

for (const { method, rsLora, r: peftRank, alpha: peftAlpha } of CASES) {
  Deno.test(`PEFT export (${method}${rsLora ? ", rsLoRA" : ""}): the adapter on the original W reproduces the trained model`, async () => {
    const w = randomArray([10, 8], 3);
    const trainer = await createTrainer({
      loss,
      params: { [NAME]: w },
      adapt: [NAME],
      method,
      devices: 2,
      rank: 2,
      alpha: 4,
      rsLora,
      optimizer: { lr: 0.05 },
    });
    for (let s = 0; s < 3; s++) {
      await trainer.step(
        [0, 1].map((k) => ({
          x: randomArray([4, 8], 10 * s + k),
          y: randomArray([4, 10], 50 + 10 * s + k),
        })),
      );
    }
    const exported = (await trainer.adapters())!;
    assert.equal(exported.initial !== undefined, method === "pissa" || method === "milora");
    const lora = exported.initial
      ? pissaToLora(exported.trained, exported.initial)
      : exported.trained;
    const dir = await Deno.makeTempDir();
    await saveLoraAdapter(dir, lora, { baseModel: "models/base" });
    const tensors = await readSafetensors(join(dir, "adapter_model.safetensors"));
    const prefix = "base_model.model.model.layers.0.self_attn.q_proj";
    const dora = method === "dora";
    assert.deepEqual(Object.keys(tensors).sort(), [
      `${prefix}.lora_A.weight`,
      `${prefix}.lora_B.weight`,
      ...(dora ? [`${prefix}.lora_magnitude_vector.weight`] : []),
    ]);
    const config = JSON.parse(await Deno.readTextFile(join(dir, "adapter_config.json")));
    assert.equal(config.peft_type, "LORA");
    assert.deepEqual(config.target_modules, ["q_proj"]);
    assert.equal(config.r, peftRank);
    assert.ok(Math.abs(config.lora_alpha - peftAlpha) < 1e-12, `lora_alpha ${config.lora_alpha}`);
    assert.equal(config.use_rslora, rsLora ?? false);
    assert.equal(config.use_dora, dora);
    const merged = applyLora(
      w,
      tensors[`${prefix}.lora_A.weight`],
      tensors[`${prefix}.lora_B.weight`],
      config,
      tensors[`${prefix}.lora_magnitude_vector.weight`],
    );
    const want = (await trainer.params())[NAME];
    const scale = Math.max(...Array.from(want.data, Math.abs));
    merged.forEach((v, i) =>
      assert.ok(Math.abs(v - want.data[i]) <= 1e-5 * scale, `element ${i}: ${v} vs ${want.data[i]}`)
    );
    assert.ok(
      want.data.some((v, i) => Math.abs(v - w.data[i]) > 1e-3),
      "training changed the model",
    );
    await Deno.remove(dir, { recursive: true });
  });
}

for (const method of ["lora", "dora"] as const) {
  Deno.test(`PEFT export (${method}, GPT-2 Conv1D, fan_in_fan_out): PEFT's own init orientation, and its transposed merge reproduces the trained weight`, async () => {
    const name = "transformer.h.0.attn.c_attn.weight";
    const w = randomArray([8, 12], 4); // Conv1D: [in, out], used as x·W
    const conv = (p: Record<string, Tensor>, b: { x: Tensor; y: Tensor }) =>
      mean(square(sub(matmul(b.x, p[name]), b.y)));
    const trainer = await createTrainer({
      loss: conv,
      params: { [name]: w },
      adapt: [name],
      fanInFanOut: [name],
      method,
      devices: 1,
      rank: 2,
      optimizer: { lr: 0.05 },
    });
    const dir = await Deno.makeTempDir();
    const prefix = "base_model.model.transformer.h.0.attn.c_attn";
    const exportNow = async () => {
      await saveLoraAdapter(dir, (await trainer.adapters())!.trained, { fanInFanOut: true });
      return await readSafetensors(join(dir, "adapter_model.safetensors"));
    };
    // At init, as PEFT starts: lora_A [r, in] ~ U(±1/√in), lora_B [out, r] = 0, magnitude ‖W‖
    // of each output feature (a column of the stored weight).
    const t0 = await exportNow();
    const bound = 1 / Math.sqrt(8);
    assert.ok(t0[`${prefix}.lora_A.weight`].data.every((v) => v !== 0 && Math.abs(v) <= bound));
    assert.ok(t0[`${prefix}.lora_B.weight`].data.every((v) => v === 0));
    if (method === "dora") {
      const mag = t0[`${prefix}.lora_magnitude_vector.weight`];
      assert.deepEqual(mag.shape, [12]);
      const col = (j: number) =>
        Math.hypot(...Array.from({ length: 8 }, (_, i) => w.data[i * 12 + j]));
      mag.data.forEach((v, j) => assert.ok(Math.abs(v - col(j)) < 1e-6 * col(j), `column ${j}`));
    }
    for (let s = 0; s < 3; s++) {
      await trainer.step([{ x: randomArray([4, 8], s + 1), y: randomArray([4, 12], s + 9) }]);
    }
    const t = await exportNow();
    const [loraA, loraB] = [t[`${prefix}.lora_A.weight`], t[`${prefix}.lora_B.weight`]];
    assert.deepEqual([loraA.shape, loraB.shape], [[2, 8], [12, 2]]); // [r, in], [out, r]
    const config = JSON.parse(await Deno.readTextFile(join(dir, "adapter_config.json")));
    assert.equal(config.fan_in_fan_out, true);
    // PEFT: W [out, in] = storedᵀ, merged (DoRA: normalised per output row), stored back transposed.
    const merged = applyLora(
      transposed(w),
      loraA,
      loraB,
      config,
      t[`${prefix}.lora_magnitude_vector.weight`],
    );
    const want = (await trainer.params())[name];
    for (let i = 0; i < 8; i++) {
      for (let j = 0; j < 12; j++) {
        const got = merged[j * 8 + i];
        assert.ok(Math.abs(got - want.data[i * 12 + j]) < 1e-5, `(${i}, ${j}): ${got}`);
      }
    }
    assert.ok(want.data.some((v, i) => Math.abs(v - w.data[i]) > 1e-3), "training moved W");
    await Deno.remove(dir, { recursive: true });
  });
}

Deno.test("fanInFanOut names only adapted weights", async () => {
  await assert.rejects(
    createTrainer({
      loss,
      params: { [NAME]: randomArray([10, 8], 3), other: randomArray([4, 4], 1) },
      adapt: [NAME],
      fanInFanOut: ["other"],
      method: "lora",
      devices: 1,
      rank: 2,
      optimizer: { lr: 0.05 },
    }),
    /fanInFanOut.*"other" is not one of the adapted weights/,
  );
});
