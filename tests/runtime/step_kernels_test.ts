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
import { adaptedWeights, DEFAULT_RUN } from "../../runtime/train/config.ts";

/**
 * Upper bounds, measured on lavapipe (2026-12-07): HD-PiSSA 281, DP-PiSSA and DP-LoRA 274, full
 * fine-tuning 155 (375, 359, 359 and 237 before residual adds became matmul epilogues through
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
const BUDGET: Record<string, number> = { hdpissa: 281, pissa: 274, lora: 274, full: 155 };

/**
 * Distinct pipelines (what a cold first step compiles), same date and device: HD-PiSSA 41,
 * DP-PiSSA and DP-LoRA 31, full fine-tuning 27 (76, 74, 74, 59 before kernels that differ only in
 * sizes shared one, and before transposed views of stored views were read in place; 61, 58, 58,
 * 47 before heads were read and stored in place; 59, 56, 56 before Aᵀ·Bᵀ became (B·A)ᵀ; 57, 55,
 * 55, 45 before a reshape of a buffer was read at the view's flat index; 56, 54, 54, 44 before masks
 * were recomputed where read; 54, 52, 52, 42 before small products got the compact tile, which
 * made two of their texts one; 53, 51, 51, 42 before products that differ only in their epilogue
 * shared one text; 46, 43, 43, 35 before the log-sum-exp and broadcast changes above).
 */
const PIPELINES: Record<string, number> = { hdpissa: 41, pissa: 31, lora: 31, full: 27 };

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

for (const method of Object.keys(BUDGET) as Method[]) {
  Deno.test(`the default ${method} step: at most ${BUDGET[method]} kernels, ${PIPELINES[method]} pipelines`, async () => {
    const trainer = await createTrainer({
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
    });
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
