/**
 * Products computed inside the row-wise kernel that alone reads them (`inlineProducts`, fusion rule
 * 10): attention's scores under their softmax and dO·Vᵀ under the softmax's gradient. Values and
 * gradients against the CPU reference at random shapes (with and without a workgroup per row), and
 * the kernels the rule must remove.
 */

import * as dsl from "../../mod.ts";
import { grad, interpret, jit, type Program } from "../../mod.ts";
import type { HostArray, Tensor } from "../../mod.ts";
import assert from "node:assert/strict";
import { causalAttention, maskedAttention } from "../../dsl/nn/layers.ts";
import * as lax from "../../dsl/lax.ts";
import { assertTreeMatches, checkAsyncProperty, fc } from "./jit_helpers.ts";
import { randomArray } from "../helpers/models.ts";

/** Row-wise kernels of `program` that compute a product inside. */
const inlined = (program: Program) =>
  program.kernels.filter((k) => k.kind === "rowwise" && k.ops.includes("matmul"));

Deno.test("attention with its scores computed inside the softmax matches the reference, values and gradients", async () => {
  let taken = 0;
  await checkAsyncProperty(
    fc.asyncProperty(
      fc.record({
        batch: fc.integer({ min: 1, max: 2 }),
        kvHeads: fc.integer({ min: 1, max: 2 }),
        group: fc.integer({ min: 1, max: 2 }),
        // Both sides of a workgroup's smallest row (32).
        t: fc.integer({ min: 1, max: 48 }),
        d: fc.integer({ min: 1, max: 20 }),
        causal: fc.boolean(),
        rows: fc.constantFrom(0, 64),
        seed: fc.integer({ min: 0, max: 1000 }),
      }),
      async ({ batch, kvHeads, group, t, d, causal, rows, seed }) => {
        const h = kvHeads * group;
        const q = randomArray([batch, h, t, d], seed, 2);
        const k = randomArray([batch, kvHeads, t, d], seed + 1, 2);
        const v = randomArray([batch, kvHeads, t, d], seed + 2);
        // A mask that is not causal: the keys up to two past the query's own.
        const visible = () =>
          dsl.greaterEqual(dsl.add(lax.iota([t, t], 0), 2), lax.iota([t, t], 1));
        const attend = (q: Tensor, k: Tensor, v: Tensor) =>
          causal ? causalAttention(q, k, v) : maskedAttention(q, k, v, visible());
        const loss = (q: Tensor, k: Tensor, v: Tensor) =>
          dsl.sum(dsl.mul(attend(q, k, v), dsl.cos(attend(q, k, v))));
        const f = grad(loss, { argnums: [0, 1, 2] });
        const codegen = { inlineProducts: 128, rowWorkgroup: rows };
        const program = await jit(f, { codegen }).lower(q, k, v);
        if (inlined(program).length >= 2) taken++;
        const apart = await jit(f, { codegen: { rowWorkgroup: rows } }).lower(q, k, v);
        assert.ok(program.kernels.length <= apart.kernels.length);
        assertTreeMatches(
          await jit(f, { codegen })(q, k, v),
          interpret(f, q, k, v),
          { rtol: 1e-4, atol: 1e-4, scaled: true },
          `attention b=${batch} h=${h}/${kvHeads} t=${t} d=${d} causal=${causal} rows=${rows}`,
        );
      },
    ),
    { numRuns: 16 },
  );
  assert.ok(taken >= 12, `only ${taken} programs computed the scores inside their softmax`);
});

Deno.test("inlined products: causal attention and its gradient take two kernels fewer", async () => {
  const [q, k, v] = [1, 2, 3].map((s) => randomArray([2, 3, 40, 8], s));
  const loss = (q: Tensor, k: Tensor, v: Tensor) => dsl.sum(dsl.square(causalAttention(q, k, v)));
  const f = grad(loss, { argnums: [0, 1, 2] });
  const on = await jit(f, { codegen: { inlineProducts: 128 } }).lower(q, k, v);
  const off = await jit(f).lower(q, k, v);
  // QKᵀ under the softmax, and dO·Vᵀ under the softmax's gradient.
  assert.equal(on.kernels.length, off.kernels.length - 2, String(on));
  assert.equal(inlined(on).length, 2, String(on));
  // A contraction past the bound keeps its own kernel.
  const long = await jit(f, { codegen: { inlineProducts: 4 } }).lower(q, k, v);
  assert.equal(long.kernels.length, off.kernels.length);
  // A product with another reader is stored, its readers unchanged.
  const shared = (x: Tensor, w: Tensor) => {
    const s = dsl.matmul(x, w);
    return [dsl.softmax(s), dsl.mul(s, 2)];
  };
  const args = [randomArray([8, 5], 4), randomArray([5, 40], 5)] as HostArray[];
  const kept = await jit(shared, { codegen: { inlineProducts: 128 } }).lower(...args);
  assert.equal(inlined(kept).length, 0, String(kept));
});
