/**
 * Every matmul kernel variant (vectorised NN with and without vec4 A loads, vectorised NT and TN,
 * the generic register tile) against the CPU reference, on shapes that hit the edge cases: sizes
 * that are not multiples of the tile, batches, transposed operands, fused epilogues.
 */

import * as dsl from "../../mod.ts";
import { type CodegenOptions, gpu, interpret, jit } from "../../mod.ts";
import type { HostArray, Tensor } from "../../mod.ts";
import assert from "node:assert/strict";
import { assertClose } from "../helpers/arrays.ts";
import { checkAsyncProperty, fc } from "./jit_helpers.ts";
import { randomArray } from "../helpers/models.ts";
import { MATMUL_CONFIGS as configs, SMALL_TILING } from "../helpers/matmul_configs.ts";

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
  ["several tiles each way, odd sizes", (a, b) => dsl.matmul(a, b), [70, 37], [37, 50]],
  ["NN, several tiles, sizes that divide them (vec4 tile loads)", (a, b) => dsl.matmul(a, b), [
    64,
    32,
  ], [32, 48]],
  [
    "NT, several tiles, sizes that divide them, epilogue reads A",
    (a, b) => dsl.add(dsl.matmul(a, dsl.transpose(b)), dsl.sum(a, 1, { keepDims: true })),
    [32, 64],
    [48, 64],
  ],
  [
    "TN, several tiles, sizes that divide them",
    (a, b) => dsl.matmul(dsl.transpose(a), b),
    [32, 64],
    [32, 32],
  ],
  [
    "batched NN over several tiles that divide the sizes",
    (a, b) => dsl.matmul(a, b),
    [3, 32, 16],
    [3, 16, 32],
  ],
  [
    "TN: Aᵀ·B over several tiles",
    (a, b) => dsl.matmul(dsl.transpose(a), b),
    [45, 38],
    [45, 21],
  ],
  [
    "TN read in place (Xᵀ·Y, rows and columns multiples of 4), several tiles, odd K",
    (a, b) => dsl.matmul(dsl.transpose(a), b),
    [45, 36],
    [45, 20],
  ],
  [
    "batched TN read in place, X computed, epilogue",
    (a, b) => dsl.tanh(dsl.matmul(dsl.transpose(dsl.sin(a), [0, 2, 1]), b)),
    [3, 37, 20],
    [3, 37, 8],
  ],
  [
    "NT read in place (odd column count), several tiles",
    (a, b) => dsl.matmul(a, dsl.transpose(b)),
    [37, 28],
    [41, 28],
  ],
  // Attention heads: [b, t, h·d] split into [b, h, t, d] (a strided view) and merged back.
  [
    "heads split read in place (NN, B strided), merged by the product's own store",
    (p, v) => {
      const heads = dsl.transpose(dsl.reshape(v, [2, 8, 3, 4]), [0, 2, 1, 3]);
      const merged = dsl.reshape(dsl.transpose(dsl.matmul(p, heads), [0, 2, 1, 3]), [2, 8, 12]);
      return dsl.matmul(merged, dsl.transpose(v, [0, 2, 1]));
    },
    [2, 3, 8, 8],
    [2, 8, 12],
  ],
  [
    "dO·Vᵀ with both heads split, read in place (NT, both strided)",
    (d, v) => {
      const heads = (x: Tensor) => dsl.transpose(dsl.reshape(x, [2, 8, 3, 4]), [0, 2, 1, 3]);
      return dsl.matmul(heads(d), dsl.transpose(heads(v), [0, 1, 3, 2]));
    },
    [2, 8, 12],
    [2, 8, 12],
  ],
  [
    "Pᵀ·dO with dO's heads split, read in place (TN, B strided)",
    (p, d) =>
      dsl.matmul(
        dsl.transpose(p, [0, 1, 3, 2]),
        dsl.transpose(dsl.reshape(d, [2, 8, 3, 4]), [0, 2, 1, 3]),
      ),
    [2, 3, 8, 8],
    [2, 8, 12],
  ],
  [
    "heads split and transposed, read in place as Xᵀ (A strided along its columns)",
    (x, y) => dsl.matmul(dsl.transpose(dsl.reshape(x, [2, 8, 3, 4]), [0, 2, 3, 1]), y),
    [2, 8, 12],
    [2, 3, 8, 8],
  ],
  [
    "NT over several tiles, prologue and epilogue",
    (a, b) => dsl.relu(dsl.matmul(dsl.mul(a, 2), dsl.transpose(b))),
    [33, 29],
    [40, 29],
  ],
];

for (const [name, f, sa, sb] of cases) {
  Deno.test(`matmul kernel matches the CPU reference: ${name}`, async () => {
    const a = randomArray(sa, 11), b = randomArray(sb, 12);
    const want = interpret(f, a, b) as HostArray;
    for (const [label, codegen] of configs) {
      const program = await jit(f, { codegen }).lower(a, b);
      const shared = program.kernels.some((k) => k.wgsl.includes("var<workgroup>"));
      // Thin outputs (under half a tile) keep the register-tile kernels; these span several tiles.
      if (codegen.matmulTilings && name.includes("several tiles")) {
        assert.ok(shared, `${name} (${label}) should use the shared-memory kernel`);
      }
      if (!codegen.matmulTilings) assert.ok(!shared, `${name} (${label}): no shared memory`);
      // On the CPU adapter's tiles a transposed operand is read where it lies: no layout copy.
      const copies = program.kernels.filter((k) =>
        k.kind === "elementwise" && k.ops.every((op) => op === "transpose" || op === "reshape")
      );
      if (name.includes("read in place") && label === "cpu tiles") {
        assert.equal(copies.length, 0, `${name}: ${copies.map((k) => k.name)}`);
      }
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

Deno.test("shared-memory matmul matches the reference on random shapes, layouts and tilings", async () => {
  const tilings = [
    SMALL_TILING,
    { tileM: 32, tileN: 16, tileK: 4, threadM: 8, threadN: 4 },
    { tileM: 16, tileN: 32, tileK: 16, threadM: 4, threadN: 8 },
  ];
  await checkAsyncProperty(
    fc.asyncProperty(
      fc.record({
        m: fc.integer({ min: 16, max: 48 }),
        n: fc.integer({ min: 16, max: 48 }),
        k: fc.integer({ min: 8, max: 40 }),
        batch: fc.integer({ min: 1, max: 3 }),
        ta: fc.boolean(),
        tb: fc.boolean(),
        tiling: fc.constantFrom(...tilings),
        seed: fc.integer({ min: 0, max: 1000 }),
      }),
      async ({ m, n, k, batch, ta, tb, tiling, seed }) => {
        const a = randomArray([batch, ...(ta ? [k, m] : [m, k])], seed);
        const b = randomArray([batch, ...(tb ? [n, k] : [k, n])], seed + 1);
        const swap = (x: Tensor) => dsl.transpose(x, [0, 2, 1]);
        const f = (x: Tensor, y: Tensor) => dsl.matmul(ta ? swap(x) : x, tb ? swap(y) : y);
        const jitted = jit(f, { codegen: { matmulTilings: [tiling] } });
        const program = await jitted.lower(a, b);
        assert.ok(program.kernels.some((k) => k.wgsl.includes("var<workgroup>")));
        const got = await jitted(a, b);
        assertClose(got as HostArray, interpret(f, a, b) as HostArray, { rtol: 1e-5, atol: 1e-5 });
      },
    ),
    { numRuns: 25 },
  );
});

Deno.test("shared-memory matmul over a grid folded past the per-dimension limit, windowed operands", async () => {
  // 9 × 5 workgroups with at most 4 per dimension: the kernel folds them into one flat index. A
  // 4 KiB binding limit binds A (13 KiB) and the output (41 KiB) as windows, read through views.
  const device = await gpu({ limits: { maxStorageBufferBindingSize: 4096 } });
  const f = (x: Tensor, y: Tensor) => dsl.matmul(x, dsl.transpose(y));
  const a = randomArray([140, 24], 5), b = randomArray([75, 24], 6);
  const codegen = {
    matmulTilings: [SMALL_TILING],
    maxWorkgroupsPerDimension: 4,
  };
  const program = await jit(f, { codegen, device }).lower(a, b);
  const kernel = program.kernels.find((k) => k.wgsl.includes("var<workgroup>"))!;
  assert.ok(kernel.wgsl.includes("flat_wg"));
  assert.ok(kernel.ranges?.some((r) => r !== undefined), "some operand is bound in windows");
  assertClose(
    await jit(f, { codegen, device })(a, b) as HostArray,
    interpret(f, a, b) as HostArray,
    {
      rtol: 1e-5,
      atol: 1e-5,
    },
  );
});

Deno.test("vec4 matmul reads operands over the binding limit in parts, each binding a range", async () => {
  // A 16 KiB binding limit (4,096 f32): a 300-row table is bound in windows. The vec4 kernel
  // instead runs one kernel per block of the output, each binding only the range it reads.
  const device = await gpu({ limits: { maxStorageBufferBindingSize: 16384 } });
  const codegen: Partial<CodegenOptions> = {
    matmulRowBlock: 32,
    matmulColumnGroups: 4,
    matmulNtTile: { rows: 16, cols: 16 },
  };
  const cases: [string, (x: Tensor, y: Tensor) => Tensor, number[], number[], boolean][] = [
    // A tied LM head: x·Wᵀ with W over the limit, in blocks of W's rows (output columns).
    ["x·Wᵀ, W in row blocks", (x, w) => dsl.matmul(x, dsl.transpose(w)), [40, 32], [300, 32], true],
    // Its backward: dy·W, split-K (loop budget 201) into slices of W's rows, one range each.
    ["dy·W split-K, W sliced", (x, w) => dsl.matmul(x, w), [40, 300], [300, 32], false],
    // A over the limit, read as vec4 in row blocks; the output is windowed too.
    ["A·W, A in row blocks", (x, w) => dsl.tanh(dsl.matmul(x, w)), [300, 32], [32, 16], true],
  ];
  for (const [name, f, sa, sb, parts] of cases) {
    const a = randomArray(sa, 21), b = randomArray(sb, 22);
    const opts = { codegen: { ...codegen, maxLoopIterations: 201 }, device };
    const program = await jit(f, opts).lower(a, b);
    const matmuls = program.kernels.filter((k) => k.ops.includes("matmul"));
    assert.ok(matmuls.every((k) => k.wgsl.includes("vec4<f32>")), `${name}: vec4 kernels`);
    assert.ok(
      matmuls.some((k) => k.ranges?.some((r) => r !== undefined && r[0] % 16384 !== 0)),
      `${name}: a range that is not a window`,
    );
    assert.equal(matmuls.some((k) => k.name.includes("_part")), parts, `${name}: parts`);
    // Parts and split-K slices count their own share of the product's work, once.
    const madds = program.kernels.reduce((n, k) => n + (k.multiplyAdds ?? 0), 0);
    assert.equal(
      madds,
      sa[0] * sa[1] * (sb[0] === sa[1] ? sb[1] : sb[0]),
      `${name}: multiply-adds`,
    );
    assertClose(await jit(f, opts)(a, b) as HostArray, interpret(f, a, b) as HostArray, {
      rtol: 1e-5,
      atol: 1e-5,
      label: name,
    });
  }
});

Deno.test("products of split attention heads match the reference at random sizes, strided or copied", async () => {
  // [b, t, h·d] viewed as heads [b, h, t, d] feeds each product of attention and its gradient;
  // sizes that are not multiples of 4 take the copy (or generic) paths, the others the strided
  // vec4 loads. Both settings must agree with the reference, and reading in place never adds
  // kernels.
  await checkAsyncProperty(
    fc.asyncProperty(
      fc.record({
        b: fc.integer({ min: 1, max: 2 }),
        t: fc.integer({ min: 1, max: 12 }),
        h: fc.integer({ min: 1, max: 3 }),
        d: fc.integer({ min: 1, max: 9 }),
        product: fc.constantFrom("P·V, merged", "dO·Vᵀ", "Pᵀ·dO", "Vᵀ·P"),
        seed: fc.integer({ min: 0, max: 1000 }),
      }),
      async ({ b, t, h, d, product, seed }) => {
        const heads = (x: Tensor) => dsl.transpose(dsl.reshape(x, [b, t, h, d]), [0, 2, 1, 3]);
        const swap = (x: Tensor) => dsl.transpose(x, [0, 1, 3, 2]);
        const byProduct: Record<string, (p: Tensor, x: Tensor, y: Tensor) => Tensor> = {
          "P·V, merged": (p, x) =>
            dsl.reshape(dsl.transpose(dsl.matmul(p, heads(x)), [0, 2, 1, 3]), [b * t, h * d]),
          "dO·Vᵀ": (_p, x, y) => dsl.matmul(heads(x), swap(heads(y))),
          "Pᵀ·dO": (p, x) => dsl.matmul(swap(p), heads(x)),
          "Vᵀ·P": (p, x) => dsl.matmul(swap(heads(x)), p),
        };
        // Merged heads feed one more product, as attention's output projection does.
        const f = (p: Tensor, x: Tensor, y: Tensor) => {
          const out = byProduct[product](p, x, y);
          return product === "P·V, merged" ? dsl.matmul(out, dsl.reshape(y, [h * d, b * t])) : out;
        };
        const args = [
          randomArray([b, h, t, t], seed),
          randomArray([b, t, h * d], seed + 1),
          randomArray([b, t, h * d], seed + 2),
        ];
        const want = interpret(f, ...args) as HostArray;
        const counts: number[] = [];
        for (const strided of [true, false]) {
          const jitted = jit(f, { codegen: { matmulStridedOperands: strided } });
          counts.push((await jitted.lower(...args)).kernels.length);
          const got = (await jitted(...args)) as HostArray;
          assertClose(got, want, {
            rtol: 1e-5,
            atol: 1e-5,
            label: `${product}, strided ${strided}`,
          });
        }
        assert.ok(counts[0] <= counts[1], `strided ${counts[0]} kernels > copied ${counts[1]}`);
      },
    ),
    { numRuns: 30 },
  );
});

Deno.test("sums of products in one kernel (matmulSumProducts) match the reference at random sizes", async () => {
  // Σ x_i·W_i joined by adds, each product read in its own layout (NN, NT, TN), then an epilogue;
  // and a product joined through a non-add (2·(x·W) + y·V), which must not be summed. Sizes
  // that are not multiples of 4, and mixed layouts, take the other kernels; all must agree.
  const layouts = ["NN", "NT", "TN"] as const;
  let sums = 0, tiledSums = 0;
  await checkAsyncProperty(
    fc.asyncProperty(
      fc.record({
        m: fc.integer({ min: 1, max: 20 }),
        n: fc.integer({ min: 1, max: 20 }),
        ks: fc.array(fc.integer({ min: 1, max: 24 }), { minLength: 2, maxLength: 3 }),
        // Every size a multiple of 4 most of the time: the vec4 kernels' summed paths (half of the
        // time, they came up in only 1 or 2 of 20 programs under some seeds; now 8–12 of 40).
        aligned: fc.oneof({ arbitrary: fc.constant(true), weight: 3 }, {
          arbitrary: fc.constant(false),
          weight: 1,
        }),
        layout: fc.oneof(
          fc.constant(["NN", "NN", "NN"] as (typeof layouts[number])[]),
          fc.array(fc.constantFrom(...layouts), { minLength: 3, maxLength: 3 }),
        ),
        scaled: fc.boolean(),
        seed: fc.integer({ min: 0, max: 1000 }),
      }),
      async ({ m: m0, n: n0, ks: ks0, aligned, layout, scaled, seed }) => {
        const up = (d: number) => (aligned ? 4 * Math.ceil(d / 4) : d);
        const [m, n, ks] = [up(m0), up(n0), ks0.map(up)];
        const args = ks.flatMap((k, i) => {
          const l = layout[i];
          return [
            randomArray(l === "TN" ? [k, m] : [m, k], seed + 2 * i),
            randomArray(l === "NT" ? [n, k] : [k, n], seed + 2 * i + 1),
          ];
        });
        const product = (x: Tensor, w: Tensor, i: number) =>
          dsl.matmul(
            layout[i] === "TN" ? dsl.transpose(x) : x,
            layout[i] === "NT" ? dsl.transpose(w) : w,
          );
        const f = (...ts: Tensor[]) => {
          const terms = ks.map((_, i) => product(ts[2 * i], ts[2 * i + 1], i));
          const first = scaled ? dsl.mul(terms[0], 2) : terms[0];
          return dsl.tanh(terms.slice(1).reduce((s, t) => dsl.add(s, t), first));
        };
        const want = interpret(f, ...args) as HostArray;
        const program = await jit(f, { codegen: { matmulSumProducts: true } }).lower(...args);
        const summed = program.kernels.filter((k) =>
          k.ops.filter((op) => op === "matmul").length > 1
        );
        if (summed.some((k) => k.wgsl.includes("array<vec4<f32>>"))) sums++;
        // The shared-memory kernel sums them too, one contraction after another.
        const tiled = await jit(f, {
          codegen: { matmulSumProducts: true, matmulTilings: [SMALL_TILING] },
        }).lower(...args);
        if (
          tiled.kernels.some((k) =>
            k.wgsl.includes("var<workgroup>") && k.ops.filter((op) => op === "matmul").length > 1
          )
        ) tiledSums++;
        for (const [label, codegen] of configs) {
          const options = { codegen: { ...codegen, matmulSumProducts: true } };
          const got = (await jit(f, options)(...args)) as HostArray;
          assertClose(got, want, { rtol: 1e-5, atol: 1e-5, label: `${layout} ${ks} (${label})` });
        }
      },
    ),
    { numRuns: 40 },
  );
  assert.ok(sums >= 4, `only ${sums} programs summed products in one vec4 kernel`);
  assert.ok(tiledSums >= 2, `only ${tiledSums} programs summed products in one tiled kernel`);
});

Deno.test("the shared-memory kernel sums products in one dispatch: NN, NT and TN, whole tiles or not", async () => {
  // x·W + yᵀ·V + z·Uᵀ, then tanh: each product loads its own tiles, one contraction after
  // another, into the same accumulators. 32×48 with contractions 24, 16, 40 divides the 16×16×8
  // tiles (vec4 tile loads); 30×45 with 21, 13, 37 does not (bounded loads).
  for (const [m, n, ks] of [[32, 48, [24, 16, 40]], [30, 45, [21, 13, 37]]] as const) {
    const args = [
      randomArray([m, ks[0]], 1),
      randomArray([ks[0], n], 2),
      randomArray([ks[1], m], 3),
      randomArray([ks[1], n], 4),
      randomArray([m, ks[2]], 5),
      randomArray([n, ks[2]], 6),
    ];
    const f = (x: Tensor, w: Tensor, y: Tensor, v: Tensor, z: Tensor, u: Tensor) =>
      dsl.tanh(
        dsl.add(
          dsl.add(dsl.matmul(x, w), dsl.matmul(dsl.transpose(y), v)),
          dsl.matmul(z, dsl.transpose(u)),
        ),
      );
    const codegen = {
      matmulSumProducts: true,
      matmulTilings: [SMALL_TILING],
      matmulNtInPlace: true,
      matmulTnInPlace: true,
    };
    const program = await jit(f, { codegen }).lower(...args);
    // (yᵀ is copied first where its rows are not whole vec4s: the fusion's rule, not the tile's.)
    const kernel = program.kernels.find((k) => k.ops.filter((op) => op === "matmul").length === 3);
    assert.ok(kernel, `${m}×${n}: the three products in one kernel`);
    assert.ok(kernel.wgsl.includes("var<workgroup>"), `${m}×${n}: the shared-memory kernel`);
    assertClose(
      await jit(f, { codegen })(...args) as HostArray,
      interpret(f, ...args) as HostArray,
      {
        rtol: 1e-5,
        atol: 1e-5,
        label: `${m}×${n}`,
      },
    );
  }
});
