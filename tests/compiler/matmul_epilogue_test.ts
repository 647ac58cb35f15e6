/**
 * The size of matmul kernels (issue 15, compile time): a fused epilogue is emitted once (in a
 * loop over the register tile's rows), or once per tile row with that loop off, never once per
 * tile element; the unrolled k loop stays within `matmulMaxUnroll`, and within `matmulCompactUnroll`
 * for products of fewer than `matmulCompactWork` multiply-adds. Mesa's llvmpipe compiles each kernel at its first dispatch in time that
 * grows with its code, so these bounds keep the first training step short.
 */

import assert from "node:assert/strict";
import * as dsl from "../../mod.ts";
import { type CodegenOptions, lower, trace } from "../../mod.ts";
import type { Tensor } from "../../mod.ts";
import { CPU_CODEGEN } from "../../runtime/jit.ts";
import { DEFAULT_CODEGEN } from "../../compiler/lower.ts";

const spec = (...shape: number[]) => ({ shape, dtype: "f32" as const });

/** The tunables a CPU adapter gets. */
const cpu: Partial<CodegenOptions> = CPU_CODEGEN;

/** The matmul kernel of `f` on operands of these shapes, under `codegen`. */
function matmulKernel(
  f: (a: Tensor, b: Tensor) => Tensor,
  a: number[],
  b: number[],
  codegen: Partial<CodegenOptions>,
): string {
  const program = lower(trace(f, spec(...a), spec(...b)), { maxStorageBuffers: 16, ...codegen });
  const kernels = program.kernels.filter((k) => k.kind === "matmul");
  assert.equal(kernels.length, 1);
  return kernels[0].wgsl;
}

/** Copies of the epilogue `tanh(· + 0.5)` in a kernel (calls of its helper, not its definition). */
const epilogueCopies = (wgsl: string) => wgsl.match(/= tanh_safe\(/g)?.length ?? 0;
/** The tile's rows: TM in the kernel's `let row0 = … * TM`. */
const tileRows = (wgsl: string) => Number(/let row0 = .*\* (\d+)i;/.exec(wgsl)![1]);

const epilogue = (x: Tensor) => dsl.tanh(dsl.add(x, 0.5));
const layouts: [string, (a: Tensor, b: Tensor) => Tensor, number[], number[]][] = [
  ["NN, vec4 A", (a, b) => epilogue(dsl.matmul(a, b)), [256, 32], [32, 64]],
  ["NN, scalar A", (a, b) => epilogue(dsl.matmul(dsl.transpose(a), b)), [32, 256], [32, 64]],
  ["NT", (a, b) => epilogue(dsl.matmul(a, dsl.transpose(b))), [256, 32], [64, 32]],
  ["generic", (a, b) => epilogue(dsl.matmul(a, dsl.transpose(b))), [64, 30], [40, 30]],
];

for (const [name, f, a, b] of layouts) {
  Deno.test(`matmul epilogue is emitted once, or once per tile row, not per element: ${name}`, () => {
    const full = { ...cpu, matmulCompactWork: 0 };
    const narrow = { ...full, matmulColumnGroups: 1, matmulNtTile: { rows: 16, cols: 4 } };
    const codegens = name === "generic" ? [{ vectorizedMatmul: false }] : [narrow, full];
    for (const rowLoop of [true, false]) {
      const copies = codegens.map((codegen) => {
        const wgsl = matmulKernel(f, a, b, { ...codegen, matmulEpilogueRowLoop: rowLoop });
        const rows = tileRows(wgsl);
        assert.ok(rows > 1, `${name}: a tile of several rows`);
        assert.equal(epilogueCopies(wgsl), rowLoop ? 1 : rows, `${name}: ${rows} tile rows`);
        return rowLoop ? 1 : rows;
      });
      // Four times the tile's columns, the same epilogue code.
      assert.equal(new Set(copies).size, 1, `${name}: copies ${copies}`);
    }
  });
}

Deno.test("shared-memory matmul emits its epilogue once, or once per register-block row", () => {
  const tiling = { tileM: 32, tileN: 32, tileK: 8, threadM: 4, threadN: 8 };
  for (const rowLoop of [true, false]) {
    const wgsl = matmulKernel(
      (a, b) => epilogue(dsl.matmul(a, b)),
      [64, 32],
      [32, 64],
      { matmulTilings: [tiling], matmulEpilogueRowLoop: rowLoop },
    );
    assert.ok(wgsl.includes("var<workgroup> tileA"));
    assert.equal(epilogueCopies(wgsl), rowLoop ? 1 : tiling.threadM);
  }
});

Deno.test("the vectorised matmul's unrolled k loop stays within matmulMaxUnroll", () => {
  const nn = (a: Tensor, b: Tensor) => dsl.matmul(a, b);
  // Each vec4 FMA line of the NN kernel is 4 multiply-adds.
  const fmaLines = (wgsl: string) => wgsl.match(/= fma\(/g)?.length ?? 0;
  for (const maxUnroll of [256, 1024]) {
    const wgsl = matmulKernel(nn, [1024, 64], [64, 256], { ...cpu, matmulMaxUnroll: maxUnroll });
    assert.ok(4 * fmaLines(wgsl) <= maxUnroll, `${fmaLines(wgsl)} FMA lines`);
    assert.ok(4 * fmaLines(wgsl) > maxUnroll / 2, "the tile is as large as the cap allows");
  }
  // The default keeps a CPU adapter's 32-row block at 16 rows × 16 columns.
  assert.equal(tileRows(matmulKernel(nn, [1024, 64], [64, 256], cpu)), 16);
});

Deno.test("products under matmulCompactWork multiply-adds get the matmulCompactUnroll budget", () => {
  const nn = (a: Tensor, b: Tensor) => dsl.matmul(a, b);
  const fmaLines = (wgsl: string) => wgsl.match(/= fma\(/g)?.length ?? 0;
  const work = 1024 * 64 * 256;
  const at = (compact: number) =>
    fmaLines(matmulKernel(nn, [1024, 64], [64, 256], { ...cpu, matmulCompactWork: compact }));
  assert.equal(at(work), at(0), "a product of exactly the bound keeps the full tile");
  assert.ok(4 * at(work + 1) <= DEFAULT_CODEGEN.matmulCompactUnroll, `${at(work + 1)} FMA lines`);
  assert.ok(at(work + 1) < at(0));
  // The CPU adapter's bound: the shipped model's 1024×144×144 products keep the full tile, its
  // rank-4 projections and merges do not.
  assert.ok(1024 * 144 * 144 >= cpu.matmulCompactWork! && 144 * 384 * 32 < cpu.matmulCompactWork!);
});
