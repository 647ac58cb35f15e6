/**
 * Kernel counts, tinygrad-style: fusion decisions are pinned by how many kernels a program
 * lowers to, not only by its values (values are checked against the CPU reference in
 * tests/runtime/).
 */

import assert from "node:assert/strict";
import * as dsl from "../../mod.ts";
import { lower, type Program, trace } from "../../mod.ts";
import type { Tensor } from "../../mod.ts";
import { adamUpdate, mlpState, mlpTrainStep, randomArray } from "../helpers/models.ts";

const spec = (...shape: number[]) => ({ shape });
function kernels(f: (...a: never[]) => unknown, ...specs: unknown[]): Program {
  return lower(trace(f, ...specs), { maxStorageBuffers: 16 });
}

Deno.test("a + b + c is one kernel", () => {
  const p = kernels(
    (a: Tensor, b: Tensor, c: Tensor) => dsl.add(dsl.add(a, b), c),
    spec(4, 5),
    spec(4, 5),
    spec(5),
  );
  assert.equal(p.kernels.length, 1);
  assert.deepEqual(p.kernels[0].ops, ["add", "reshape", "broadcast", "add"]);
});

Deno.test("gelu(x·W + b) is one kernel: the matmul absorbs bias and activation", () => {
  const p = kernels(
    (x: Tensor, w: Tensor, b: Tensor) => dsl.gelu(dsl.add(dsl.matmul(x, w), b)),
    spec(8, 16),
    spec(16, 4),
    spec(4),
  );
  assert.equal(p.kernels.length, 1);
  assert.equal(p.kernels[0].kind, "matmul");
  assert.ok(p.kernels[0].ops.includes("tanh"));
});

Deno.test("softmax, logSoftmax and layerNorm are one row-wise kernel each", () => {
  for (
    const f of [
      (x: Tensor) => dsl.softmax(x),
      (x: Tensor) => dsl.logSoftmax(x),
      (x: Tensor) => dsl.layerNorm(x),
      (x: Tensor) => dsl.rmsNorm(x),
    ]
  ) {
    const p = kernels(f, spec(32, 64));
    assert.equal(p.kernels.length, 1, String(p));
    assert.equal(p.kernels[0].kind, "rowwise");
  }
  // softmax over the leading axis: the same rule with another row axis.
  assert.equal(kernels((x: Tensor) => dsl.softmax(x, 0), spec(32, 64)).kernels.length, 1);
});

Deno.test("logsumexp to a vector is one reduction kernel with its max phase inside", () => {
  const p = kernels((x: Tensor) => dsl.logsumexp(x, -1), spec(16, 50));
  assert.equal(p.kernels.length, 1);
  assert.equal(p.kernels[0].kind, "reduce");
});

Deno.test("an Adam update over a parameter record is one kernel per parameter", () => {
  const shapes = { w: [64, 32], b: [32], e: [100, 16] };
  const specs = Object.fromEntries(Object.entries(shapes).map(([k, s]) => [k, { shape: s }]));
  const step = (
    p: Record<string, Tensor>,
    g: Record<string, Tensor>,
    m: Record<string, Tensor>,
    v: Record<string, Tensor>,
  ) => adamUpdate(p, g, m, v, 3);
  const p = kernels(step, specs, specs, specs, specs);
  assert.equal(p.kernels.length, 3);
  for (const k of p.kernels) assert.equal(k.output.split(" ").length, 3); // param, m, v
});

Deno.test("a two-layer MLP training step stays within its kernel budget", () => {
  // Budget: forward 4 (two matmuls with fused bias/relu, the logits + one-hot targets, a
  // row-wise log-softmax part), loss 3, backward 9 (4 matmuls, 3 bias reductions, softmax
  // gradient, relu mask) + 3 row-major copies of transposed matmul operands (hᵀ, W2ᵀ, xᵀ: the
  // vectorised kernel needs them), Adam 4 (one per parameter) = 23 + 1 slack for the max phase.
  const state = mlpState(784, 256, 10);
  const labels = { shape: [64], dtype: "i32" as const, data: new Int32Array(64) };
  const g = trace(mlpTrainStep, state, randomArray([64, 784], 1), labels);
  const fused = lower(g, { maxStorageBuffers: 16 });
  const unfused = lower(g, { maxStorageBuffers: 16, fuse: false });
  assert.ok(fused.kernels.length <= 24, String(fused));
  assert.ok(
    unfused.kernels.length >= 3 * fused.kernels.length,
    `${unfused.kernels.length} op-by-op`,
  );
});

Deno.test("no kernel binds more storage buffers than allowed, even with a tiny limit", () => {
  const f = (xs: Tensor[]) => xs.reduce((acc, x) => dsl.add(acc, dsl.tanh(x)));
  const specs = Array.from({ length: 12 }, () => spec(8));
  for (const limit of [4, 5, 8, 16]) {
    const p = lower(trace(f, specs), { maxStorageBuffers: limit });
    for (const k of p.kernels) {
      assert.ok(k.bindings <= limit, `${k.name}: ${k.bindings} > ${limit}`);
    }
    if (limit < 13) assert.ok(p.kernels.length > 1);
  }
});

Deno.test("views fuse as index arithmetic: transpose, slice, concat, pad, broadcast", () => {
  const p = kernels(
    (x: Tensor) =>
      dsl.add(
        dsl.pad(dsl.concat([dsl.slice(x, [0, 0], [4, 2]), dsl.transpose(x).reshape([4, 3])], 1), [[
          1,
          1,
        ]]),
        1,
      ),
    spec(4, 3),
  );
  assert.equal(p.kernels.length, 1);
});

Deno.test("a value needed by two kernels is computed once, into a buffer", () => {
  const p = kernels((x: Tensor) => {
    const e = dsl.exp(x);
    return [dsl.sum(e, 0), dsl.sum(e, 1)];
  }, spec(6, 7));
  assert.equal(p.kernels.length, 3);
  assert.equal(p.kernels.filter((k) => k.ops.includes("exp")).length, 1);
});

Deno.test("op-by-op mode lowers one primitive per kernel", () => {
  const p = lower(trace((x: Tensor) => dsl.sum(dsl.exp(dsl.neg(x))), spec(5)), {
    maxStorageBuffers: 16,
    fuse: false,
  });
  assert.deepEqual(p.kernels.map((k) => k.ops.length), [1, 1, 1]);
});

Deno.test("the Program listing names kernels, fused ops, bindings and dispatch", () => {
  const p = kernels((x: Tensor, w: Tensor) => dsl.tanh(dsl.matmul(x, w)), spec(8, 4), spec(4, 2));
  const text = String(p);
  assert.match(text, /^Program: 1 kernel\(s\)/);
  assert.match(
    text,
    /#0 matmul_matmul_\d+ -> f32\[8,2\] \[matmul, tanh\] bindings=3 dispatch=\(\d+,\d+,1\)/,
  );
  assert.match(p.dump(), /@compute @workgroup_size/);
});

Deno.test("kernels of the same code share one pipeline: pipelineCount counts distinct WGSL", () => {
  // Three layers of identical shapes: three kernels (different buffers), one text to compile.
  const p = kernels(
    (x: Tensor, w1: Tensor, w2: Tensor, w3: Tensor) =>
      [w1, w2, w3].reduce((h, w) => dsl.tanh(dsl.matmul(h, w)), x),
    spec(8, 16),
    spec(16, 16),
    spec(16, 16),
    spec(16, 16),
  );
  assert.equal(p.kernels.length, 3);
  assert.equal(p.pipelineCount, 1);
  assert.match(String(p), /^Program: 3 kernel\(s\) \(1 pipeline\(s\)\)/);
  // A different shape is different code.
  const q = kernels(
    (x: Tensor, w1: Tensor, w2: Tensor) => dsl.tanh(dsl.matmul(dsl.tanh(dsl.matmul(x, w1)), w2)),
    spec(8, 16),
    spec(16, 16),
    spec(16, 12),
  );
  assert.equal(q.pipelineCount, 2);
});
