/**
 * Our trainer against PyTorch: three steps of tiny GPT-2, Qwen2 and Llama decoders with HD-PiSSA
 * (zero-padded components included), HD-MiLoRA, PiSSA (α ≠ r), MiLoRA, full fine-tuning, and LoRA
 * and DoRA as PEFT defines them (GPT-2's Conv1D weights with fan_in_fan_out), from
 * the same f32 weights and masked batches. The reference is PyTorch autograd in float64 over the
 * Hugging Face equations (fixtures/make_torch_steps.py, committed as torch_steps.json because CI
 * has no PyTorch): every shard's loss at every step, and the update W − W₀ of every adapted
 * matrix after the last step.
 */

import assert from "node:assert/strict";
import { type HostArray, transposed } from "../../../dsl/host_array.ts";
import type { ModelConfig } from "../../../dsl/nn/config.ts";
import {
  conv1dWeights,
  type ForwardOptions,
  initParams,
  type LmBatch,
  lmLoss,
} from "../../../dsl/nn/transformer.ts";
import type { Tensor } from "../../../dsl/trace.ts";
import { createTrainer, type Method } from "../../../runtime/trainer.ts";
import { METHODS, type ReplicatedMethod } from "../../../dsl/adapters/methods/mod.ts";
import { gpu } from "../../../runtime/device.ts";
import { gpuCodegen } from "../../../runtime/jit.ts";
import { assertNear } from "../../helpers/host_methods.ts";

/** A tensor as little-endian bytes in base64. */
interface Stored {
  shape: number[];
  dtype: "f32" | "i32";
  base64: string;
}
interface Case {
  name: string;
  model: string;
  method: Method;
  devices: number;
  rank: number;
  alpha: number;
  lr: number;
  adapt: string[];
  batches: Record<"ids" | "targets" | "mask", Stored>[][];
  losses: number[][];
  deltas: Record<string, string>;
  /** LoRA's and DoRA's random A₀ [r, in] as PyTorch drew it (PEFT's lora_A). */
  loraA0?: Record<string, Stored>;
}
interface Fixture {
  models: Record<string, { config: ModelConfig; params: Record<string, Stored> }>;
  cases: Case[];
}

const fixture: Fixture = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/torch_steps.json", import.meta.url)),
);

const bytes = (b64: string) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)).buffer;
const floats = (b64: string) => new Float32Array(bytes(b64));
const host = (s: Stored): HostArray => ({
  shape: s.shape,
  dtype: s.dtype,
  data: s.dtype === "i32" ? new Int32Array(bytes(s.base64)) : floats(s.base64),
});
const record = (stored: Record<string, Stored>): Record<string, HostArray> =>
  Object.fromEntries(Object.entries(stored).map(([name, s]) => [name, host(s)]));

Deno.test("torch_steps fixture: the reference models have our parameter names and shapes", () => {
  for (const [name, { config, params: stored }] of Object.entries(fixture.models)) {
    const ours = initParams(config, 0);
    assert.deepEqual(Object.keys(stored).sort(), Object.keys(ours).sort(), name);
    for (const [p, s] of Object.entries(stored)) assert.deepEqual(s.shape, ours[p].shape, p);
  }
  assert.equal(fixture.cases.length, 9);
});

/**
 * The built-in LoRA or DoRA with PyTorch's A₀ in place of its own random factor: A itself, or
 * B = A₀ᵀ for a weight stored [in, out]. The built-in's factor must have A₀'s shape and the other
 * one must be zero, so a random factor on the wrong side fails here.
 */
function withPyTorchInit(name: "lora" | "dora", a0: Record<string, HostArray>): ReplicatedMethod {
  const builtIn = METHODS[name] as ReplicatedMethod;
  return {
    ...builtIn,
    name: `${name} with PyTorch's A₀`,
    async init(w, ctx) {
      const f = await builtIn.init(w, ctx);
      const [random, zero] = ctx.fanInFanOut ? ["b", "a"] : ["a", "b"];
      const given = ctx.fanInFanOut ? transposed(a0[ctx.name]) : a0[ctx.name];
      assert.deepEqual(f.trained[random].shape, given.shape, `${ctx.name}: ${random}'s shape`);
      assert.ok(f.trained[zero].data.every((v) => v === 0), `${ctx.name}: ${zero} starts at 0`);
      return { ...f, trained: { ...f.trained, [random]: given } };
    },
  };
}

/**
 * Each case three ways: this adapter's kernels; a GPU's (shared-memory tiles, grouped dispatches),
 * which run here too; and the loss a vocabulary-sized head takes (`targetRows`, over blocks of 6
 * of the 20 columns, the last one short).
 */
const VARIANTS: { label: string; gpu?: boolean; loss?: ForwardOptions }[] = [
  { label: "this adapter's kernels" },
  { label: "a GPU's kernels", gpu: true },
  {
    label: "the head's loss in vocabulary blocks",
    loss: { targetRows: true, lossChunkLogits: 96 },
  },
];

for (const c of fixture.cases) {
  for (const variant of VARIANTS) {
    Deno.test(`${c.name}, ${variant.label}: 3 steps match PyTorch (f64 autograd)`, async () => {
      const { config, params: stored } = fixture.models[c.model];
      const w0 = record(stored);
      const method = c.loraA0
        ? withPyTorchInit(c.method as "lora" | "dora", record(c.loraA0))
        : c.method;
      const trainer = await createTrainer({
        loss: (p: Record<string, Tensor>, b: LmBatch<Tensor>) => lmLoss(config, p, b, variant.loss),
        params: w0,
        adapt: c.adapt,
        fanInFanOut: conv1dWeights(config),
        method,
        devices: c.devices,
        rank: c.rank,
        alpha: c.alpha,
        optimizer: { lr: c.lr },
        svd: { method: "exact" },
        codegen: variant.gpu ? gpuCodegen((await gpu()).info.limits) : undefined,
      });
      try {
        for (const [t, shards] of c.batches.entries()) {
          const { loss } = await trainer.step(shards.map(record));
          loss.forEach((l, k) => {
            const want = c.losses[t][k];
            assert.ok(
              Math.abs(l - want) <= 1e-5 * Math.abs(want),
              `step ${t + 1} shard ${k}: loss ${l} vs PyTorch ${want}`,
            );
          });
        }
        const w = await trainer.params();
        for (const name of c.adapt) {
          const before = w0[name].data;
          const delta = { ...w[name], data: w[name].data.map((v, i) => v - before[i]) };
          const want = Float64Array.from(floats(c.deltas[name]));
          assert.ok(want.some((v) => v !== 0), `${name}: the reference moved`);
          assertNear(delta, want, 1e-4, `${c.name} ${name} W − W₀`);
        }
      } finally {
        await trainer.close();
      }
    });
  }
}
