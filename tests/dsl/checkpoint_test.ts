/**
 * Activation checkpointing: gradients are unchanged (bit for bit on the CPU reference, which runs
 * the same ops in the same order; to f32 rounding on the device), the recomputation survives the
 * compiler's passes, and the compiled program's peak memory drops.
 */

import assert from "node:assert/strict";
import * as dsl from "../../mod.ts";
import { checkpoint, grad, interpret, jit, type Tensor } from "../../mod.ts";
import type { HostArray } from "../../mod.ts";
import { assertClose } from "../helpers/arrays.ts";
import { randomArray } from "../helpers/models.ts";
import { TINY_GPT2, TINY_LLAMA, TINY_QWEN2 } from "../helpers/tiny_models.ts";
import { initParams, type LmBatch, lmLoss } from "../../dsl/nn/transformer.ts";

type P = { w1: Tensor[]; w2: Tensor[] };

/** A residual stack whose blocks each make one wide intermediate (tokens × hidden). */
function loss(p: P, x: Tensor, remat: boolean): Tensor {
  let h = x;
  p.w1.forEach((w1, i) => {
    const block = (z: Tensor) => dsl.add(z, dsl.matmul(dsl.tanh(dsl.matmul(z, w1)), p.w2[i]));
    h = remat ? checkpoint(block)(h) : block(h);
  });
  return dsl.sum(dsl.square(h));
}

const blocks = 4, tokens = 64, width = 16, hidden = 256;
const params = {
  w1: Array.from({ length: blocks }, (_, i) => scaled(randomArray([width, hidden], 10 + i), 0.3)),
  w2: Array.from({ length: blocks }, (_, i) => scaled(randomArray([hidden, width], 20 + i), 0.1)),
};
const x = randomArray([tokens, width], 1);

function scaled(a: HostArray, s: number): HostArray {
  return { ...a, data: Float32Array.from(a.data as Float32Array, (v) => v * s) };
}

const gradOf = (remat: boolean) => grad((p: P, xs: Tensor) => loss(p, xs, remat));

Deno.test("checkpoint: gradients equal those without it, bit for bit on the CPU reference", () => {
  const plain = interpret(gradOf(false), params, x) as { w1: HostArray[]; w2: HostArray[] };
  const remat = interpret(gradOf(true), params, x) as { w1: HostArray[]; w2: HostArray[] };
  for (let i = 0; i < blocks; i++) {
    assert.deepEqual(remat.w1[i].data, plain.w1[i].data);
    assert.deepEqual(remat.w2[i].data, plain.w2[i].data);
  }
  // Outside a trace (and in the forward value) it is the function itself.
  const f = (z: Tensor) => dsl.sum(dsl.square(z));
  assert.deepEqual(
    (interpret((z: Tensor) => checkpoint(f)(z), x) as HostArray).data,
    (interpret(f, x) as HostArray).data,
  );
});

Deno.test("checkpoint: the compiled gradient recomputes the blocks and needs less memory", async () => {
  const [plainProgram, rematProgram] = await Promise.all(
    [false, true].map((r) => jit(gradOf(r)).lower(params, x)),
  );
  // Each block's tanh(z·W1) is formed again in the backward pass: more matmuls, lower peak.
  const matmuls = (p: typeof plainProgram) => p.kernels.filter((k) => k.kind === "matmul").length;
  assert.ok(matmuls(rematProgram) > matmuls(plainProgram));
  assert.ok(
    rematProgram.peakBytes < plainProgram.peakBytes,
    `peak ${rematProgram.peakBytes} B with checkpoints vs ${plainProgram.peakBytes} B without`,
  );
  const [plain, remat] = await Promise.all([
    jit(gradOf(false))(params, x),
    jit(gradOf(true))(params, x),
  ]);
  for (let i = 0; i < blocks; i++) {
    assertClose(remat.w1[i], plain.w1[i], { rtol: 1e-5, atol: 1e-6 });
    assertClose(remat.w2[i], plain.w2[i], { rtol: 1e-5, atol: 1e-6 });
  }
});

Deno.test("checkpointBlocks: Llama, Qwen2 and GPT-2 gradients unchanged, lower peak on the device", async () => {
  for (const cfg of [TINY_LLAMA, TINY_QWEN2, TINY_GPT2]) {
    const p = initParams({ ...cfg, layers: 3 }, 2);
    const c = { ...cfg, layers: 3 };
    const ids: HostArray = {
      shape: [2, 10],
      dtype: "i32",
      data: Int32Array.from({ length: 20 }, (_, i) => (i * 7) % cfg.vocab),
    };
    const batch = {
      ids,
      targets: ids,
      mask: { ...x, shape: [2, 10], data: new Float32Array(20).fill(1) },
    };
    const g = (checkpointBlocks: boolean) =>
      grad((q: Record<string, Tensor>, b: LmBatch<Tensor>) =>
        lmLoss(c, q, b, { checkpointBlocks })
      );
    const plain = interpret(g(false), p, batch) as Record<string, HostArray>;
    const remat = interpret(g(true), p, batch) as Record<string, HostArray>;
    for (const name of Object.keys(plain)) {
      assert.deepEqual(remat[name].data, plain[name].data, `${cfg.family} ${name}`);
    }
    const [a, b] = await Promise.all([jit(g(false)).lower(p, batch), jit(g(true)).lower(p, batch)]);
    assert.ok(b.peakBytes < a.peakBytes, `${cfg.family}: ${b.peakBytes} vs ${a.peakBytes} bytes`);
  }
});
