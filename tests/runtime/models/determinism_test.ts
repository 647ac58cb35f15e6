import assert from "node:assert/strict";
import type { HostArray } from "../../../dsl/host_array.ts";
import { initParams } from "../../../dsl/nn/transformer.ts";
import { adamInit } from "../../../dsl/optim.ts";
import { PretrainStream } from "../../../runtime/data/pretrain_data.ts";
import { toDevice, toHost } from "../../../runtime/jit.ts";
import { adamTrainStep } from "../../../runtime/models/lm_steps.ts";
import { ByteTokenizer } from "../../../runtime/text/tokenizer.ts";
import { TINY_BYTE_LLAMA } from "../../helpers/tiny_models.ts";

/** Three pretraining steps from scratch, as `deno task pretrain` runs them. */
async function pretrainSteps(seed: number): Promise<Record<string, HostArray>> {
  const text = "Fellow citizens of the Senate and of the House of Representatives. ".repeat(40);
  const stream = new PretrainStream(text, new ByteTokenizer(), { batch: 2, length: 64, seed });
  const init = initParams(TINY_BYTE_LLAMA, seed);
  let params = await toDevice(init);
  let state = await toDevice(adamInit(init));
  const step = adamTrainStep(TINY_BYTE_LLAMA, { weightDecay: 0.01, clip: 1, beta2: 0.99 });
  for (let s = 0; s < 3; s++) {
    const lr: HostArray = { shape: [], dtype: "f32", data: Float32Array.of(3e-3) };
    const out = await step.onDevice(params, state, lr, stream.batch(s));
    params = out.params;
    state = out.state;
  }
  return await toHost(params) as Record<string, HostArray>;
}

Deno.test("pretraining is deterministic: the same seed gives bit-identical weights", async () => {
  const a = await pretrainSteps(5);
  const b = await pretrainSteps(5);
  assert.deepEqual(a, b);
  const c = await pretrainSteps(6);
  assert.notDeepEqual(c["model.norm.weight"].data, a["model.norm.weight"].data);
});
