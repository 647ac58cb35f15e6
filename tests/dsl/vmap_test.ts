import assert from "node:assert/strict";
import type { HostArray } from "../../dsl/host_array.ts";
import { interpret } from "../../dsl/interpret.ts";
import { grad } from "../../dsl/autodiff.ts";
import { vmap } from "../../dsl/vmap.ts";
import { initParams, lmLoss } from "../../dsl/nn/transformer.ts";
import * as d from "../../mod.ts";
import type { Tensor } from "../../dsl/trace.ts";
import { jit } from "../../runtime/jit.ts";
import { assertClose } from "../helpers/arrays.ts";
import { randomArray } from "../helpers/models.ts";
import { TINY_LLAMA } from "../helpers/tiny_models.ts";

/** Slice i of a HostArray along axis 0. */
function row(a: HostArray, i: number): HostArray {
  const size = a.data.length / a.shape[0];
  return {
    shape: a.shape.slice(1),
    dtype: a.dtype,
    data: a.data.slice(i * size, (i + 1) * size),
  } as HostArray;
}

/** f applied per example with a plain loop, stacked: the definition vmap must meet. */
function looped(
  f: (...a: never[]) => unknown,
  args: unknown[],
  batched: boolean[],
  k: number,
): HostArray[] {
  const outs: HostArray[][] = [];
  for (let i = 0; i < k; i++) {
    const slice = (x: unknown): unknown =>
      x && typeof x === "object" && "data" in (x as object)
        ? row(x as HostArray, i)
        : Object.fromEntries(Object.entries(x as object).map(([key, v]) => [key, slice(v)]));
    const r = interpret(f, ...args.map((a, j) => (batched[j] ? slice(a) : a)));
    const [leaves] = d.flattenTree(r, (x): x is HostArray => d.isHostArray(x), "test");
    outs.push(leaves as HostArray[]);
  }
  return outs[0].map((_, j) => {
    const parts = outs.map((o) => o[j]);
    const data = parts[0].dtype === "f32"
      ? new Float32Array(k * parts[0].data.length)
      : new Int32Array(k * parts[0].data.length);
    parts.forEach((p, i) => data.set(p.data, i * p.data.length));
    return { shape: [k, ...parts[0].shape], dtype: parts[0].dtype, data } as HostArray;
  });
}

const ids = (shape: number[], seed: number, vocab: number): HostArray => ({
  shape,
  dtype: "i32",
  data: Int32Array.from(
    randomArray(shape, seed).data,
    (v) => Math.floor((v + 1) / 2 * vocab) % vocab,
  ),
});

const CASES: {
  name: string;
  f: (...a: never[]) => unknown;
  args: unknown[];
  batched: boolean[];
}[] = [
  {
    name: "elementwise with a shared operand, reductions, softmax",
    f: ((
      x: Tensor,
      w: Tensor,
    ) => [d.sum(d.mul(x, w), 1), d.softmax(d.add(x, w)), d.max(x), d.argmax(x, 0)]) as never,
    args: [randomArray([3, 4, 5], 1), randomArray([4, 5], 2)],
    batched: [true, false],
  },
  {
    name: "matmul: batched rows × shared weight, shared × batched, batched × batched",
    f: ((
      x: Tensor,
      w: Tensor,
      y: Tensor,
    ) => [
      d.matmul(x, d.transpose(w)),
      d.matmul(w, d.transpose(y)),
      d.matmul(x, d.transpose(y)),
    ]) as never,
    args: [randomArray([3, 4, 5], 3), randomArray([6, 5], 4), randomArray([3, 2, 5], 5)],
    batched: [true, false, true],
  },
  {
    name: "views: reshape, transpose, slice, pad, concat with a shared part, broadcast",
    f: ((x: Tensor, c: Tensor) => [
      d.reshape(d.transpose(x, [1, 0]), [20]),
      d.slice(x, [1, 1], [3, 4]),
      d.pad(x, [[1, 0], [0, 2]], 7),
      d.concat([x, c], 0),
      d.broadcastTo(d.reshape(x, [1, 4, 5]), [2, 4, 5]),
    ]) as never,
    args: [randomArray([3, 4, 5], 6), randomArray([2, 5], 7)],
    batched: [true, false],
  },
  {
    name:
      "gather: batched ids into a shared table (both axes), batched table, both batched; scatterAdd",
    f: ((t: Tensor, i: Tensor, tb: Tensor) => [
      d.take(t, i, 0),
      d.take(t, i, 1),
      d.take(tb, d.array([2, 0], { dtype: "i32" }), 0),
      d.take(tb, i, 0),
      d.scatterAdd(tb, i, d.ones([2, 3, 4]), 0),
    ]) as never,
    args: [randomArray([5, 4], 8), ids([3, 2, 3], 9, 4), randomArray([3, 5, 4], 10)],
    batched: [false, true, true],
  },
  {
    name: "per-example gradients (grad inside vmap)",
    f: ((w: Tensor, x: Tensor) => grad((v: Tensor) => d.sum(d.tanh(d.matmul(x, v))))(w)) as never,
    args: [randomArray([4, 3], 11), randomArray([5, 2, 4], 12)],
    batched: [false, true],
  },
];

for (const c of CASES) {
  Deno.test(`vmap: ${c.name} — equals the per-example loop`, () => {
    const k = (c.args.find((_, i) => c.batched[i]) as HostArray).shape[0];
    const got = interpret(vmap(c.f, { inAxes: c.batched.map((b) => (b ? 0 : null)) }), ...c.args);
    const [leaves] = d.flattenTree(got, (x): x is HostArray => d.isHostArray(x), "test");
    const want = looped(c.f, c.args, c.batched, k);
    assert.equal(leaves.length, want.length);
    leaves.forEach((g, i) =>
      assertClose(g as HostArray, want[i], {
        rtol: 1e-5,
        atol: 1e-6,
        label: `${c.name} output ${i}`,
      })
    );
  });
}

Deno.test("vmap: a transformer loss per shard, one batched pass (CPU and WebGPU)", async () => {
  const cfg = TINY_LLAMA;
  const params = initParams(cfg, 2);
  const batch = {
    ids: ids([3, 2, 6], 20, 16),
    targets: ids([3, 2, 6], 21, 16),
    mask: randomArray([3, 2, 6], 22),
  };
  const f = (p: Record<string, Tensor>, b: { ids: Tensor; targets: Tensor; mask: Tensor }) =>
    lmLoss(cfg, p, b);
  const batched = vmap(f, { inAxes: [null, 0] });
  const want = looped(f as never, [params, batch], [false, true], 3)[0];
  assertClose(interpret(batched, params, batch) as HostArray, want, { rtol: 1e-5 });
  assertClose(await jit(batched)(params, batch), want, { rtol: 1e-4 });
  // The weight products are single 2-D matmuls over all shards' rows.
  const graph = d.trace(batched, params, batch);
  const q = graph.nodes.filter((n) => n.op === "matmul" && n.inputs[1].shape.join() === "16,16");
  assert.ok(
    q.length > 0 && q.every((n) => n.shape.length === 2 && n.shape[0] === 3 * 2 * 6),
    q.map((n) => `[${n.shape}]`).join(),
  );
});

Deno.test("vmap: argument errors", () => {
  assert.throws(
    () => interpret(vmap((x: Tensor) => x, { inAxes: [null] }), randomArray([2], 1)),
    /no batched argument/,
  );
  assert.throws(
    () =>
      interpret(
        vmap((x: Tensor, y: Tensor) => d.add(x, y)),
        randomArray([2, 3], 1),
        randomArray([3, 3], 2),
      ),
    /disagree on the batch size/,
  );
});
