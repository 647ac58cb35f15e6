/**
 * Step time per mode on whatever WebGPU device this machine has (run on a GPU machine):
 * `deno run -A bench/gpu_steps.ts`. The default run's step (shipped base, K = 4, 4 × 192 tokens
 * per shard) for HD-PiSSA, DP-LoRA and full fine-tuning, modes virtual and devices.
 */
import { createTrainer, type Method } from "../runtime/trainer.ts";
import type { TrainerConfig } from "../runtime/trainer_common.ts";
import { readSafetensorsFile } from "../runtime/io/safetensors.ts";
import { configFromHf } from "../dsl/nn/config.ts";
import { lmLoss } from "../dsl/nn/transformer.ts";
import type { Tensor } from "../dsl/trace.ts";
import type { HostArray } from "../dsl/host_array.ts";
import type { LmBatch } from "../dsl/nn/transformer.ts";

// Read directly (not through loadModel): no tokenizer, so no npm packages on the GPU machine.
const model = {
  config: configFromHf(JSON.parse(await Deno.readTextFile("models/base/config.json"))),
  params: (await readSafetensorsFile("models/base/model.safetensors")).tensors,
};
const adapt = Object.keys(model.params).filter((n) => /_proj\.weight$/.test(n));
const tok = (s: number): HostArray => ({
  shape: [4, 192],
  dtype: "i32",
  data: Int32Array.from({ length: 768 }, (_, i) => (s * 31 + i * 7) % 256),
});
const shard = (s: number) => ({
  ids: tok(s),
  targets: tok(s + 1),
  mask: { shape: [4, 192], dtype: "f32" as const, data: new Float32Array(768).fill(1) },
});
/** One trainer's step: median of steps 3–8, its setup and kernel count, as one JSON line. */
async function measure(
  method: Method,
  mode: "virtual" | "devices",
  variant = "default",
  extra: Partial<TrainerConfig> = {},
) {
  const t0 = performance.now();
  const t = await createTrainer({
    loss: (p: Record<string, Tensor>, b: LmBatch<Tensor>) => lmLoss(model.config, p, b),
    params: model.params,
    adapt,
    method,
    devices: 4,
    rank: 4,
    optimizer: { lr: 1e-3 },
    mode,
    ...extra,
  });
  const times: number[] = [];
  for (let s = 0; s < 8; s++) {
    const a = performance.now();
    await t.step([shard(4 * s), shard(4 * s + 1), shard(4 * s + 2), shard(4 * s + 3)]);
    if (s >= 2) times.push(performance.now() - a);
  }
  times.sort((x, y) => x - y);
  console.log(
    JSON.stringify({
      method,
      mode,
      variant,
      medianMs: +times[times.length >> 1].toFixed(1),
      totalS: +((performance.now() - t0) / 1000).toFixed(1),
      kernels: t.stats().kernelsPerStep,
    }),
  );
  await t.close();
}

for (const method of ["hdpissa", "lora", "full"] as Method[]) {
  for (const mode of ["virtual", "devices"] as const) await measure(method, mode);
}
// What grouped dispatches and the autotuner (issue 15) change on this device.
await measure("hdpissa", "virtual", "separate dispatches", { codegen: { groupKernels: false } });
// The GPU options of 2026-12-07, each turned off alone.
await measure("hdpissa", "virtual", "no co-products", { codegen: { matmulCoProducts: false } });
await measure("hdpissa", "virtual", "a row per invocation", { codegen: { rowWorkgroup: 0 } });
await measure("hdpissa", "virtual", "chains stored", { codegen: { recomputeElementwise: false } });
await measure("hdpissa", "virtual", "scores stored", { codegen: { inlineProducts: 0 } });
await measure("hdpissa", "virtual", "autotuned", { autotune: { store: null } });
// Subgroup row reductions (off by default until measured here; tested in Chromium only): on a
// device that grants `subgroups`. Last, and caught, so that a failure costs no other figure.
await measure("hdpissa", "virtual", "subgroup reductions", {
  codegen: { subgroupReductions: true },
}).catch((e) => console.log(JSON.stringify({ variant: "subgroup reductions", error: String(e) })));
