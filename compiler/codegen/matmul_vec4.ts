/**
 * The register-tile matmul that CPU adapters run fastest (perf-notes.md: large per-invocation
 * tiles, vec4 loads, no workgroup memory), used where operand layouts allow vec4 loads:
 * - NN (B row-major, N % 4 = 0): acc[r] += A[r,k] · B[k, c..c+4] (vec4 FMA; A through any view);
 * - NT (B = Wᵀ, K % 4 = 0, A row-major): acc[r][j] += dot(A[r, k..k+4], W[c+j, k..k+4]);
 * - TN (A = Xᵀ, B row-major, M % 4 = 0, N % 4 = 0): acc[r..r+4] += X[k, r..r+4] ⊗ B[k, c..c+4], an
 *   outer product of two vec4 rows per k (a weight gradient reads its activations in place).
 *
 * An operand read as vec4 indexes its buffer directly, so it must be one binding. One larger than
 * a binding may be (a vocabulary-sized embedding table under a tied LM head) is read in parts:
 * one kernel per block of output columns (NT, the table's rows) or rows (A), each binding only
 * the range of the buffer its block reads. Discrete GPUs get the shared-memory kernel
 * (matmul_tiled.ts) where it applies.
 */

import { isFloat, type Node } from "../../dsl/mod.ts";
import type { KernelPlan } from "../fusion.ts";
import { slotWindows } from "./builder.ts";
import {
  block,
  builderFor,
  type CodegenOptions,
  finish,
  type GeneratedKernel,
  type InPlaceOperand,
  inPlaceOperand,
  type KernelContext,
  matmulDims,
  tileGrid,
} from "./kernels.ts";
import { storeTile, tileEpilogueIterations } from "./tile_epilogue.ts";

/** Most kernels one matmul is split into before the generic kernel is preferred. */
const MAX_PARTS = 64;

/** Output rows [m0, m1) × columns [n0, n1) of one kernel of a matmul. */
interface Part {
  m0: number;
  m1: number;
  n0: number;
  n1: number;
}

type Operand = InPlaceOperand;

/** Splits [0, total) into blocks of at most `size` (a multiple of `step` where size allows). */
function blocks(total: number, size: number, step: number): [number, number][] {
  const s = size >= total ? total : Math.max(1, size >= step ? size - (size % step) : size);
  const out: [number, number][] = [];
  for (let i = 0; i < total; i += s) out.push([i, Math.min(total, i + s)]);
  return out;
}

/** The operand nodes between a matmul input and its buffer (views read as index arithmetic). */
function operandChain(x: Node, buffer: Node): Set<Node> {
  const chain = new Set<Node>();
  for (let n = x; n !== buffer; n = n.inputs[0]) chain.add(n);
  return chain;
}

/** The vec4 holding an operand's last element, counted from its first element's. */
function lastQuad(o: Operand, x: Node): number {
  if (o.standard) return x.size / 4 - 1;
  return Math.floor(x.shape.reduce((last, d, i) => last + (d - 1) * o.strides[i], 0) / 4);
}

/** The vec4 register-tile kernel(s) of a matmul plan, or undefined where layouts do not allow. */
export function vec4Matmul(
  plan: KernelPlan,
  ctx: KernelContext,
  opts: CodegenOptions,
): GeneratedKernel[] | undefined {
  const mm = plan.anchor!;
  if (!isFloat(mm.dtype) || !opts.vectorizedMatmul) return undefined;
  const [a, bOp] = mm.inputs;
  const { M, N, K, batch } = matmulDims(mm);
  const B = inPlaceOperand(bOp, ctx, opts.matmulStridedOperands);
  const A = inPlaceOperand(a, ctx, opts.matmulStridedOperands);
  if (!B) return undefined;
  const nn = !B.transposed && N % 4 === 0 && B.offset % 4 === 0;
  const nt = B.transposed && K % 4 === 0 && A !== undefined && !A.transposed &&
    A.offset % 4 === 0 && B.offset % 4 === 0;
  if (!nn && !nt) return undefined;
  const aVec = A !== undefined && !A.transposed && K % 4 === 0 && A.offset % 4 === 0;
  const layout = ctx.layout;
  const whole = (n: Node) => slotWindows(layout, ctx.slotOf(n)) === 1;
  // TN reads Xᵀ's rows as vec4: X must be one binding.
  const aT = nn && A !== undefined && A.transposed && M % 4 === 0 && A.offset % 4 === 0 &&
    whole(A.node);
  // A range binding starts at an aligned offset at or below the first element it must reach.
  const span = layout ? layout.windowElements - layout.alignElements + 1 : Infinity;
  const ranged = [B, ...(aVec ? [A!] : [])].filter((o) => !whole(o.node));
  // Strided views are read through whole bindings only.
  if (ranged.some((o) => !o.standard)) return undefined;
  // A ranged buffer is bound once, so nothing else in the kernel may read it elsewhere.
  for (const o of ranged) {
    const chain = operandChain(o === B ? bOp : a, o.node);
    const other = plan.fused.some((n) => !chain.has(n) && n !== mm && n.inputs.includes(o.node));
    if (other || (A && B.node === A.node)) return undefined;
  }
  let rowBlocks: [number, number][] = [[0, M]], colBlocks: [number, number][] = [[0, N]];
  if (!whole(B.node)) {
    if (nn ? batch * K * N > span : batch !== 1) return undefined;
    if (nt) colBlocks = blocks(N, Math.floor(span / K), 4);
  }
  if (aVec && !whole(A!.node)) {
    if (batch !== 1) return undefined;
    rowBlocks = blocks(M, Math.floor(span / K), opts.matmulRowBlock);
  }
  if (rowBlocks.length * colBlocks.length > MAX_PARTS) return undefined;
  const parts = rowBlocks.flatMap(([m0, m1]) => colBlocks.map(([n0, n1]) => ({ m0, m1, n0, n1 })));
  // Products summed into this one (`KernelPlan.terms`) accumulate into the same tile, and
  // co-products (`KernelPlan.coProducts`) into tiles of their own laid out the same way, so each
  // must be read the same way, through whole bindings.
  const products: Product[] = [{ mm, A, B, group: 0 }];
  const others = [
    ...(plan.terms ?? []).map((mm) => ({ mm, group: 0 })),
    ...(plan.coProducts ?? []).map((mm, c) => ({ mm, group: c + 1 })),
  ];
  for (const { mm: term, group } of others) {
    const tB = inPlaceOperand(term.inputs[1], ctx, opts.matmulStridedOperands);
    const tA = inPlaceOperand(term.inputs[0], ctx, opts.matmulStridedOperands);
    const tK = matmulDims(term).K;
    const same = tB !== undefined && tB.transposed === B.transposed && tB.offset % 4 === 0 &&
      (tA === undefined || tA.offset % 4 === 0) && (!(aVec || nt) || tK % 4 === 0) &&
      (!(aVec || aT || nt) || (tA !== undefined && tA.transposed === A!.transposed)) &&
      [tB, ...(aVec || aT ? [tA!] : [])].every((o) => whole(o.node));
    if (!same || parts.length > 1 || ranged.length > 0) return undefined;
    products.push({ mm: term, A: tA, B: tB, group });
  }
  const kernels = parts.map((p) => vec4Part(plan, ctx, opts, { products, aVec, aT, nn }, p));
  if (kernels.some((k) => k === undefined)) return undefined;
  if (kernels.length > 1) {
    kernels.forEach((k, i) => {
      const { m0, m1, n0, n1 } = parts[i];
      k!.part = `part${i}`;
      k!.multiplyAdds = batch * (m1 - m0) * (n1 - n0) * K;
    });
  }
  return kernels as GeneratedKernel[];
}

/**
 * Rows and vec4 column groups per invocation. Big tiles for big matrices only: a small matrix
 * needs enough invocations to fill the workgroups, and a thin x·Wᵀ (a few columns) gets no more
 * column groups than it has columns. The k loop's unrolled body is kept within
 * `matmulMaxUnroll` multiply-adds (rows first), as llvmpipe's compile time grows with it.
 */
function tileShape(
  opts: CodegenOptions,
  maxUnroll: number,
  nn: boolean,
  aVec: boolean,
  aT: boolean,
  rowsP: number,
  colsP: number,
): { rows: number; groups: number } {
  const WG = opts.matmulWorkgroup[0];
  let rows = Math.min(
    nn ? opts.matmulRowBlock : opts.matmulNtTile.rows,
    Math.max(4, Math.ceil(rowsP / 8)),
    rowsP,
  );
  let groups = nn
    ? Math.max(1, Math.min(opts.matmulColumnGroups, Math.floor(colsP / (4 * WG))))
    : Math.max(1, Math.min(Math.floor(opts.matmulNtTile.cols / 4), Math.ceil(colsP / 4)));
  // Multiply-adds per k iteration: 4 columns per group, times 4 k per iteration where A (NN) or
  // both operands (NT, a dot product) are read as vec4.
  // TN's k loop advances by 1 but is budgeted as NN's with vec4 A, so that both get one tile.
  const perRowGroup = 4 * (nn && !aVec && !aT ? 1 : 4);
  const fits = (g: number) => Math.floor(maxUnroll / (perRowGroup * g));
  rows = Math.max(Math.min(rows, 4), Math.min(rows, fits(groups)));
  while (rows * groups > fits(1) && groups > 1) groups = Math.ceil(groups / 2);
  // TN loads four rows at once.
  if (aT) rows = Math.max(4, rows - (rows % 4));
  return { rows, groups };
}

/** A product the kernel accumulates: the anchor, or a term summed into it (`KernelPlan.terms`). */
interface Product {
  mm: Node;
  A: Operand | undefined;
  B: Operand;
  /** Its accumulators: 0 the anchor's (summed terms too), c the c-th co-product's. */
  group: number;
}

/** A product with its operands' bindings in one kernel (quarter-element offsets inside them). */
interface Bound extends Product {
  K: number;
  a: Node;
  bBind: { name: string; base: number };
  aBind: { name: string; base: number } | undefined;
  bOff: number;
  aOff: number;
}

/** One kernel of `vec4Matmul`: the output block `p`. */
function vec4Part(
  plan: KernelPlan,
  ctx: KernelContext,
  opts: CodegenOptions,
  ops: { products: Product[]; aVec: boolean; aT: boolean; nn: boolean },
  p: Part,
): GeneratedKernel | undefined {
  const mm = plan.anchor!;
  const { products, aVec, aT, nn } = ops;
  const { M, N, batchShape, batch } = matmulDims(mm);
  const b = builderFor(plan, ctx);
  const rowsP = p.m1 - p.m0, colsP = p.n1 - p.n0;
  // Each product's bindings: the elements of each vec4 buffer this block reads (all of B for NN;
  // the block's rows of W (NT) or of A), and each operand's first element inside its binding in
  // quarter elements.
  const bound = products.map(({ mm: product, A, B, group }) => {
    const K = matmulDims(product).K;
    const bRange = nn
      ? [B.offset, B.offset + batch * K * N]
      : [B.offset + p.n0 * K, B.offset + p.n1 * K];
    const bBind = b.rangeName(B.node, bRange[0], bRange[1]);
    const aBind = aVec
      ? b.rangeName(A!.node, A!.offset + p.m0 * K, A!.offset + p.m1 * K)
      : aT
      ? b.rangeName(A!.node, A!.offset, A!.offset + batch * K * M)
      : undefined;
    if (!bBind || ((aVec || aT) && !aBind)) return undefined;
    const vecNodes = [B.node, ...(aVec || aT ? [A!.node] : [])];
    vecNodes.forEach((n) => b.vec4Slots.add(ctx.slotOf(n)));
    const bOff = (B.offset - bBind.base) / 4;
    const aOff = aBind ? (A!.offset - aBind.base) / 4 : 0;
    return { mm: product, A, B, group, K, a: product.inputs[0], bBind, aBind, bOff, aOff };
  });
  if (!bound.every((x): x is Bound => x !== undefined)) return undefined;
  const [WG, WGY] = opts.matmulWorkgroup;
  const work = batch * rowsP * colsP * bound.reduce((n, { K }) => n + K, 0);
  const budget = work < opts.matmulCompactWork ? opts.matmulCompactUnroll : opts.matmulMaxUnroll;
  const { rows: TM, groups } = tileShape(opts, budget, nn, aVec, aT, rowsP, colsP);
  // Co-products hold tiles of their own, each of the full tile's size: each product's loop is
  // unrolled alone, and on llvmpipe sharing the budget instead (half the rows) made the step 9%
  // slower where the full tiles measured even (paired, 0.998 and 0.969).
  const tileCount = 1 + (plan.coProducts?.length ?? 0);
  const colTiles = Math.ceil(colsP / (4 * groups)), rowTiles = Math.ceil(rowsP / TM);
  // Tiles numbered row by row along x, so that no lane idles where a row of tiles does not fill
  // whole workgroups (144 columns in tiles of 16: 9 of 16 lanes busy). The divisors, once per
  // invocation, are in parentheses so that kernels of other widths share the text (shape_params).
  const flat = opts.matmulFlatLanes && WGY === 1;
  if (flat) {
    b.line(`let tile = i32(gid.x);`);
    b.line(`let col0 = ${p.n0}i + (tile % (${colTiles}i)) * ${4 * groups}i;`);
    b.line(`let row0 = ${p.m0}i + (tile / (${colTiles}i)) * ${TM}i;`);
    b.line(`if (tile >= ${colTiles * rowTiles}i || i32(gid.z) >= ${batch}i) { return; }`);
  } else {
    b.line(`let col0 = ${p.n0}i + i32(gid.x) * ${4 * groups}i;`);
    b.line(`let row0 = ${p.m0}i + i32(gid.y) * ${TM}i;`);
    b.line(`if (col0 >= ${p.n1}i || row0 >= ${p.m1}i || i32(gid.z) >= ${batch}i) { return; }`);
  }
  const bIndex = b.unravel("i32(gid.z)", batchShape);
  const batchFlat = b.bind(b.flatten(bIndex, batchShape));
  // An operand's batch term and the stride of the axis its loads step along, in vec4s: those of
  // a contiguous [batch, R, C] block (its `matrix` = R·C elements, `stride` along the axis)
  // where it is one, else its own strides (`axis` 0: its R axis, 1: its C axis).
  const quads = (o: Operand, matrix: number, stride: number, axis: 0 | 1) => {
    if (o.standard) return { batch: `${batchFlat} * ${matrix / 4}i`, stride: stride / 4 };
    const terms = bIndex.flatMap((ix, i) =>
      batchShape[i] === 1 || o.strides[i] === 0 ? [] : [`${ix} * ${o.strides[i] / 4}i`]
    );
    const batch = terms.length === 0 ? "0i" : b.bind(`(${terms.join(" + ")})`);
    return { batch, stride: o.strides[o.strides.length - 2 + axis] / 4 };
  };
  const rows = Array.from(
    { length: TM },
    (_, i) => b.bind(rowsP % TM === 0 ? `(row0 + ${i}i)` : `min(row0 + ${i}i, ${p.m1 - 1}i)`),
  );
  const store = (tiles: string[][][], width: 1 | 4) =>
    storeTile(b, {
      mm,
      terms: plan.terms ?? [],
      coProducts: (plan.coProducts ?? []).map((co, c) => ({ mm: co, accumulators: tiles[c + 1] })),
      roots: plan.roots,
      batchIndex: bIndex,
      accumulators: tiles[0],
      width,
      element: "f32",
      firstRow: "row0",
      col: (j) => `(col0 + ${j})`,
      consecutiveCols: true,
      rowEnd: p.m1,
      colEnd: p.n1,
      rowLoop: opts.matmulEpilogueRowLoop,
    });
  if (nn) {
    // TM rows × (4·G) columns: G vec4 accumulators per row, G vec4 loads of B per k. When A is
    // row-major too, k advances by 4 with one vec4 load of A per row.
    const G = groups;
    const tiles = Array.from(
      { length: tileCount },
      (_, t) =>
        rows.map((_, i) =>
          Array.from({ length: G }, (_, g) => t === 0 ? `acc${i}_${g}` : `co${t}_acc${i}_${g}`)
        ),
    );
    tiles.flat(2).forEach((c) => b.line(`var ${c} = vec4<f32>(0.0f);`));
    const colsFit = colsP % (4 * G) === 0;
    for (const { mm: product, A, B, group, K, a, bBind, aBind, bOff, aOff } of bound) {
      const accs = tiles[group];
      const aRows = aVec ? quads(A!, M * K, K, 0) : undefined;
      const bRows = quads(B, K * N, N, 0);
      const bLoad = (k: string, g: number) => {
        const at = `${bRows.batch} + ${k} * ${bRows.stride}i + col0 / 4i + ${g}i`;
        const clamped = colsFit ? at : `min(${at}, ${lastQuad(B, product.inputs[1])}i)`;
        return b.bind(b.vec4Read(B.node, bBind.name, `${bOff}i + ${clamped}`));
      };
      block(b, `for (var k = 0i; k < ${K}i; k += ${aVec ? 4 : 1}i) {`, () => {
        if (aT) {
          // Xᵀ is X [batch, K, M] read by rows: four rows of the tile per vec4 of X's row k (the
          // last tile's quads past M clamped: read, never stored).
          const bv = Array.from({ length: G }, (_, g) => bLoad("k", g));
          const quadsFit = rowsP % TM === 0;
          const xRows = quads(A!, K * M, M, 1);
          for (let q = 0; q < TM / 4; q++) {
            const quad = quadsFit ? `row0 / 4i + ${q}i` : `min(row0 / 4i + ${q}i, ${M / 4 - 1}i)`;
            const at = `${aOff}i + ${xRows.batch} + k * ${xRows.stride}i + ${quad}`;
            const x4 = b.bind(b.vec4Read(A!.node, aBind!.name, at));
            ["x", "y", "z", "w"].forEach((lane, j) =>
              bv.forEach((v, g) =>
                b.line(
                  `${accs[4 * q + j][g]} = fma(vec4<f32>(${x4}.${lane}), ${v}, ${
                    accs[4 * q + j][g]
                  });`,
                )
              )
            );
          }
          return;
        }
        if (!aVec) {
          const bv = Array.from({ length: G }, (_, g) => bLoad("k", g));
          rows.forEach((row, i) => {
            const av = b.bind(`vec4<f32>(${b.valueAt(a, [...bIndex, row, "k"])})`);
            bv.forEach((v, g) => b.line(`${accs[i][g]} = fma(${av}, ${v}, ${accs[i][g]});`));
          });
          return;
        }
        const bv = [0, 1, 2, 3].map((q) =>
          Array.from({ length: G }, (_, g) => bLoad(q === 0 ? "k" : `(k + ${q}i)`, g))
        );
        rows.forEach((row, i) => {
          const at = `${aOff}i + ${aRows!.batch} + ${row} * ${aRows!.stride}i + k / 4i`;
          const a4 = b.bind(b.vec4Read(A!.node, aBind!.name, at));
          ["x", "y", "z", "w"].forEach((q, j) =>
            bv[j].forEach((v, g) =>
              b.line(`${accs[i][g]} = fma(vec4<f32>(${a4}.${q}), ${v}, ${accs[i][g]});`)
            )
          );
        });
      });
    }
    store(tiles, 4);
  } else {
    const cols = Array.from(
      { length: 4 * groups },
      (_, j) => b.bind(`min(col0 + ${j}i, ${p.n1 - 1}i)`),
    );
    const tiles = Array.from(
      { length: tileCount },
      (_, t) =>
        rows.map((_, i) => cols.map((_, j) => t === 0 ? `c${i}_${j}` : `co${t}_c${i}_${j}`)),
    );
    tiles.flat(2).forEach((c) => b.line(`var ${c} = 0.0f;`));
    for (const { A, B, group, K, bBind, aBind, bOff, aOff } of bound) {
      const accs = tiles[group];
      const aRows = quads(A!, M * K, K, 0);
      const wRows = quads(B, N * K, K, 1);
      block(b, `for (var k = 0i; k < ${K / 4}i; k++) {`, () => {
        const wv = cols.map((c) =>
          b.bind(
            b.vec4Read(
              B.node,
              bBind.name,
              `${bOff}i + ${wRows.batch} + ${c} * ${wRows.stride}i + k`,
            ),
          )
        );
        rows.forEach((row, i) => {
          const at = `${aOff}i + ${aRows.batch} + ${row} * ${aRows.stride}i + k`;
          const av = b.bind(b.vec4Read(A!.node, aBind!.name, at));
          wv.forEach((w, j) => b.line(`${accs[i][j]} = ${accs[i][j]} + dot(${av}, ${w});`));
        });
      });
    }
    store(tiles, 1);
  }
  const logical: [number, number, number] = flat
    ? [Math.ceil((colTiles * rowTiles) / WG), 1, batch]
    : [Math.ceil(colTiles / WG), Math.ceil(rowTiles / WGY), batch];
  const grid = tileGrid(logical, [WG, WGY, 1], opts, b.closeScope());
  const loops = bound.reduce((n, { K }) => n + (nn && !aVec ? K : Math.ceil(K / 4)), 0) +
    tileEpilogueIterations(TM, 4 * groups);
  return finish(b, plan, ctx, grid.body, grid.dispatch, [WG, WGY, 1], loops);
}
