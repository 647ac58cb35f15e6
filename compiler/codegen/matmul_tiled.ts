/**
 * Shared-memory tiled matmul for discrete GPUs. A workgroup owns a tileM × tileN block of the
 * output; per step of tileK along the contraction its invocations load the A and B tiles into
 * workgroup memory together (reads coalesced along whichever axis of the operand is contiguous,
 * so NN, NT and TN read their buffers as stored, no layout copies), then each invocation runs a
 * threadM × threadN register block of FMAs from vec4 reads of the tiles. Operands are read
 * through their views (fused prologues, windows, transposes), so any matmul plan can use it; the
 * epilogue (fused elementwise consumers) runs on each accumulator before its store, emitted once
 * per register-block row (tile_epilogue.ts).
 *
 * The register-tile kernels in kernels.ts stay the choice on CPU adapters, where workgroup
 * memory is ordinary memory and barriers cost more than they save (perf-notes.md).
 */

import { isFloat, type Node } from "../../dsl/mod.ts";
import type { KernelPlan } from "../fusion.ts";
import {
  block,
  bufferOperand,
  builderFor,
  type CodegenOptions,
  finish,
  FLAT_WORKGROUP,
  type GeneratedKernel,
  type KernelContext,
  matmulDims,
  spreadWorkgroups,
} from "./kernels.ts";
import { storeTile, tileEpilogueIterations } from "./tile_epilogue.ts";

/** The block sizes of the shared-memory matmul. */
export interface MatmulTiling {
  /** Output rows per workgroup. */
  tileM: number;
  /** Output columns per workgroup. */
  tileN: number;
  /** Contraction step loaded into workgroup memory per iteration. */
  tileK: number;
  /** Output rows per invocation (a multiple of 4). */
  threadM: number;
  /** Output columns per invocation (a multiple of 4). */
  threadN: number;
}

/** Workgroup memory (bytes) and invocations a tiling needs. */
export function tilingCost(t: MatmulTiling): { bytes: number; invocations: number } {
  return {
    bytes: 4 * t.tileK * (t.tileM + 4 + t.tileN + 4),
    invocations: (t.tileM / t.threadM) * (t.tileN / t.threadN),
  };
}

/** Why a tiling is invalid for a device, or undefined when it is valid. */
export function tilingProblem(
  t: MatmulTiling,
  limits: { maxComputeWorkgroupStorageSize: number; maxComputeInvocationsPerWorkgroup: number },
): string | undefined {
  const { bytes, invocations } = tilingCost(t);
  if (t.threadM % 4 || t.threadN % 4 || t.tileM % t.threadM || t.tileN % t.threadN) {
    return "thread blocks must be multiples of 4 that divide the tile";
  }
  if ((t.tileM * t.tileK) % invocations || (t.tileN * t.tileK) % invocations) {
    return "each invocation must load the same number of tile elements";
  }
  if (bytes > limits.maxComputeWorkgroupStorageSize) {
    return `needs ${bytes} bytes of workgroup memory (limit ${limits.maxComputeWorkgroupStorageSize})`;
  }
  if (invocations > limits.maxComputeInvocationsPerWorkgroup) {
    return `needs ${invocations} invocations per workgroup (limit ${limits.maxComputeInvocationsPerWorkgroup})`;
  }
  return undefined;
}

/**
 * The tiling for an M×N output, or undefined when the output is too thin for a tiled kernel
 * (the adapter products of rank r: the register-tile kernels serve those better). Among the
 * candidates (largest first), the first that still gives `minWorkgroups` workgroups wins, so
 * small matrices get small tiles and enough workgroups to fill the device.
 */
export function chooseTiling(
  M: number,
  N: number,
  batch: number,
  opts: CodegenOptions,
): MatmulTiling | undefined {
  const candidates = opts.matmulTilings;
  if (!candidates.length) return undefined;
  const fits = candidates.filter((t) => M >= t.tileM / 2 && N >= t.tileN / 2);
  if (!fits.length) return undefined;
  const groups = (t: MatmulTiling) => Math.ceil(M / t.tileM) * Math.ceil(N / t.tileN) * batch;
  return fits.find((t) => groups(t) >= opts.matmulMinWorkgroups) ?? fits[fits.length - 1];
}

/** One operand tile loaded cooperatively into workgroup memory. */
interface TileLoad {
  operand: Node;
  tile: "tileA" | "tileB";
  /** Rows (A) or columns (B) of the output the tile covers. */
  extent: number;
  stride: number;
  at: (outer: string, k: string) => string[];
  outer0: string;
  outerSize: number;
  kMajor: boolean;
  vector: boolean;
  buffer?: Node;
}

export function tiledMatmul(
  plan: KernelPlan,
  ctx: KernelContext,
  opts: CodegenOptions,
): GeneratedKernel | undefined {
  const mm = plan.anchor!;
  // The anchor, then each product summed into it (`KernelPlan.terms`: the same M × N output,
  // each with its own operands, layouts and contraction), into the same accumulators.
  const products = [mm, ...(plan.terms ?? [])];
  // Each co-product (`KernelPlan.coProducts`) into accumulators of its own.
  const coProducts = plan.coProducts ?? [];
  const all = [...products, ...coProducts];
  if (!isFloat(mm.dtype)) return undefined;
  const { M, N, batchShape, batch } = matmulDims(mm);
  const tiling = chooseTiling(M, N, batch, opts);
  if (!tiling || all.some((p) => matmulDims(p).K < tiling.tileK / 2)) return undefined;
  const { tileM: BM, tileN: BN, tileK: BK, threadM: TM, threadN: TN } = tiling;
  const threadsX = BN / TN, threadsY = BM / TM, threads = threadsX * threadsY;
  // Rows of the tiles in workgroup memory, padded by one vec4 against bank conflicts.
  const strideA = BM + 4, strideB = BN + 4;
  const b = builderFor(plan, ctx);
  b.moduleDecls.push(
    `var<workgroup> tileA: array<vec4<f32>, ${(BK * strideA) / 4}>;`,
    `var<workgroup> tileB: array<vec4<f32>, ${(BK * strideB) / 4}>;`,
  );
  const groupsX = Math.ceil(N / BN), groupsY = Math.ceil(M / BM);
  const total = groupsX * groupsY * batch;
  const spread = [groupsX, groupsY, batch].some((d) => d > opts.maxWorkgroupsPerDimension);
  const dispatch: [number, number, number] = spread
    ? spreadWorkgroups(total, opts.maxWorkgroupsPerDimension)
    : [groupsX, groupsY, batch];
  // Workgroup coordinates come from uniform builtins only, so the barriers stay in uniform
  // control flow (WGSL's uniformity analysis) and a whole workgroup returns or none.
  if (spread) {
    b.line(`let flat_wg = ${FLAT_WORKGROUP};`);
    b.line(`if (flat_wg >= ${total}u) { return; }`);
    b.line(
      `let wg = vec3<i32>(i32(flat_wg % ${groupsX}u), i32((flat_wg / ${groupsX}u) % ${groupsY}u), ` +
        `i32(flat_wg / ${groupsX * groupsY}u));`,
    );
  } else {
    b.line("let wg = vec3<i32>(i32(wid.x), i32(wid.y), i32(wid.z));");
  }
  b.line(`let lin = i32(lid.y * ${threadsX}u + lid.x);`);
  b.line(`let row0 = wg.y * ${BM}i;`);
  b.line(`let col0 = wg.x * ${BN}i;`);
  const bIndex = b.unravel("wg.z", batchShape);
  const tileOf = (prefix: string) =>
    Array.from(
      { length: TM },
      (_, i) => Array.from({ length: TN }, (_, j) => `${prefix}${i}_${j}`),
    );
  const accs = tileOf("c");
  const coAccs = coProducts.map((_, c) => tileOf(`co${c + 1}_`));
  [accs, ...coAccs].flat(2).forEach((c) => b.line(`var ${c} = 0.0f;`));

  // Cooperative tile loads. `kMajor`: the operand's contraction axis is its contiguous one, so
  // consecutive invocations take consecutive k. Where every size divides its tile, no load needs
  // a bound; where the operand is also a buffer bound whole, each load is one vec4.
  const accumulate = (product: Node, accs: readonly (readonly string[])[]) => {
    const [a, bm] = product.inputs;
    const { K } = matmulDims(product);
    const exact = M % BM === 0 && N % BN === 0 && K % BK === 0;
    const A = bufferOperand(a, ctx), B = bufferOperand(bm, ctx);
    const vectorA = exact && A?.offset === 0 && b.isWhole(A.node) &&
      plan.roots.every((r) => b.isWhole(r));
    const vectorB = exact && B?.offset === 0 && b.isWhole(B.node) &&
      plan.roots.every((r) => b.isWhole(r));
    if (vectorA) b.vec4Slots.add(ctx.slotOf(A!.node));
    if (vectorB) b.vec4Slots.add(ctx.slotOf(B!.node));
    const loadTile = (t: TileLoad) => {
      if (t.vector) return loadTileVec4(t);
      for (let s = 0; s < (t.extent * BK) / threads; s++) {
        const e = `(lin + ${s * threads}i)`;
        const [o, kk] = t.kMajor
          ? [b.bind(`${e} / ${BK}i`), b.bind(`${e} % ${BK}i`)]
          : [b.bind(`${e} % ${t.extent}i`), b.bind(`${e} / ${t.extent}i`)];
        const go = b.bind(`${t.outer0} + ${o}`), gk = b.bind(`k0 + ${kk}`);
        const slot = b.bind(`${kk} * ${t.stride}i + ${o}`);
        if (exact) {
          b.line(`${t.tile}[${slot} / 4i][${slot} % 4i] = ${b.valueAt(t.operand, t.at(go, gk))};`);
          continue;
        }
        const inside = `${go} < ${t.outerSize}i && ${gk} < ${K}i`;
        const v = b.valueAt(
          t.operand,
          t.at(b.bind(`min(${go}, ${t.outerSize - 1}i)`), b.bind(`min(${gk}, ${K - 1}i)`)),
        );
        b.line(`${t.tile}[${slot} / 4i][${slot} % 4i] = select(0.0f, ${v}, ${inside});`);
      }
    };
    // One vec4 per load from the buffer itself (row-major, the contiguous axis a multiple of 4).
    const loadTileVec4 = (t: TileLoad) => {
      const name = b.bufferName(t.buffer!);
      const units = (t.extent * BK) / 4;
      for (let s = 0; s < Math.ceil(units / threads); s++) {
        const e = b.bind(`(lin + ${s * threads}i)`);
        const guard = units % threads !== 0 && (s + 1) * threads > units;
        if (guard) b.line(`if (${e} < ${units}i) {`);
        const plane = t.tile === "tileA" ? M * K : K * N;
        if (t.kMajor) {
          // The operand's rows run along k: a vec4 holds 4 consecutive k of one row (or column).
          const o = b.bind(`${e} / ${BK / 4}i`), kq = b.bind(`${e} % ${BK / 4}i`);
          const v = b.bind(
            b.vec4Read(
              t.buffer!,
              name,
              `(${batchFlat} * ${plane}i + (${t.outer0} + ${o}) * ${K}i + k0) / 4i + ${kq}`,
            ),
          );
          ["x", "y", "z", "w"].forEach((c, q) => {
            const slot = b.bind(`(${kq} * 4i + ${q}i) * ${t.stride}i + ${o}`);
            b.line(`${t.tile}[${slot} / 4i][${slot} % 4i] = ${v}.${c};`);
          });
        } else {
          // The operand's rows run along the output axis: a vec4 holds 4 consecutive rows/columns.
          const rowLen = t.tile === "tileA" ? M : N;
          const o4 = b.bind(`${e} % ${t.extent / 4}i`), kk = b.bind(`${e} / ${t.extent / 4}i`);
          const at =
            `(${batchFlat} * ${plane}i + (k0 + ${kk}) * ${rowLen}i + ${t.outer0}) / 4i + ${o4}`;
          b.line(
            `${t.tile}[${kk} * ${t.stride / 4}i + ${o4}] = ${b.vec4Read(t.buffer!, name, at)};`,
          );
        }
        if (guard) b.line("}");
      }
    };
    block(b, `for (var k0 = 0i; k0 < ${K}i; k0 += ${BK}i) {`, () => {
      loadTile({
        operand: a,
        tile: "tileA",
        extent: BM,
        stride: strideA,
        at: (m, k) => [...bIndex, m, k],
        outer0: "row0",
        outerSize: M,
        kMajor: !A?.transposed,
        vector: vectorA,
        buffer: A?.node,
      });
      loadTile({
        operand: bm,
        tile: "tileB",
        extent: BN,
        stride: strideB,
        at: (n, k) => [...bIndex, k, n],
        outer0: "col0",
        outerSize: N,
        kMajor: !!B?.transposed,
        vector: vectorB,
        buffer: B?.node,
      });
      b.line("workgroupBarrier();");
      block(b, `for (var kk = 0i; kk < ${BK}i; kk++) {`, () => {
        // Invocation (x, y) owns rows y·TM… and the column vec4s x, x + BN/TN, …: neighbouring
        // invocations read neighbouring vec4s of tileB (no bank conflicts), and share tileA's.
        const av = Array.from(
          { length: TM / 4 },
          (_, q) => b.bind(`tileA[kk * ${strideA / 4}i + i32(lid.y) * ${TM / 4}i + ${q}i]`),
        );
        const bv = Array.from(
          { length: TN / 4 },
          (_, q) => b.bind(`tileB[kk * ${strideB / 4}i + i32(lid.x) + ${q * threadsX}i]`),
        );
        const comp = ["x", "y", "z", "w"];
        accs.forEach((row, i) =>
          row.forEach((c, j) =>
            b.line(
              `${c} = fma(${av[i >> 2]}.${comp[i & 3]}, ${bv[j >> 2]}.${comp[j & 3]}, ${c});`,
            )
          )
        );
      });
      b.line("workgroupBarrier();");
    });
  };
  const batchFlat = b.bind(b.flatten(bIndex, batchShape));
  products.forEach((p) => accumulate(p, accs));
  coProducts.forEach((p, c) => accumulate(p, coAccs[c]));
  b.line(`let r0 = row0 + i32(lid.y) * ${TM}i;`);
  b.line(`let q0 = col0 + i32(lid.x) * 4i;`);
  // Column j of the register block is column (j mod 4) of the invocation's vec4 number j / 4.
  storeTile(b, {
    mm,
    terms: plan.terms ?? [],
    coProducts: coProducts.map((co, c) => ({ mm: co, accumulators: coAccs[c] })),
    roots: plan.roots,
    batchIndex: bIndex,
    accumulators: accs,
    width: 1,
    element: "f32",
    firstRow: "r0",
    col: (j) => `(q0 + (${j} / 4i) * ${4 * threadsX}i + ${j} % 4i)`,
    consecutiveCols: false,
    rowEnd: M,
    colEnd: N,
    rowLoop: opts.matmulEpilogueRowLoop,
  });
  const loops = all.reduce((n, p) => n + Math.ceil(matmulDims(p).K / BK) * (BK + 1), 0) +
    tileEpilogueIterations(TM, TN);
  return finish(b, plan, ctx, b.closeScope(), dispatch, [threadsX, threadsY, 1], loops);
}
