/**
 * The f16 dtype in the DSL and its CPU reference: host arrays hold halves (Float16Array), dtypes
 * promote along bool < i32 < f16 < f32 with weakly typed numbers, every op rounds its result to
 * half, and ops with internal statistics (softmax, norms, means, cross-entropy) compute in f32 and
 * round once.
 */

import assert from "node:assert/strict";
import * as dsl from "../../mod.ts";
import { array, type DType, type HostArray, interpret, type Tensor } from "../../mod.ts";
import { checkProperty, fc } from "../helpers/property.ts";

const f16 = (values: number[], shape = [values.length]): HostArray =>
  array(values, { shape, dtype: "f16" });
const f32 = (values: number[], shape = [values.length]): HostArray => array(values, { shape });

function run(f: (...t: Tensor[]) => Tensor, ...args: HostArray[]): HostArray {
  return interpret(f, ...args) as HostArray;
}

Deno.test("array(…, { dtype: 'f16' }) rounds to half, ties to even, overflow to ±inf", () => {
  const x = f16([0.1, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 65519, 65520, -1e9, 2 ** -25, 3 * 2 ** -26]);
  assert.ok(x.data instanceof Float16Array);
  assert.deepEqual(Array.from(x.data), [
    0.0999755859375,
    1,
    1 + 2 ** -9,
    65504,
    Infinity,
    -Infinity,
    0,
    2 ** -24,
  ]);
  const fromTyped = array(new Float16Array([1.5, 2]));
  assert.equal(fromTyped.dtype, "f16");
  assert.throws(
    () => interpret((t: Tensor) => t, { shape: [1], dtype: "f16", data: new Int32Array(1) }),
    /dtype f16 does not match Int32Array data/,
  );
});

Deno.test("dtype promotion: the join of bool < i32 < f16 < f32, in either operand order", () => {
  const dtypes: DType[] = ["bool", "i32", "f16", "f32"];
  const sample: Record<DType, HostArray> = {
    bool: array([true, false]),
    i32: array([1, 2], { dtype: "i32" }),
    f16: f16([1, 2]),
    f32: f32([1, 2]),
  };
  const joined = (a: DType, b: DType) => run((x, y) => dsl.add(x, y), sample[a], sample[b]).dtype;
  const rank = (d: DType) => dtypes.indexOf(d);
  checkProperty(
    fc.property(fc.constantFrom(...dtypes), fc.constantFrom(...dtypes), (a, b) => {
      // add turns bool into i32: the join of the two, at least i32.
      const want = dtypes[Math.max(rank(a), rank(b), 1)];
      assert.equal(joined(a, b), want, `${a} + ${b}`);
      assert.equal(joined(b, a), want, `${b} + ${a}`);
    }),
  );
  // Weakly typed numbers adapt: f16 + 0.5 stays f16, i32 + 0.5 becomes f32.
  assert.equal(run((x) => dsl.add(x, 0.5), sample.f16).dtype, "f16");
  assert.equal(run((x) => dsl.add(x, 0.5), sample.i32).dtype, "f32");
  assert.equal(run((x) => dsl.div(x, 3), sample.i32).dtype, "f32");
  assert.equal(run((x) => dsl.sqrt(x), sample.f16).dtype, "f16");
});

Deno.test("every f16 op rounds its result: (x/11)·11 and 2048 + 1 differ from f32 arithmetic", () => {
  const x = f16([1, 2, 3, 5.75, 7]);
  const elevenths = run((t) => dsl.mul(dsl.div(t, 11), 11), x);
  const expected = Array.from(x.data, (v) => Math.f16round(Math.f16round(v / 11) * 11));
  assert.deepEqual(Array.from(elevenths.data), expected);
  assert.notDeepEqual(expected, Array.from(x.data)); // the law above has teeth
  // 2049 is not a half: 2048 + 1 stays 2048.
  assert.deepEqual(Array.from(run((t) => dsl.add(t, 1), f16([2048])).data), [2048]);
});

Deno.test("softmax, norms, means, cross-entropy, gelu and silu of f16 compute in f32 and round once", () => {
  const values = [0.3, -1.7, 2.2, 0.9, 4.1, -0.2, 1.3, 0.05];
  const x = f16(values, [2, 4]);
  const wide = f32(Array.from(x.data), [2, 4]);
  const labels = array([2, 0], { dtype: "i32" });
  const ops: [string, (t: Tensor) => Tensor][] = [
    ["softmax", (t) => dsl.softmax(t, -1)],
    ["logSoftmax", (t) => dsl.logSoftmax(t, -1)],
    ["layerNorm", (t) => dsl.layerNorm(t)],
    ["rmsNorm", (t) => dsl.rmsNorm(t)],
    ["mean", (t) => dsl.mean(t, -1)],
    ["logsumexp", (t) => dsl.logsumexp(t, -1)],
    ["crossEntropy", (t) => dsl.crossEntropy(t, labels)],
    ["gelu", (t) => dsl.gelu(t)],
    ["gelu (erf)", (t) => dsl.gelu(t, { approximate: false })],
    ["silu", (t) => dsl.silu(t)],
  ];
  for (const [name, op] of ops) {
    const got = run(op, x);
    assert.equal(got.dtype, "f16", name);
    const once = Array.from(run(op, wide).data, (v) => Math.f16round(v));
    assert.deepEqual(Array.from(got.data), once, name);
  }
});

Deno.test("grad of an f16 function: f16 gradients, equal to the f32 gradient within half precision", () => {
  const w = f16([0.5, -1.25, 2, 0.75], [2, 2]), x = f16([1, 2, -3, 0.5], [2, 2]);
  const loss = (w: Tensor, x: Tensor) => dsl.sum(dsl.square(dsl.tanh(dsl.matmul(x, w))));
  const [gw, gx] = interpret(dsl.grad(loss, { argnums: [0, 1] }), w, x) as HostArray[];
  assert.equal(gw.dtype, "f16");
  assert.equal(gx.dtype, "f16");
  const widen = (h: HostArray) => f32(Array.from(h.data), h.shape);
  const [ww, wx] = interpret(
    dsl.grad(loss, { argnums: [0, 1] }),
    widen(w),
    widen(x),
  ) as HostArray[];
  [[gw, ww], [gx, wx]].forEach(([h, s]) =>
    h.data.forEach((v, i) =>
      assert.ok(Math.abs(v - s.data[i]) <= 1e-2 * Math.max(1, Math.abs(s.data[i])))
    )
  );
  // The loss may itself be f16; an integer argument still cannot be differentiated.
  assert.equal((interpret(dsl.grad(loss), w, x) as HostArray).dtype, "f16");
  assert.throws(
    () =>
      interpret(dsl.grad((i: Tensor) => dsl.sum(dsl.cast(i, "f16"))), array([1], { dtype: "i32" })),
    /only f32 and f16 values can be differentiated/,
  );
});

Deno.test("Adam and SGD keep f16 parameters in f16 (f32 moments), and their states' dtypes stable", () => {
  const params = { w: f16([0.5, -1.25, 2, 0.75], [2, 2]) };
  const x = f16([1, 2, -3, 0.5], [2, 2]);
  const loss = (p: Record<string, Tensor>) => dsl.sum(dsl.square(dsl.matmul(x, p.w)));
  const adam = (p: Record<string, Tensor>, s: dsl.AdamState<Tensor>) =>
    dsl.adamUpdate(p, dsl.grad(loss)(p) as Record<string, Tensor>, s, 0.01);
  const out = interpret(adam, params, dsl.adamInit(params)) as {
    params: Record<string, HostArray>;
    state: dsl.AdamState<HostArray>;
  };
  assert.equal(out.params.w.dtype, "f16");
  assert.deepEqual([out.state.m.w.dtype, out.state.v.w.dtype, out.state.step.dtype], [
    "f32",
    "f32",
    "f32",
  ]);
  // The f32 step rounded once to half.
  const widen = (h: HostArray) => f32(Array.from(h.data), h.shape);
  const wide = interpret(adam, { w: widen(params.w) }, dsl.adamInit({ w: widen(params.w) })) as {
    params: Record<string, HostArray>;
  };
  assert.deepEqual(Array.from(out.params.w.data), Array.from(wide.params.w.data, Math.f16round));
  // A small gradient: its square (1e-6) is below half's range, so the moments must take it in f32
  // (in half, v = 0 and the step would be g/eps ≈ 1e5).
  const small = (p: Record<string, Tensor>, s: dsl.AdamState<Tensor>) =>
    dsl.adamUpdate(p, { w: dsl.mul(p.w, 1e-3) }, s, 1e-3);
  const one = { w: f16([1]) };
  const stepped = interpret(small, one, dsl.adamInit(one)) as { params: Record<string, HostArray> };
  assert.deepEqual(Array.from(stepped.params.w.data), [Math.f16round(1 - 1e-3)]);
  for (const momentum of [0, 0.9]) {
    const sgd = (p: Record<string, Tensor>, s: { velocity: Record<string, Tensor> }) =>
      dsl.sgdUpdate(p, dsl.grad(loss)(p) as Record<string, Tensor>, s, 0.01, { momentum });
    const next = interpret(sgd, params, dsl.sgdInit(params)) as {
      params: Record<string, HostArray>;
      state: { velocity: Record<string, HostArray> };
    };
    assert.equal(next.params.w.dtype, "f16");
    assert.equal(next.state.velocity.w.dtype, "f32");
  }
});

Deno.test("vmap, jvp, vjp and checkpoint carry f16 through", () => {
  const x = f16([1, 2, 3, 4, 5, 6], [2, 3]);
  const f = (t: Tensor) => dsl.sum(dsl.tanh(dsl.mul(t, 0.3)));
  assert.equal(run(dsl.vmap(f), x).dtype, "f16");
  const [y, tangent] = interpret((t: Tensor, u: Tensor) => dsl.jvp(f, t, u), x, x) as HostArray[];
  assert.deepEqual([y.dtype, tangent.dtype], ["f16", "f16"]);
  const pulled = interpret((t: Tensor) => dsl.vjp(f, t)[1](dsl.array(1, { dtype: "f16" })), x);
  assert.equal((pulled as HostArray[])[0].dtype, "f16");
  const remat = dsl.grad((t: Tensor) => dsl.sum(dsl.checkpoint((u: Tensor) => dsl.exp(u))(t)));
  assert.deepEqual(
    Array.from(run(remat, x).data),
    Array.from(x.data, (v) => Math.f16round(Math.exp(v))),
  );
});
