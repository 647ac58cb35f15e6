/**
 * Every matmul kernel variant (vectorised NN with and without vec4 A loads, vectorised NT, the
 * generic register tile) against the CPU reference, on shapes that hit the edge cases: sizes
 * that are not multiples of the tile, batches, transposed operands, fused epilogues.
 */

import * as dsl from "../../mod.ts";
import { type CodegenOptions, interpret, jit } from "../../mod.ts";
import type { HostArray, Tensor } from "../../mod.ts";
import { assertClose } from "../helpers/arrays.ts";
import { randomArray } from "../helpers/models.ts";

type Case = [string, (a: Tensor, b: Tensor) => Tensor, number[], number[]];

const cases: Case[] = [
  ["NN, vec4 A and B", (a, b) => dsl.matmul(a, b), [33, 20], [20, 40]],
  ["NN, K not a multiple of 4 (scalar A)", (a, b) => dsl.matmul(a, b), [5, 7], [7, 12]],
  ["NN, N not a multiple of the column tile", (a, b) => dsl.matmul(a, b), [9, 8], [8, 36]],
  ["NN, A transposed (scalar A loads)", (a, b) => dsl.matmul(dsl.transpose(a), b), [8, 6], [8, 16]],
  ["NT: x·Wᵀ", (a, b) => dsl.matmul(a, dsl.transpose(b)), [10, 12], [7, 12]],
  [
    "NT with bias and tanh epilogue",
    (a, b) => dsl.tanh(dsl.add(dsl.matmul(a, dsl.transpose(b)), 0.5)),
    [3, 8],
    [5, 8],
  ],
  ["generic: N odd, B transposed, K odd", (a, b) => dsl.matmul(a, dsl.transpose(b)), [4, 5], [
    3,
    5,
  ]],
  ["generic: both transposed", (a, b) => dsl.matmul(dsl.transpose(a), dsl.transpose(b)), [6, 5], [
    7,
    6,
  ]],
  ["batched NN", (a, b) => dsl.matmul(a, b), [3, 5, 8], [3, 8, 12]],
  ["batched NT", (a, b) => dsl.matmul(a, dsl.transpose(b, [0, 2, 1])), [2, 5, 8], [2, 6, 8]],
  ["batch broadcast", (a, b) => dsl.matmul(a, b), [4, 3, 8], [8, 4]],
  ["matrix-vector", (a, b) => dsl.matmul(a, b), [7, 9], [9]],
  ["epilogue reads B again", (a, b) => dsl.add(dsl.matmul(a, b), b), [16, 16], [16, 16]],
];

// The tunables a CPU adapter gets, those a GPU gets, and the generic kernel alone.
const configs: [string, Partial<CodegenOptions>][] = [
  ["cpu tiles", { matmulRowBlock: 32, matmulColumnGroups: 8 }],
  ["gpu tiles", { matmulRowBlock: 4, matmulColumnGroups: 1, matmulWorkgroup: [16, 16] }],
  ["generic", { vectorizedMatmul: false }],
];

for (const [name, f, sa, sb] of cases) {
  Deno.test(`matmul kernel matches the CPU reference: ${name}`, async () => {
    const a = randomArray(sa, 11), b = randomArray(sb, 12);
    const want = interpret(f, a, b) as HostArray;
    for (const [label, codegen] of configs) {
      const got = (await jit(f, { codegen })(a, b)) as HostArray;
      // f32 sums of ≤ 20 products of values in [-1, 1], FMA or not: a few ulps of the sum.
      assertClose(got, want, { rtol: 1e-5, atol: 1e-5, label: `${name} (${label})` });
    }
  });
}

Deno.test("integer matmul is exact", async () => {
  const a = {
    shape: [5, 6],
    dtype: "i32" as const,
    data: Int32Array.from({ length: 30 }, (_, i) => i - 7),
  };
  const b = {
    shape: [6, 4],
    dtype: "i32" as const,
    data: Int32Array.from({ length: 24 }, (_, i) => 3 - i),
  };
  const f = (x: Tensor, y: Tensor) => dsl.matmul(x, y);
  assertClose(await jit(f)(a, b), interpret(f, a, b), { rtol: 0, atol: 0 });
});
