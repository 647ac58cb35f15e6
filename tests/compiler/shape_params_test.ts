/**
 * Shape parameters (issue 15, compile time): kernels of one program that differ only in sizes
 * share one pipeline and read their sizes from a uniform buffer (a read-only storage buffer on CPU
 * adapters). Which literals are lifted, how kernels of one structure share slots, which products
 * keep their main loop's literals, and that a program so compiled computes what it did.
 */

import assert from "node:assert/strict";
import * as dsl from "../../mod.ts";
import { gpu, interpret, jit, lower, trace } from "../../mod.ts";
import type { Tensor } from "../../mod.ts";
import {
  type ShapedKernel,
  shapeTemplate,
  shareShapes,
} from "../../compiler/codegen/shape_params.ts";
import { CPU_CODEGEN, gpuCodegen } from "../../runtime/jit.ts";
import { assertTreeMatches, seeded } from "../runtime/jit_helpers.ts";

/** A kernel in the shape the code generator writes: declarations, attributes, entry point. */
const kernel = (body: string) =>
  `fn helper(x: i32) -> i32 { return x * 144i; }
@group(0) @binding(0) var<storage, read> b0: array<f32>;
@group(0) @binding(1) var<storage, read_write> out0: array<f32>;
@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
${body}
}
`;

Deno.test("shapeTemplate lifts sizes of the entry point, not bare divisors, moduli or declarations", () => {
  const wgsl = kernel(
    [
      "  let i = i32(gid.x);",
      "  if (i >= 4096i) { return; }",
      "  let t1 = (i / 144i) % 384i;",
      "  let t2 = b0[t1 * 384i + i % 48i + 3i + 2u + i / (96i)];",
      "  out0[i + t144i] = t2 * 0.5f + 64.0;",
    ].join("\n"),
  );
  const t = shapeTemplate(wgsl)!;
  // A divisor in parentheses (computed once per invocation) is liftable.
  assert.deepEqual(t.values, [4096, 384, 3, 96]);
  // The pieces put back together are the kernel.
  const joined = t.pieces.map((p, i) => p + (i < t.values.length ? `${t.values[i]}i` : ""));
  assert.equal(joined.join(""), wgsl);
  assert.equal(shapeTemplate(kernel("  out0[0] = 1.0;")), undefined);
});

Deno.test("shareShapes: one text per structure, sizes lifted where members differ", () => {
  const body = (m: number, n: number) =>
    kernel(`  let i = i32(gid.x);\n  if (i >= ${m}i) { return; }\n  out0[i] = b0[i * ${n}i + 5i];`);
  const kernels: ShapedKernel[] = [
    { wgsl: body(144, 144), bindings: 2 },
    { wgsl: body(384, 144), bindings: 2 },
    { wgsl: body(144, 144), bindings: 2 },
    { wgsl: body(100, 7), bindings: 2 },
    { wgsl: kernel("  out0[0] = b0[7i];"), bindings: 2 }, // another structure, alone
  ];
  const out = shareShapes(kernels);
  assert.equal(new Set(out.slice(0, 4).map((k) => k.wgsl)).size, 1);
  assert.equal(out[4].wgsl, kernels[4].wgsl, "a kernel alone keeps its literals");
  assert.equal(out[4].params, undefined);
  const shared = out[0].wgsl;
  assert.match(shared, /@binding\(2\) var<uniform> shape_: array<vec4<i32>, 1>;\n@compute/);
  const main = shared.slice(shared.indexOf("fn main("));
  assert.doesNotMatch(main, /144i|384i/);
  assert.match(main, /\+ 5i\]/, "a literal every member has stays");
  // 144 = 144 in the first kernel, not in the second: two slots.
  assert.deepEqual(out.slice(0, 4).map((k) => [...k.params!]), [
    [144, 144, 0, 0],
    [384, 144, 0, 0],
    [144, 144, 0, 0],
    [100, 7, 0, 0],
  ]);
  // Identical texts alone gain nothing from lifting.
  const same = shareShapes([kernels[0], kernels[2]]);
  assert.deepEqual(same.map((k) => k.wgsl), [kernels[0].wgsl, kernels[2].wgsl]);
});

Deno.test("shareShapes with sizes in storage: a read-only array, where the kernel has room for it", () => {
  const body = (m: number) =>
    kernel(`  let i = i32(gid.x);\n  if (i >= ${m}i) { return; }\n  out0[i] = b0[i];`);
  const kernels: ShapedKernel[] = [144, 384, 100].map((m) => ({ wgsl: body(m), bindings: 2 }));
  const stored = shareShapes(kernels, { buffer: "storage", maxStorageBuffers: 3 });
  assert.equal(new Set(stored.map((k) => k.wgsl)).size, 1);
  assert.match(stored[0].wgsl, /@binding\(2\) var<storage, read> shape_: array<vec4<i32>, 1>;/);
  assert.deepEqual(stored.map((k) => k.params![0]), [144, 384, 100]);
  // Two storage bindings of two allowed: no room for a third, so each keeps its literals.
  const full = shareShapes(kernels, { buffer: "storage", maxStorageBuffers: 2 });
  assert.deepEqual(full.map((k) => k.wgsl), kernels.map((k) => k.wgsl));
  assert.ok(full.every((k) => k.params === undefined));
  // A uniform takes no storage binding.
  const uniform = shareShapes(kernels, { buffer: "uniform", maxStorageBuffers: 2 });
  assert.match(uniform[0].wgsl, /var<uniform> shape_/);
});

Deno.test("shareShapes: kernels with a loop key share only with kernels of the same key", () => {
  // A loop whose bound differs between products, and an offset that differs between parts.
  const body = (k: number, offset: number) =>
    kernel(
      `  var s = 0.0;\n  for (var j = 0i; j < ${k}i; j++) { s += b0[${offset}i + j]; }\n  out0[0] = s;`,
    );
  const kernels: ShapedKernel[] = [[64, 0, "a"], [64, 64, "a"], [96, 0, "b"]].map((
    [k, offset, key],
  ) => ({ wgsl: body(k as number, offset as number), bindings: 2, loopKey: key as string }));
  const out = shareShapes(kernels);
  assert.equal(out[0].wgsl, out[1].wgsl, "one key: one text, the offset lifted");
  assert.match(out[0].wgsl, /j < 64i/, "the bound all members have stays a literal");
  assert.deepEqual([...out[1].params!].slice(0, 1), [64]);
  assert.equal(out[2].wgsl, kernels[2].wgsl, "another key: its own text");
  const lifted = shareShapes(kernels.map((k) => ({ ...k, loopKey: undefined })));
  assert.equal(new Set(lifted.map((k) => k.wgsl)).size, 1, "no keys: one text");
});

/** One product with an epilogue, at three contraction sizes. */
const threeSizes = (...xs: Tensor[]) => {
  const h = (x: Tensor, w: Tensor) => dsl.tanh(dsl.add(dsl.matmul(x, w), 0.5));
  return [h(xs[0], xs[1]), h(xs[2], xs[3]), h(xs[4], xs[5])];
};
const args = [48, 96, 144].flatMap((k) => [seeded([64, k], k), seeded([k, 64], k + 1)]);

Deno.test("a program with one matmul at three sizes compiles one matmul pipeline for them", async () => {
  const spec = (s: readonly number[]) => ({ shape: [...s], dtype: "f32" as const });
  const graph = trace(threeSizes, ...args.map((a) => spec(a.shape)));
  const opts = { maxStorageBuffers: 8, ...CPU_CODEGEN };
  const shared = lower(graph, opts), own = lower(graph, { ...opts, shareShapes: false });
  const matmuls = (p: typeof shared) => p.kernels.filter((k) => k.kind === "matmul");
  assert.equal(new Set(matmuls(own).map((k) => k.wgsl)).size, 3);
  assert.equal(new Set(matmuls(shared).map((k) => k.wgsl)).size, 1);
  assert.ok(matmuls(shared).every((k) => k.params), "each reads its sizes");
  assert.ok(shared.pipelineCount < own.pipelineCount);
  // The shared kernels compute what the reference does, and what the unshared ones do.
  const expected = interpret(threeSizes, ...args);
  const got = await jit(threeSizes)(...args);
  const unshared = await jit(threeSizes, { codegen: { shareShapes: false } })(...args);
  assertTreeMatches(got, expected, { rtol: 1e-5, atol: 1e-5 }, "shared vs interpret");
  assertTreeMatches(got, unshared, { rtol: 1e-6, atol: 1e-7 }, "shared vs unshared");
});

Deno.test("products past liftMatmulLoopsUpTo share a text only with products of their sizes", async () => {
  const spec = (s: readonly number[]) => ({ shape: [...s], dtype: "f32" as const });
  const graph = trace(threeSizes, ...args.map((a) => spec(a.shape)));
  const texts = (liftMatmulLoopsUpTo: number) => {
    const p = lower(graph, { maxStorageBuffers: 8, ...CPU_CODEGEN, liftMatmulLoopsUpTo });
    return new Set(p.kernels.filter((k) => k.kind === "matmul").map((k) => k.wgsl)).size;
  };
  // The products are 64·64·48 to 64·64·144 multiply-adds.
  assert.equal(texts(64 * 64 * 144), 1, "all within the bound: one text");
  assert.equal(texts(64 * 64 * 96), 2, "the largest keeps its literals");
  assert.equal(texts(0), 3, "each its own");
  const expected = interpret(threeSizes, ...args);
  for (const liftMatmulLoopsUpTo of [0, 64 * 64 * 96]) {
    const got = await jit(threeSizes, { codegen: { liftMatmulLoopsUpTo } })(...args);
    assertTreeMatches(got, expected, { rtol: 1e-5, atol: 1e-5 }, `${liftMatmulLoopsUpTo}`);
  }
});

Deno.test("split-K chunks of a product past liftMatmulLoopsUpTo still share one text", async () => {
  const f = (x: Tensor, w: Tensor) => dsl.tanh(dsl.matmul(x, w));
  const xs = [seeded([16, 1536], 3), seeded([1536, 32], 4)];
  const graph = trace(f, ...xs.map((a) => ({ shape: [...a.shape], dtype: "f32" as const })));
  // A loop budget of 1000 iterations splits K = 1536 into four chunks of 384.
  const codegen = { ...CPU_CODEGEN, maxLoopIterations: 1000, liftMatmulLoopsUpTo: 0 };
  const matmuls = lower(graph, { maxStorageBuffers: 8, ...codegen }).kernels.filter((k) =>
    k.kind === "matmul"
  );
  assert.equal(matmuls.length, 4);
  assert.ok(matmuls.every((k) => k.loopKey === matmuls[0].loopKey && k.loopKey));
  assert.equal(new Set(matmuls.map((k) => k.wgsl)).size, 1, "the offsets lifted, the loop not");
  assert.match(matmuls[0].wgsl, /k < 384i/);
  const got = await jit(f, { codegen })(...xs);
  assertTreeMatches(got, interpret(f, ...xs), { rtol: 1e-5, atol: 1e-5 }, "chunks");
});

Deno.test("a CPU adapter's shared kernels read their sizes from storage; a GPU's from a uniform", async () => {
  const graph = trace(
    threeSizes,
    ...args.map((a) => ({ shape: [...a.shape], dtype: "f32" as const })),
  );
  const kernels = (codegen: Partial<typeof CPU_CODEGEN>) =>
    lower(graph, { maxStorageBuffers: 8, ...codegen }).kernels;
  const stored = /var<storage, read> shape_:/;
  const cpu = kernels(CPU_CODEGEN).filter((k) => k.params);
  assert.ok(cpu.length > 0 && cpu.every((k) => stored.test(k.wgsl)));
  // Not grouped, which would move the sizes into the group's table.
  const gpuKernels = kernels({ ...gpuCodegen((await gpu()).info.limits), groupKernels: false });
  assert.ok(gpuKernels.some((k) => /var<uniform> shape_:/.test(k.wgsl)));
  assert.ok(gpuKernels.every((k) => !stored.test(k.wgsl)));
});

Deno.test("shapeTemplate with liftDivisors lifts bare divisors and moduli too", () => {
  const wgsl = kernel("  let i = i32(gid.x);\n  out0[i] = b0[(i % 12i) * 8i + i / 12i];");
  assert.deepEqual(shapeTemplate(wgsl)!.values, [8]);
  const t = shapeTemplate(wgsl, true)!;
  assert.deepEqual(t.values, [12, 8, 12]);
  const joined = t.pieces.map((p, i) => p + (i < t.values.length ? `${t.values[i]}i` : ""));
  assert.equal(joined.join(""), wgsl);
});

/** Transposes of three sizes: elementwise kernels that differ only in their index arithmetic. */
const transposes = (...xs: Tensor[]) =>
  [0, 2, 4].map((i) => dsl.add(dsl.mul(dsl.transpose(xs[i]), 2), xs[i + 1]));
const transposed = [[8, 12], [6, 20], [40, 3]].flatMap(([m, n]) => [
  seeded([m, n], m),
  seeded([n, m], n),
]);

Deno.test("small elementwise kernels that differ only in divisors share a pipeline (liftDivisorsUpTo)", async () => {
  const spec = (s: readonly number[]) => ({ shape: [...s], dtype: "f32" as const });
  const graph = trace(transposes, ...transposed.map((a) => spec(a.shape)));
  const texts = (liftDivisorsUpTo: number) => {
    const p = lower(graph, { maxStorageBuffers: 8, ...CPU_CODEGEN, liftDivisorsUpTo });
    const elementwise = p.kernels.filter((k) => k.kind === "elementwise");
    assert.equal(elementwise.length, 3);
    return new Set(elementwise.map((k) => k.wgsl)).size;
  };
  assert.equal(texts(0), 3, "divisors kept: three texts");
  assert.equal(texts(96), 3, "over the bound: three texts");
  assert.equal(texts(120), 1, "within it: one text, each kernel its sizes");
  const expected = interpret(transposes, ...transposed);
  for (const liftDivisorsUpTo of [0, 120]) {
    const got = await jit(transposes, { codegen: { liftDivisorsUpTo } })(...transposed);
    assertTreeMatches(
      got,
      expected,
      { rtol: 1e-6, atol: 1e-6 },
      `liftDivisorsUpTo ${liftDivisorsUpTo}`,
    );
  }
});
