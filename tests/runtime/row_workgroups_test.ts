/**
 * Row reductions with one workgroup per row (`rowWorkgroup`, rows_workgroup.ts): softmax, norms,
 * log-sum-exp and sums or maxima over trailing axes, with their prologues and epilogues, against
 * the CPU reference at random shapes, and the kernels that must take the workgroup form.
 */

import * as dsl from "../../mod.ts";
import { gpu, grad, interpret, jit, lower, type Program, trace } from "../../mod.ts";
import type { HostArray, Tensor } from "../../mod.ts";
import assert from "node:assert/strict";
import { assertClose } from "../helpers/arrays.ts";
import { checkAsyncProperty, fc } from "./jit_helpers.ts";
import { randomArray } from "../helpers/models.ts";

/** Kernels of `program` that reduce a row in a workgroup. */
const workgroupKernels = (program: Program) =>
  program.kernels.filter((k) => k.wgsl.includes("row_part_"));

/** Programs of one [rows, length] input (some over [a, b, length]), each with rows to reduce. */
const PROGRAMS: Record<string, (x: Tensor) => Tensor | Tensor[]> = {
  softmax: (x) => dsl.softmax(x),
  logSoftmax: (x) => dsl.mul(dsl.logSoftmax(x), 0.5),
  layerNorm: (x) => dsl.layerNorm(x),
  rmsNorm: (x) => dsl.tanh(dsl.rmsNorm(x)),
  logsumexp: (x) => dsl.logsumexp(x, -1),
  rowSum: (x) => [dsl.sum(dsl.exp(dsl.mul(x, 0.3)), -1), dsl.max(x, -1)],
  // A softmax's gradient: a row sum of g·y inside the backward kernel.
  softmaxGrad: (x) => grad((t: Tensor) => dsl.sum(dsl.mul(dsl.softmax(t), dsl.sin(t))))(x),
  // Two trailing axes reduced at once, over a batch axis.
  twoAxes: (x) => dsl.sum(dsl.mul(dsl.reshape(x, [x.shape[0], 2, x.shape[1] / 2]), 2), [1, 2]),
};

Deno.test("rows reduced by a workgroup each match the reference at random shapes", async () => {
  let taken = 0;
  await checkAsyncProperty(
    fc.asyncProperty(
      fc.record({
        rows: fc.integer({ min: 1, max: 40 }),
        // Both sides of MIN_WORKGROUP_ROW (32), and past the workgroup (a few strides per row).
        half: fc.integer({ min: 8, max: 400 }),
        name: fc.constantFrom(...Object.keys(PROGRAMS)),
        size: fc.constantFrom(32, 64, 256),
        seed: fc.integer({ min: 0, max: 1000 }),
      }),
      async ({ rows, half, name, size, seed }) => {
        const x = randomArray([rows, 2 * half], seed, 3);
        const f = PROGRAMS[name];
        const want = [interpret(f, x)].flat() as HostArray[];
        const codegen = { rowWorkgroup: size };
        if (workgroupKernels(await jit(f, { codegen }).lower(x)).length > 0) taken++;
        const got = [await jit(f, { codegen })(x)].flat() as HostArray[];
        got.forEach((g, i) =>
          assertClose(g, want[i], {
            rtol: 1e-5,
            atol: 1e-5,
            label: `${name} [${rows}, ${2 * half}], workgroup ${size}, output ${i}`,
          })
        );
      },
    ),
    { numRuns: 40 },
  );
  assert.ok(taken >= 20, `only ${taken} programs reduced rows in a workgroup`);
});

Deno.test("which kernels take a workgroup per row: long contiguous rows, not columns or short rows", async () => {
  const codegen = { rowWorkgroup: 64 };
  const count = async (f: (x: Tensor) => Tensor, shape: number[]) =>
    workgroupKernels(await jit(f, { codegen }).lower(randomArray(shape, 1))).length;
  // A 4 × 500 softmax: one row-wise kernel, a workgroup per row.
  assert.equal(await count((x) => dsl.softmax(x), [4, 500]), 1);
  // The same rows summed, and a whole array summed (one row of 2,000).
  assert.equal(await count((x) => dsl.sum(x, -1), [4, 500]), 1);
  assert.equal(await count((x) => dsl.sum(x), [4, 500]), 1);
  // Columns (a bias gradient over tokens) keep one invocation per output: coalesced already.
  assert.equal(await count((x) => dsl.sum(x, 0), [500, 4]), 0);
  // Rows shorter than 32 keep one invocation per row.
  assert.equal(await count((x) => dsl.softmax(x), [500, 16]), 0);
  // The default (CPU adapter) takes none.
  const serial = await jit((x: Tensor) => dsl.softmax(x)).lower(randomArray([4, 500], 1));
  assert.equal(workgroupKernels(serial).length, 0);
});

Deno.test("subgroup row reductions: the text they take, and jit keeps them off a device without subgroups", async () => {
  const f = (x: Tensor) => [dsl.softmax(x), dsl.max(x, -1), dsl.sum(dsl.cast(x, "i32"), -1)];
  const x = randomArray([4, 500], 2, 3);
  const graph = trace(f, { shape: [4, 500], dtype: "f32" });
  const kernels = lower(graph, { rowWorkgroup: 64, subgroupReductions: true, maxStorageBuffers: 8 })
    .kernels
    .filter((k) => k.wgsl.includes("row_part_"));
  assert.ok(kernels.length >= 2, `${kernels.length} row kernels`);
  for (const k of kernels) {
    assert.ok(k.wgsl.startsWith("enable subgroups;\n"), k.wgsl.slice(0, 80));
    assert.match(k.wgsl, /@builtin\(subgroup_invocation_id\) sg_lane: u32/);
    assert.match(k.wgsl, /subgroup(Add|Max)\(/);
    // Two barriers per reduction phase: no tree of halvings.
    assert.doesNotMatch(k.wgsl, /s = s >> 1u/);
  }
  // f32 maxima stay NaN-propagating; i32 sums and maxima use the plain operations.
  assert.ok(kernels.some((k) => /subgroupAny\(/.test(k.wgsl)));
  assert.ok(kernels.some((k) => /subgroupAdd\(acc\w*\)/.test(k.wgsl) && /i32/.test(k.wgsl)));
  // This adapter grants no subgroups (Deno's wgpu on lavapipe): jit lowers the tree form and the
  // results are the reference's. The subgroup form runs in Chromium (tests/web/conformance.js).
  const device = await gpu();
  assert.ok(!device.info.features.includes("subgroups"), "this adapter grants subgroups now");
  const codegen = { rowWorkgroup: 64, subgroupReductions: true };
  const program = await jit(f, { codegen }).lower(x);
  assert.ok(program.kernels.every((k) => !k.wgsl.includes("subgroup")));
  const got = await jit(f, { codegen })(x) as HostArray[];
  (interpret(f, x) as HostArray[]).forEach((want, i) =>
    assertClose(got[i], want, { rtol: 1e-5, atol: 1e-5, label: `output ${i}` })
  );
});
