/**
 * Products computed beside each other (`matmulCoProducts`, fusion rule 9): a product kernel whose
 * epilogue reads another product at its own index computes both, each into its own accumulators,
 * in every matmul kernel (register tiles, vec4 NN/NT/TN, generic, shared memory). Values and
 * gradients against the CPU reference; kernel counts where the fusion must merge.
 */

import * as dsl from "../../mod.ts";
import { grad, interpret, jit, type Program } from "../../mod.ts";
import type { HostArray, Tensor } from "../../mod.ts";
import assert from "node:assert/strict";
import { assertClose } from "../helpers/arrays.ts";
import { assertTreeMatches, checkAsyncProperty, fc } from "./jit_helpers.ts";
import { randomArray } from "../helpers/models.ts";
import { MATMUL_CONFIGS } from "../helpers/matmul_configs.ts";

/** Kernels of `program` that compute more than one product. */
const twoProductKernels = (program: Program) =>
  program.kernels.filter((k) => k.ops.filter((op) => op === "matmul").length > 1);

type Layout = "NN" | "NT" | "TN";

/** x·W in `layout` (x stored as [k, m] for TN, W as [n, k] for NT). */
function product(x: Tensor, w: Tensor, layout: Layout): Tensor {
  return dsl.matmul(
    layout === "TN" ? dsl.transpose(x) : x,
    layout === "NT" ? dsl.transpose(w) : w,
  );
}

function operands(m: number, n: number, k: number, layout: Layout, seed: number): HostArray[] {
  return [
    randomArray(layout === "TN" ? [k, m] : [m, k], seed),
    randomArray(layout === "NT" ? [n, k] : [k, n], seed + 1),
  ];
}

/** How the epilogue joins the two products p and q (none of them a plain sum). */
const JOINS = {
  // A gated MLP's hidden layer, with the gate kept for the backward pass.
  gate: (p: Tensor, q: Tensor) => [dsl.mul(dsl.mul(p, dsl.sigmoid(p)), q), p],
  gateOnly: (p: Tensor, q: Tensor) => [dsl.mul(dsl.mul(p, dsl.sigmoid(p)), q)],
  scaled: (p: Tensor, q: Tensor) => [dsl.tanh(dsl.add(dsl.mul(p, 2), q))],
  both: (p: Tensor, q: Tensor) => [dsl.mul(p, q), dsl.exp(dsl.mul(q, 0.1))],
};
type Join = keyof typeof JOINS;

Deno.test("products computed beside each other (matmulCoProducts) match the reference at random sizes and layouts", async () => {
  let vec4 = 0, shared = 0, fused = 0;
  await checkAsyncProperty(
    fc.asyncProperty(
      fc.record({
        m: fc.integer({ min: 1, max: 36 }),
        n: fc.integer({ min: 1, max: 36 }),
        ks: fc.tuple(fc.integer({ min: 1, max: 24 }), fc.integer({ min: 1, max: 24 })),
        // Every size a multiple of 4 half of the time: the vec4 kernels' paths.
        aligned: fc.boolean(),
        layouts: fc.oneof(
          fc.constant(["NT", "NT"] as Layout[]),
          fc.tuple(
            fc.constantFrom<Layout>("NN", "NT", "TN"),
            fc.constantFrom<Layout>("NN", "NT", "TN"),
          ),
        ),
        join: fc.constantFrom(...(Object.keys(JOINS) as Join[])),
        seed: fc.integer({ min: 0, max: 1000 }),
      }),
      async ({ m: m0, n: n0, ks: ks0, aligned, layouts, join, seed }) => {
        const up = (d: number) => (aligned ? 4 * Math.ceil(d / 4) : d);
        const [m, n, ks] = [up(m0), up(n0), ks0.map(up)];
        const args = [
          ...operands(m, n, ks[0], layouts[0], seed),
          ...operands(m, n, ks[1], layouts[1], seed + 2),
        ];
        const f = (x: Tensor, w: Tensor, y: Tensor, v: Tensor) =>
          JOINS[join](product(x, w, layouts[0]), product(y, v, layouts[1]));
        const want = interpret(f, ...args) as HostArray[];
        for (const [label, base] of MATMUL_CONFIGS) {
          const codegen = { ...base, matmulCoProducts: true, matmulNtInPlace: true };
          const program = await jit(f, { codegen }).lower(...args);
          const merged = twoProductKernels(program);
          if (merged.length > 0) fused++;
          if (merged.some((k) => k.wgsl.includes("var<workgroup>"))) shared++;
          else if (merged.some((k) => k.wgsl.includes("array<vec4<f32>>"))) vec4++;
          const got = await jit(f, { codegen })(...args) as HostArray[];
          got.forEach((g, i) =>
            assertClose(g, want[i], {
              rtol: 1e-5,
              atol: 1e-5,
              label: `${join} ${layouts} m=${m} n=${n} k=${ks} output ${i} (${label})`,
            })
          );
        }
      },
    ),
    { numRuns: 16 },
  );
  // Every case has products the epilogue joins: most settings must have merged them.
  assert.ok(fused >= 16 * 4, `only ${fused} programs computed two products in one kernel`);
  assert.ok(vec4 >= 4, `only ${vec4} programs computed two products in one vec4 kernel`);
  assert.ok(shared >= 4, `only ${shared} programs computed two products in one tiled kernel`);
});

Deno.test("a gated MLP with co-products: one kernel for gate and up, values and gradients as the reference", async () => {
  // x [32, 24] through gate and up W [40, 24] (x·Wᵀ), the down projection back to 24 columns.
  const x = randomArray([32, 24], 1), wg = randomArray([40, 24], 2);
  const wu = randomArray([40, 24], 3), wd = randomArray([24, 40], 4);
  const mlp = (x: Tensor, wg: Tensor, wu: Tensor, wd: Tensor) => {
    const g = dsl.matmul(x, dsl.transpose(wg)), u = dsl.matmul(x, dsl.transpose(wu));
    return dsl.matmul(dsl.mul(dsl.mul(g, dsl.sigmoid(g)), u), dsl.transpose(wd));
  };
  const loss = (x: Tensor, wg: Tensor, wu: Tensor, wd: Tensor) =>
    dsl.sum(dsl.mul(mlp(x, wg, wu, wd), mlp(x, wg, wu, wd)));
  const step = grad(loss, { argnums: [0, 1, 2, 3] });
  const args = [x, wg, wu, wd];
  for (const [label, base] of MATMUL_CONFIGS) {
    const on = { ...base, matmulCoProducts: true, matmulNtInPlace: true };
    const off = { ...base, matmulCoProducts: false, matmulNtInPlace: true };
    const forward = await jit(mlp, { codegen: on }).lower(...args);
    const gateUp = twoProductKernels(forward);
    assert.equal(gateUp.length, 1, `${label}: gate and up in one kernel`);
    const apart = await jit(mlp, { codegen: off }).lower(...args);
    assert.equal(forward.kernels.length, apart.kernels.length - 1, `${label}: one kernel fewer`);
    assertClose(
      await jit(mlp, { codegen: on })(...args) as HostArray,
      interpret(mlp, ...args) as HostArray,
      { rtol: 1e-5, atol: 1e-5, label: `${label}: forward` },
    );
    // The backward pass: the input gradient δg·Wg + δu·Wu is a product joined to another.
    const backward = await jit(step, { codegen: on }).lower(...args);
    assert.ok(twoProductKernels(backward).length >= 2, `${label}: backward co-products`);
    assertTreeMatches(
      await jit(step, { codegen: on })(...args),
      interpret(step, ...args),
      // Sums of hundreds of f32 terms of magnitude ~100: atol relative to the leaf's largest.
      { rtol: 1e-4, atol: 1e-5, scaled: true },
      `${label}: gradients`,
    );
  }
});
