import assert from "node:assert/strict";
import type { HostArray } from "../../dsl/host_array.ts";
import { evaluateGraph, interpret } from "../../dsl/interpret.ts";
import { grad } from "../../dsl/autodiff.ts";
import { linear } from "../../dsl/nn/layers.ts";
import { lowRankWeight } from "../../dsl/adapters/methods/low_rank.ts";
import { add, matmul, mul, sum, tanh, transpose } from "../../mod.ts";
import { optimize } from "../../compiler/passes/mod.ts";
import { trace } from "../../dsl/trace_function.ts";
import type { Tensor } from "../../dsl/trace.ts";
import { jit } from "../../runtime/jit.ts";
import { assertClose } from "../helpers/arrays.ts";
import { randomArray } from "../helpers/models.ts";

const [m, n, r, tokens] = [48, 40, 2, 6];

/**
 * HD-PiSSA's projected gradients written naively: G = ∂L/∂W formed by autodiff, then Bᵀ·G and
 * G·Aᵀ. The loss uses W twice (two layers share it), so G is a sum of two products.
 */
function projected(w: Tensor, a: Tensor, b: Tensor, x: Tensor) {
  const loss = (wt: Tensor) => sum(tanh(linear(tanh(linear(x, wt)), transpose(wt))));
  const g = grad(loss)(w);
  return { gA: matmul(transpose(b), g), gB: matmul(g, transpose(a)) };
}

const args = [
  randomArray([m, n], 1, 0.3),
  randomArray([r, n], 2),
  randomArray([m, r], 3),
  randomArray([tokens, n], 4),
];
const specs = args.map((a) => ({ shape: a.shape }));

Deno.test("reassociate: projected gradients never form the dense m×n gradient", () => {
  const graph = optimize(trace(projected, ...specs));
  const dense = graph.nodes.filter((x) =>
    x.op !== "input" && x.size >= m * n &&
    (x.shape.join() === `${m},${n}` || x.shape.join() === `${n},${m}`)
  );
  // W itself (and its transpose view, used by the forward) are the only m×n values left.
  assert.ok(
    dense.every((x) => x.op === "transpose"),
    dense.map((x) => `${x.op}[${x.shape}]`).join(", "),
  );
  const before = trace(projected, ...specs);
  assert.ok(before.nodes.some((x) => x.op === "matmul" && x.shape.join() === `${m},${n}`));
});

Deno.test("reassociate: values unchanged (CPU reference and WebGPU)", async () => {
  const want = interpret(projected, ...args) as Record<string, HostArray>;
  const optimized = evaluateGraph(
    optimize(trace(projected, ...specs)),
    args,
  ) as unknown as HostArray[];
  assert.equal(optimized.length, 2);
  // Outputs in the record's key order: the rewritten graph on the CPU reference, then on WebGPU.
  assertClose(optimized[0], want.gA, { rtol: 1e-4, atol: 1e-5 });
  assertClose(optimized[1], want.gB, { rtol: 1e-4, atol: 1e-5 });
  const got = await jit(projected)(...args);
  for (const k of ["gA", "gB"]) assertClose(got[k], want[k], { rtol: 1e-4, atol: 1e-5 });
});

Deno.test("reassociate: a dense product with a wide consumer is left alone", () => {
  const f = (p: Tensor, x: Tensor, y: Tensor) => mul(matmul(p, matmul(x, y)), 2);
  // P [64, 8]·(X [8, 8]·Y [8, 64]): reassociating would cost more.
  const g = optimize(trace(f, { shape: [64, 8] }, { shape: [8, 8] }, { shape: [8, 64] }));
  assert.ok(g.nodes.some((x) => x.op === "matmul" && x.shape.join() === "8,64"));
});

/** LoRA's loss through W + s·B·A (s ≠ 1) and its factor gradients: the whole adapter step. */
function loraGrads(w: Tensor, a: Tensor, b: Tensor, x: Tensor) {
  const loss = (f: { a: Tensor; b: Tensor }) => sum(tanh(linear(x, lowRankWeight(w, f, 0.5))));
  return grad(loss)({ a, b });
}

Deno.test("reassociate: LoRA computes x·Wᵀ + s·(x·Aᵀ)·Bᵀ — no merged weight, no dense gradient", async () => {
  const T = 6;
  const loraArgs = [args[0], args[1], args[2], randomArray([T, n], 5)];
  const loraSpecs = loraArgs.map((a) => ({ shape: a.shape }));
  const before = trace(loraGrads, ...loraSpecs);
  const isDense = (x: { op: string; shape: readonly number[] }) =>
    x.op !== "input" && (x.shape.join() === `${m},${n}` || x.shape.join() === `${n},${m}`);
  assert.ok(
    before.nodes.filter(isDense).length >= 3,
    "the traced step merges and differentiates densely",
  );
  const graph = optimize(before);
  const dense = graph.nodes.filter(isDense);
  // Only W's transposed view for x·Wᵀ remains.
  assert.deepEqual(
    dense.map((x) => x.op),
    ["transpose"],
    dense.map((x) => `${x.op}[${x.shape}]`).join(),
  );
  const want = interpret(loraGrads, ...loraArgs) as Record<string, HostArray>;
  const got = evaluateGraph(graph, loraArgs) as unknown as HostArray[];
  assertClose(got[0], want.a, { rtol: 1e-4, atol: 1e-5 });
  assertClose(got[1], want.b, { rtol: 1e-4, atol: 1e-5 });
  const onDevice = await jit(loraGrads)(...loraArgs);
  for (const k of ["a", "b"]) assertClose(onDevice[k], want[k], { rtol: 1e-4, atol: 1e-5 });
});

Deno.test("reassociate: a merged weight shared by many tokens stays merged when that is cheaper", () => {
  // 4096 tokens through a 16×16 weight: (x·Aᵀ)·Bᵀ would cost more than forming W + s·B·A once.
  const g = optimize(
    trace(loraGrads, { shape: [16, 16] }, { shape: [2, 16] }, { shape: [16, 2] }, {
      shape: [4096, 16],
    }),
  );
  assert.ok(g.nodes.some((x) => x.op === "matmul" && x.shape.join() === "16,16"));
});

Deno.test("reassociate: a candidate whose product reads another candidate keeps its value", async () => {
  // q1 = s·(b·a) and q2 = s·((q1 + q1)·a) are both thin-consumed sums of products: distributing
  // q2's consumer found q2's product already rewritten into a sum (found by the random-DAG fuzzer:
  // the pass threw). Whatever is distributed, the values must stay.
  const f = (a: Tensor, b: Tensor) => {
    const q1 = mul(matmul(b, a), 0.5);
    const q2 = mul(matmul(add(q1, q1), a), 0.5);
    return mul(matmul(q2, a), 0.5);
  };
  const xs = [randomArray([2, 2], 5), randomArray([2, 2], 6)];
  const want = interpret(f, ...xs) as HostArray;
  const graph = optimize(trace(f, ...xs.map((x) => ({ shape: x.shape }))));
  const [optimized] = evaluateGraph(graph, xs) as unknown as HostArray[];
  assertClose(optimized, want, { rtol: 1e-6, atol: 1e-6, label: "optimized" });
  assertClose(await jit(f)(...xs) as HostArray, want, { rtol: 1e-5, atol: 1e-5, label: "jit" });
});
