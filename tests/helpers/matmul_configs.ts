/** Code-generator settings that together reach every matmul kernel variant. */

import type { CodegenOptions } from "../../mod.ts";

/** A shared-memory tiling small enough that the test shapes span several tiles. */
export const SMALL_TILING = { tileM: 16, tileN: 16, tileK: 8, threadM: 4, threadN: 4 };

/** The tunables a CPU adapter gets, those a GPU gets, the generic kernel alone, shared memory. */
export const MATMUL_CONFIGS: [string, Partial<CodegenOptions>][] = [
  ["cpu tiles", {
    matmulRowBlock: 32,
    matmulColumnGroups: 8,
    matmulNtTile: { rows: 16, cols: 16 },
    matmulNtInPlace: true,
  }],
  // The same tiles over a 2-D grid of workgroups (the CPU adapter numbers tiles along x).
  ["cpu tiles, 2-D grid", {
    matmulRowBlock: 32,
    matmulColumnGroups: 8,
    matmulNtTile: { rows: 16, cols: 16 },
    matmulFlatLanes: false,
  }],
  // Every product gets the compact tile, and tile rows are stored unrolled, not in a loop.
  ["cpu tiles, compact, rows unrolled", {
    matmulRowBlock: 32,
    matmulColumnGroups: 8,
    matmulNtTile: { rows: 16, cols: 16 },
    matmulCompactWork: Infinity,
    matmulEpilogueRowLoop: false,
  }],
  ["gpu tiles", { matmulRowBlock: 4, matmulColumnGroups: 1, matmulWorkgroup: [16, 16] }],
  ["generic", { vectorizedMatmul: false }],
  // Shared-memory tiles (the discrete-GPU kernel), small enough that these shapes span several.
  ["shared 16×16×8", { matmulTilings: [SMALL_TILING] }],
  [
    "shared 32×16×4, 8×4 per invocation",
    { matmulTilings: [{ tileM: 32, tileN: 16, tileK: 4, threadM: 8, threadN: 4 }] },
  ],
];
