/**
 * Kernel budgets of the default training steps (issue 15: dispatches bound a GPU step). The step
 * `deno task train` compiles by default (shipped base, K = 4, r = 4, 4 × 64 tokens per shard) is
 * lowered for every method and its kernel and pipeline counts pinned as upper bounds, so a fusion
 * or code-size regression shows here; values are checked elsewhere (trainer_test, jit_fusion_values_test).
 */

import assert from "node:assert/strict";
import { lmLoss } from "../../dsl/nn/transformer.ts";
import type { Tensor } from "../../dsl/trace.ts";
import { collate, encodeExample, shard } from "../../runtime/data/instruct.ts";
import { taskSplits } from "../../runtime/data/synthetic.ts";
import { loadModel } from "../../runtime/models/model_dir.ts";
import { createTrainer, type Method } from "../../runtime/trainer.ts";
import { gpuCodegen } from "../../runtime/jit.ts";
import { gpu } from "../../runtime/device.ts";
import type { CodegenOptions } from "../../compiler/mod.ts";
import type { HostArray } from "../../dsl/host_array.ts";
import { adaptedWeights, DEFAULT_RUN } from "../../runtime/train/config.ts";

/**
 * Upper bounds, measured on lavapipe (2026-12-07): HD-PiSSA 278, DP-PiSSA and DP-LoRA 271, full
 * fine-tuning 152 (280, 273, 273 and 154 before sibling reductions shared a kernel, rule 11: the
 * loss's log-sum-exp and target log-probability, its token count and mean; 281, 274, 274 and 155
 * before short elementwise chains over one array were
 * recomputed where read; 375, 359, 359 and 237 before residual adds became matmul epilogues through
 * the linear layers' reshapes and softmax/norms row-wise kernels with custom gradients; 320, 317,
 * 317 and 194 before the TN kernel read Xᵀ·Y's X in place; LoRA/PiSSA 313 before NT and TN read
 * a stored view of the merged attention heads instead of its transposed copy, one kernel more;
 * 317, 314, 314 and 191 before the attention products read split heads in place and stored
 * merged ones through their own epilogue; 304, 301, 301 before Aᵀ·Bᵀ became (B·A)ᵀ, which
 * removed the copies of the frozen factors' transposes; 302, 298, 298, 178 before the MLP's
 * activation, gating and their gradients became more outputs of the products they read; 290,
 * 286, 286, 166 before masks built from iotas were recomputed where read; 288, 284, 284, 164
 * before an elementwise kernel could move down past a product to merge with a later one; 274,
 * 270, 270, 150 with `matmulSumProducts`, off by default for its compile time; 284, 280, 280, 160
 * before log-sum-exp's gradient was recomputed from its input and shared broadcasts were stored
 * unbroadcast).
 */
const BUDGET: Record<string, number> = { hdpissa: 278, pissa: 271, lora: 271, full: 152 };

/**
 * Distinct pipelines (what a cold first step compiles), measured on lavapipe (2026-12-07):
 * HD-PiSSA 35, DP-PiSSA and DP-LoRA 26, full fine-tuning 23 (41, 32, 32, 31 with
 * `liftMatmulLoopsUpTo: 1 << 22`, a text per large product's shape, not the default; 37, 28, 28,
 * 25 before sibling reductions shared
 * a kernel; 40, 30, 30, 26 before small kernels lifted their
 * divisors, `liftDivisorsUpTo`; 41, 31, 31, 27 before the recomputed chains; 76,
 * 74, 74, 59 before kernels that differ only in
 * sizes shared one, and before transposed views of stored views were read in place; 61, 58, 58,
 * 47 before heads were read and stored in place; 59, 56, 56 before Aᵀ·Bᵀ became (B·A)ᵀ; 57, 55,
 * 55, 45 before a reshape of a buffer was read at the view's flat index; 56, 54, 54, 44 before masks
 * were recomputed where read; 54, 52, 52, 42 before small products got the compact tile, which
 * made two of their texts one; 53, 51, 51, 42 before products that differ only in their epilogue
 * shared one text; 46, 43, 43, 35 before the log-sum-exp and broadcast changes above).
 */
const PIPELINES: Record<string, number> = { hdpissa: 35, pissa: 26, lora: 26, full: 23 };

/**
 * The same steps lowered as a GPU adapter would (`gpuCodegen`: operands read where they lie, no
 * layout copies, and independent kernels of one pipeline grouped into one dispatch), under this
 * adapter's limits (32 storage buffers a dispatch; a GPU that grants more groups more), measured
 * 2026-12-07: kernels and pipelines. HD-PiSSA 299 kernels before operands were read in place on
 * GPUs, 281 before grouping, 149 (44 pipelines) before sibling products were summed in the
 * shared-memory kernel, 139 before the up projection was computed beside the gate (co-products),
 * 135 (46) before the recomputed chains, 134 (45) before attention's scores and dO·Vᵀ were
 * computed inside their row-wise kernels, 126 (43) before small kernels lifted their divisors,
 * 125 (40) before Adam's moments updated in place counted one binding each and sibling
 * reductions shared a kernel (120 (41) now, the goal of ≤ 120 under 32 bindings);
 * DP-LoRA/PiSSA 289, 274, 167 (36), 157, 153 (38), 152 (37), 144 (35) and 144 (33) before
 * prerequisites a group pulls up were grouped too, and 121 (31) before the moments and sibling
 * reductions (117 (34) now); full fine-tuning 170, 155, 122 (31), 112, 108 (33), 107 (32), 99
 * (30) and 96 (31) now. With 64 storage buffers a dispatch HD-PiSSA lowers to 108 kernels, with
 * no bound to 105; DP-LoRA to 105 (126 before prerequisites were grouped, 109 before the moments
 * and sibling reductions).
 */
const GPU_BUDGET: Record<string, [number, number]> = {
  hdpissa: [120, 41],
  pissa: [117, 34],
  lora: [117, 34],
  full: [96, 31],
};

const cfg = DEFAULT_RUN;
const model = await loadModel(cfg.model);
const template = cfg.template ?? model.template;
const { train } = taskSplits(cfg.task, { train: 64, test: 4 }, cfg.seed);
const encoded = train.map((ex) => encodeExample(model.tokenizer, ex, template));
const K = cfg.devices;
const indices = Array.from({ length: K * cfg.batch }, (_, i) => i);
const shards = Array.from(
  { length: K },
  (_, k) => collate(shard(indices, k, K).map((i) => encoded[i]), cfg.maxLen, model.tokenizer.pad),
);
const adapt = adaptedWeights(model.params, cfg.adapt);

function trainerFor(method: Method, codegen?: Partial<CodegenOptions>) {
  return createTrainer({
    loss: (p: Record<string, Tensor>, b: { ids: Tensor; targets: Tensor; mask: Tensor }) =>
      lmLoss(model.config, p, b),
    params: model.params,
    adapt,
    method,
    devices: K,
    rank: cfg.rank,
    optimizer: { lr: 1e-3 },
    mode: "virtual",
    svd: { method: "randomized", seed: 0 },
    seed: 0,
    codegen,
  });
}

for (const method of Object.keys(BUDGET) as Method[]) {
  Deno.test(`the default ${method} step: at most ${BUDGET[method]} kernels, ${PIPELINES[method]} pipelines`, async () => {
    const trainer = await trainerFor(method);
    try {
      const { kernels, pipelines } = await trainer.plan!(shards);
      assert.ok(kernels <= BUDGET[method], `${method}: ${kernels} kernels > ${BUDGET[method]}`);
      const most = PIPELINES[method];
      assert.ok(pipelines <= most, `${method}: ${pipelines} pipelines > ${most}`);
    } finally {
      await trainer.close();
    }
  });
}

for (const method of Object.keys(GPU_BUDGET) as Method[]) {
  const [budget, most] = GPU_BUDGET[method];
  Deno.test(`the default ${method} step lowered for a GPU: at most ${budget} kernels, ${most} pipelines`, async () => {
    const trainer = await trainerFor(method, gpuCodegen((await gpu()).info.limits));
    try {
      const { kernels, pipelines } = await trainer.plan!(shards);
      assert.ok(kernels <= budget, `${method}: ${kernels} kernels > ${budget}`);
      assert.ok(pipelines <= most, `${method}: ${pipelines} pipelines > ${most}`);
    } finally {
      await trainer.close();
    }
  });
}

Deno.test("profiles count each product of the default HD-PiSSA step once, on either adapter's kernels", async () => {
  // Split, grouped, summed and inlined products: the kernels' multiply-adds (KernelTiming) add up
  // to the step graph's, so a profile's GFLOP/s are the products' own.
  for (const codegen of [undefined, gpuCodegen((await gpu()).info.limits)]) {
    const trainer = await trainerFor("hdpissa", codegen);
    try {
      const { matmulFlops } = await trainer.plan!(shards);
      const timings = await trainer.profile!(shards);
      const madds = timings.reduce((n, t) => n + (t.multiplyAdds ?? 0), 0);
      assert.equal(2 * madds, matmulFlops, codegen ? "GPU settings" : "CPU settings");
      assert.ok(timings.every((t) => !t.name.startsWith("matmul") || t.multiplyAdds! > 0));
    } finally {
      await trainer.close();
    }
  }
});

Deno.test("the default HD-PiSSA step as a GPU would run it (shared-memory tiles, operands in place, grouped) trains as this adapter's", async () => {
  // The GPU's kernels, run here: the same losses and weights up to rounding (other kernels sum
  // in other orders). Adam's normalised step turns rounding in a near-zero gradient into a
  // visible fraction of lr (1e-3): 4.7e-5 at most after two steps, measured 2026-12-07.
  const runs: { losses: number[]; params: Record<string, HostArray> }[] = [];
  for (const codegen of [undefined, gpuCodegen((await gpu()).info.limits)]) {
    const trainer = await trainerFor("hdpissa", codegen);
    try {
      const losses = [];
      for (let s = 0; s < 2; s++) losses.push(...(await trainer.step(shards)).loss);
      runs.push({ losses, params: await trainer.params() });
    } finally {
      await trainer.close();
    }
  }
  runs[0].losses.forEach((l, i) => assert.ok(Math.abs(l - runs[1].losses[i]) < 1e-4, `loss ${i}`));
  for (const name of adapt) {
    const [a, b] = [runs[0].params[name].data, runs[1].params[name].data];
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(+a[i] - +b[i]));
    assert.ok(worst < 2e-4, `${name}: ${worst}`);
  }
});

for (const method of ["hdpissa", "lora"] as const) {
  Deno.test(`the default ${method} step with grouped dispatches: the same losses and weights, bit for bit`, async () => {
    // Lowered as for a GPU, where the schedule groups (DP-LoRA's pulled-up products among them).
    const runs = [], kernels = [];
    for (const groupKernels of [true, false]) {
      const trainer = await trainerFor(method, {
        ...gpuCodegen((await gpu()).info.limits),
        groupKernels,
      });
      try {
        kernels.push((await trainer.plan!(shards)).kernels);
        const losses = [];
        for (let s = 0; s < 2; s++) losses.push((await trainer.step(shards)).loss);
        runs.push({ losses, params: await trainer.params() });
      } finally {
        await trainer.close();
      }
    }
    assert.ok(kernels[0] < kernels[1] - 50, `grouped ${kernels[0]}, ungrouped ${kernels[1]}`);
    assert.deepEqual(runs[0].losses, runs[1].losses);
    for (const name of adapt) {
      assert.deepEqual(runs[0].params[name].data, runs[1].params[name].data, name);
    }
  });
}
