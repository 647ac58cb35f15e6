/**
 * The f16 dtype on the device: kernels compute in f32 and round every f16 result to half (to
 * nearest, ties to even, overflow to ±inf), f16 inputs are uploaded packed in 16 bits, and f16
 * results come back as Float16Array. Each check runs on the device and against the CPU reference
 * (whose Float16Array stores round the same way); random f16 programs are in
 * jit_random_dag_test.ts.
 */

import * as dsl from "../../mod.ts";
import {
  type CodegenOptions,
  DeviceArray,
  gpu,
  type HostArray,
  interpret,
  jit,
  type Tensor,
  toDevice,
  toHost,
} from "../../mod.ts";
import assert from "node:assert/strict";
import { assertArrayMatches, assertTreeMatches, seeded, type Tol } from "./jit_helpers.ts";
import { MATMUL_CONFIGS } from "../helpers/matmul_configs.ts";

/** One half ULP (2⁻¹⁰ relative) of room: a product's f32 sum may round to either neighbour. */
const HALF_ULP: Tol = { rtol: 2 ** -10, atol: 2 ** -24 };

function half(shape: number[], seed: number, min = -1, max = 1): HostArray {
  const x = seeded(shape, seed, min, max);
  return { shape: x.shape, dtype: "f16", data: new Float16Array(x.data) };
}

Deno.test("f32 → f16 casts on the device round as IEEE does (ties to even, subnormals, ±inf, NaN)", async () => {
  const edges = [0, -0, 1, -1, 65504, 65519.99, 65520, -65520, 1e30, -Infinity, Infinity, NaN];
  const tiny = [2 ** -24, 2 ** -25, 1.5 * 2 ** -25, 3 * 2 ** -25, 2 ** -14, 2 ** -14 - 2 ** -25];
  const ties = [1 + 2 ** -11, 1 + 3 * 2 ** -11, 2049, 2051, -2051, 0.1, 1 / 3];
  const random = seeded([4000], 7, -1, 1).data.map((u, i) => u * 2 ** ((i % 60) - 35));
  const values = Float32Array.from([...edges, ...tiny, ...ties, ...tiny.map((t) => -t), ...random]);
  const x: HostArray = { shape: [values.length], dtype: "f32", data: values };
  const f = (t: Tensor) => dsl.cast(dsl.cast(t, "f16"), "f32");
  const got = await jit(f)(x) as HostArray;
  const want = Float32Array.from(values, (v) => Math.f16round(v));
  for (let i = 0; i < values.length; i++) {
    assert.ok(
      Object.is(got.data[i], want[i]),
      `f16(${values[i]}) = ${got.data[i]}, not ${want[i]}`,
    );
  }
  assertArrayMatches(interpret(f, x) as HostArray, { ...x, data: want }, "exact");
});

Deno.test("f16 results come back as Float16Array; every fused op rounds as the reference does", async () => {
  const x = half([6, 40], 1, -3, 3), w = half([40, 24], 2, -3, 3);
  const f = (x: Tensor, w: Tensor) => {
    const h = dsl.matmul(x, w);
    return {
      h,
      softmax: dsl.softmax(h, -1),
      sumSquares: dsl.sum(dsl.mul(h, h)),
      // Each op rounds: (x/11)·11 is not always x in half.
      elevenths: dsl.mul(dsl.div(x, 11), 11),
      norm: dsl.layerNorm(dsl.add(h, 1000)),
      wide: dsl.cast(dsl.mul(x, 1 / 3), "f32"),
      overflow: dsl.mul(x, 30000),
    };
  };
  const got = await jit(f)(x, w) as Record<string, HostArray>;
  const want = interpret(f, x, w) as Record<string, HostArray>;
  assert.ok(got.h.data instanceof Float16Array);
  assert.equal(got.wide.dtype, "f32");
  assert.ok(Array.from(got.overflow.data).some((v) => !Number.isFinite(v)), "x·30000 overflows");
  assertTreeMatches(got, want, (i) => (i === 2 ? HALF_ULP : "exact"));
  // Half arithmetic differs from f32 arithmetic rounded once: the check above can fail.
  const elevenths = Array.from(got.elevenths.data);
  assert.ok(elevenths.some((v, i) => v !== x.data[i]), "(x/11)·11 rounds in half");
});

Deno.test("f16 products on every matmul template equal the reference's half results", async () => {
  const a = half([2, 33, 70], 3), b = half([2, 70, 45], 4);
  const f = (a: Tensor, b: Tensor) => {
    const p = dsl.matmul(a, b);
    return [p, dsl.add(dsl.mul(p, 0.5), 1), dsl.matmul(a, dsl.transpose(a, [0, 2, 1]))];
  };
  const want = interpret(f, a, b);
  for (const [name, codegen] of MATMUL_CONFIGS) {
    const got = await jit(f, { codegen: codegen as Partial<CodegenOptions> })(a, b);
    assertTreeMatches(got, want, HALF_ULP, `f16 matmul (${name})`);
  }
});

Deno.test("f16 gradients: f16 cotangents for f16 arguments, through casts to f32 and back", async () => {
  const x = half([8, 16], 5),
    w = half([16, 4], 6),
    labels = dsl.array([0, 1, 2, 3, 0, 1, 2, 3], {
      dtype: "i32",
    });
  const loss = (w: Tensor, x: Tensor) =>
    dsl.crossEntropy(dsl.cast(dsl.matmul(dsl.tanh(x), w), "f32"), labels);
  const g = dsl.grad(loss, { argnums: [0, 1] });
  const got = await jit(g)(w, x) as HostArray[];
  const want = interpret(g, w, x) as HostArray[];
  assert.deepEqual(got.map((t) => t.dtype), ["f16", "f16"]);
  assertTreeMatches(got, want, { rtol: 2 ** -8, atol: 2 ** -14 });
  // The same gradient in f32 arithmetic, within half precision of it.
  const f32 = (h: HostArray): HostArray => ({
    ...h,
    dtype: "f32",
    data: Float32Array.from(h.data),
  });
  const wide = interpret(g, f32(w), f32(x)) as HostArray[];
  got.forEach((t, i) =>
    assertArrayMatches(f32(t), wide[i], { rtol: 2e-2, atol: 2e-3 }, `grad ${i} vs f32`)
  );
});

Deno.test("f16 arrays live packed on the device (2 bytes each); f16 results feed other programs", async () => {
  const device = await gpu();
  const x = half([3, 5], 8, -4, 4);
  const packed = await toDevice(x, device) as DeviceArray;
  assert.ok(packed instanceof DeviceArray);
  assert.equal(packed.storage, "f16");
  assert.equal(packed.bytes, 32); // 15 halves in 8 words
  const double = jit((t: Tensor) => dsl.mul(t, 2), { device });
  const onDevice = await double.onDevice(packed) as DeviceArray;
  assert.equal(onDevice.dtype, "f16");
  // A program's f16 output (held in f32 words) is an input like a packed one.
  const again = await double(onDevice) as HostArray;
  assert.ok(again.data instanceof Float16Array);
  assert.deepEqual(Array.from(again.data), Array.from(x.data, (v) => Math.f16round(4 * v)));
  const back = await toHost(packed) as HostArray;
  assert.deepEqual(back, x);
  // f32 data given for an f16 argument is rounded to half on the way in, as the reference does.
  const loose: HostArray = { shape: [3], dtype: "f16", data: Float32Array.from([0.1, 1 / 3, 7e4]) };
  const out = await jit((t: Tensor) => dsl.add(t, 0))(loose) as HostArray;
  assertArrayMatches(out, interpret((t: Tensor) => dsl.add(t, 0), loose) as HostArray, "exact");
  assert.deepEqual(Array.from(out.data), [Math.f16round(0.1), Math.f16round(1 / 3), Infinity]);
});

Deno.test("an f16 input cannot be stored as bf16; lowering names the input", async () => {
  const f = (t: Tensor) => dsl.mul(t, 2);
  const lowered = jit(f).lower({ shape: [4], dtype: "f16", storage: "bf16" } as never);
  await assert.rejects(lowered, /input 0 is f16\[4\]; an f16 input can only be stored as f16/);
});

Deno.test("f16 sums and products split for a short loop budget keep f32 partials and round once", async () => {
  const device = await gpu({
    limits: { maxLoopIterations: 64, maxComputeWorkgroupsPerDimension: 4 },
  });
  // ±300 alternating: partials are thousands, the total is 375; a partial rounded to half (an ULP
  // of 8 at 10⁴) would throw the total off by far more than its own half ULP.
  const alternating = Array.from({ length: 3000 }, (_, i) => (i % 2 ? 300.25 : -300));
  const x = dsl.array(alternating, { dtype: "f16" }),
    a = half([5, 700], 10),
    b = half([700, 3], 11);
  const f = (x: Tensor, a: Tensor, b: Tensor) => [dsl.sum(x), dsl.matmul(a, b)];
  const program = await jit(f, { device }).lower(x, a, b);
  assert.ok(program.kernels.length > 2, "the sum and the product are split");
  const got = await jit(f, { device })(x, a, b);
  assertTreeMatches(got, interpret(f, x, a, b), HALF_ULP);
  assert.equal((got as HostArray[])[0].data[0], 375);
});

Deno.test("f16 in 16-bit words over a small binding limit: windows of halves, gathers and scatter-adds in place", async () => {
  const device = await gpu({ limits: { maxStorageBufferBindingSize: 512 } });
  const table = half([40, 9], 12, -2, 2), h = half([6, 9], 13);
  const idx = dsl.array(Array.from({ length: 30 }, (_, i) => ((i * 7) % 40) - 5), { dtype: "i32" });
  // 360 halves take 720 bytes: two windows of 256 halves each, and part of a third.
  const f = (t: Tensor, h: Tensor) => [
    dsl.tanh(dsl.mul(t, 3)),
    dsl.take(t, idx, 0),
    dsl.softmax(dsl.matmul(h, dsl.transpose(t))),
  ];
  const g = dsl.grad((t: Tensor, h: Tensor) => {
    const [a, b, c] = f(t, h);
    return dsl.add(dsl.add(dsl.sum(dsl.square(a)), dsl.sum(b)), dsl.sum(dsl.mul(c, c)));
  }, { argnums: [0, 1] });
  for (const [label, fn] of [["values", f], ["gradients", g]] as const) {
    const program = await jit(fn, { device }).lower(table, h);
    assert.ok(program.kernels.some((k) => k.wgsl.includes("enable f16")), label);
    const got = await jit(fn, { device })(table, h);
    const unfused = await jit(fn, { device, fuse: false })(table, h);
    assertTreeMatches(got, unfused, "exact", `${label}: fused vs unfused`);
    assertTreeMatches(got, interpret(fn, table, h), { rtol: 2 ** -8, atol: 2 ** -12 }, label);
  }
});

Deno.test("shard batches with f16 fields stack as f16 (the trainer's batched pass)", async () => {
  const { stackShards } = await import("../../runtime/trainer_common.ts");
  const shard = (v: number) => ({ x: half([2], 20 + v), ids: dsl.array([v, v], { dtype: "i32" }) });
  const shards = [shard(0), shard(1)];
  const stacked = stackShards(shards, 2);
  assert.equal(stacked.x.dtype, "f16");
  assert.ok(stacked.x.data instanceof Float16Array);
  assert.deepEqual(Array.from(stacked.x.data), [...shards[0].x.data, ...shards[1].x.data]);
  assert.deepEqual(Array.from(stacked.ids.data), [0, 0, 1, 1]);
});
