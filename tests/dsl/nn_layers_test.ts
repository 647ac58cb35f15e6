import assert from "node:assert/strict";
import { array, type HostArray } from "../../dsl/host_array.ts";
import { interpret } from "../../dsl/interpret.ts";
import {
  applyRotary,
  causalAttention,
  causalMask,
  conv1d,
  embedding,
  linear,
  mergeHeads,
  splitHeads,
  swiglu,
} from "../../dsl/nn/layers.ts";
import type { Tensor } from "../../dsl/trace.ts";
import { jit } from "../../runtime/jit.ts";
import { assertClose } from "../helpers/arrays.ts";

Deno.test("nn.linear: x·Wᵀ + b with W stored [out, in]; conv1d is x·W + b", () => {
  const x = array([[1, 2, 3]]);
  const w = array([[1, 0, -1], [2, 1, 0]]); // 2 outputs × 3 inputs
  assertClose(
    interpret((a: Tensor, b: Tensor) => linear(a, b, array([10, 20])), x, w) as HostArray,
    [[8, 24]],
  );
  assertClose(interpret((a: Tensor, b: Tensor) => conv1d(a, b), array([[1, 2]]), w) as HostArray, [[
    5,
    2,
    -1,
  ]]);
  assert.throws(
    () => interpret((a: Tensor, b: Tensor) => linear(a, b), x, array([[1, 2]])),
    /linear: weight must be \[out, in\] with in = x's last dim \(x: \[1,3\], weight: \[1,2\]\)/,
  );
});

Deno.test("nn.embedding: rows of the table for ids of any shape", () => {
  const table = array([[0, 1], [10, 11], [20, 21]]);
  const ids = array([[2, 0], [1, 1]], { dtype: "i32" });
  const out = interpret((t: Tensor, i: Tensor) => embedding(t, i), table, ids) as HostArray;
  assert.deepEqual(out.shape, [2, 2, 2]);
  assertClose(out, [[[20, 21], [0, 1]], [[10, 11], [10, 11]]]);
});

Deno.test("nn.causalMask and causal attention: hand-computed two-position case", () => {
  assert.deepEqual(Array.from((interpret(() => causalMask(3)) as HostArray).data), [
    1,
    0,
    0,
    1,
    1,
    0,
    1,
    1,
    1,
  ]);
  // One head, D = 1: q = k = (1, 2), v = (10, 20). Position 0 sees only itself; position 1
  // weighs v by softmax(q₁·k / √1) = softmax(2, 4).
  const q = array([[[[1], [2]]]]);
  const v = array([[[[10], [20]]]]);
  const out = interpret((a: Tensor, b: Tensor) => causalAttention(a, a, b), q, v) as HostArray;
  const p = Math.exp(2) / (Math.exp(2) + Math.exp(4));
  assertClose(out, [[[[10], [10 * p + 20 * (1 - p)]]]], { rtol: 1e-6 });
});

Deno.test("nn.splitHeads/mergeHeads are inverse; rotary is the identity at position 0 and a rotation after", () => {
  const x = array(Array.from({ length: 24 }, (_, i) => i), { shape: [1, 3, 8] });
  const back = interpret((t: Tensor) => mergeHeads(splitHeads(t, 2)), x) as HostArray;
  assert.deepEqual(back, x);
  // D = 2: the pair (x₀, x₁) at position p rotates by angle p (θ^0 = 1).
  const pairs = array([[[[1, 0], [1, 0], [0, 2]]]]);
  const r = interpret((t: Tensor) => applyRotary(t), pairs) as HostArray;
  assertClose(r, [[[[1, 0], [Math.cos(1), Math.sin(1)], [-2 * Math.sin(2), 2 * Math.cos(2)]]]], {
    rtol: 1e-6,
    atol: 1e-7,
  });
});

Deno.test("nn.swiglu: down(silu(gate·x) ⊙ up·x), hand-computed; same on WebGPU", async () => {
  const x = array([[1, -1]]);
  const gate = array([[1, 0], [0, 1]]);
  const up = array([[2, 0], [0, 3]]);
  const down = array([[1, 1]]);
  const silu = (v: number) => v / (1 + Math.exp(-v));
  const want = [[silu(1) * 2 + silu(-1) * -3]];
  const f = (...a: Tensor[]) => swiglu(a[0], a[1], a[2], a[3]);
  assertClose(interpret(f, x, gate, up, down) as HostArray, want, { rtol: 1e-6 });
  assertClose(await jit(f)(x, gate, up, down), want, { rtol: 1e-5 });
});
