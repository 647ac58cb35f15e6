/**
 * The store of a matmul's register tile through the kernel's fused epilogue (bounds check, fused
 * elementwise consumers, store): once per tile row, in a loop over the row's columns, instead of
 * once per tile element.
 *
 * Per element, the CPU adapter's large tiles (up to 32 × 16 per invocation) got hundreds of copies
 * of the epilogue, and Mesa's llvmpipe/lavapipe compiled each such kernel for seconds at its first
 * dispatch (every store is a loop over the SIMD lanes there). The column loop picks its value
 * from the row's accumulators with a few selects, so the accumulators stay in registers.
 *
 * With `rowLoop` the rows are a loop too: each iteration picks its row's accumulators with a
 * chain of selects, so the epilogue is emitted once. On llvmpipe that cut a gated-MLP product's
 * compile time by about 40 % at the same step speed (the selects are a few per element, against
 * the depth's multiply-adds). Tried there and dropped: one loop over the whole tile through
 * workgroup memory (compiles faster, but its extra store and load per element made kernels up to
 * ≈20 % slower), and through a private array (Mesa then compiled a kernel for 30 s instead of 3).
 */

import type { Node } from "../../dsl/mod.ts";
import type { KernelBuilder } from "./builder.ts";
import { block, storeRoots } from "./kernels.ts";
import { transposesProduct } from "../views.ts";

export interface TileEpilogue {
  /** The matmul whose value the epilogue reads at each element. */
  mm: Node;
  /**
   * Products summed into `mm`'s accumulators (`KernelPlan.terms`): the epilogue reads them as 0,
   * since `mm`'s value already holds their sum.
   */
  terms?: readonly Node[];
  /**
   * Products of `mm`'s shape computed beside it (`KernelPlan.coProducts`), each with its own
   * accumulators laid out as `accumulators`: the epilogue reads each at the same element.
   */
  coProducts?: readonly { mm: Node; accumulators: readonly (readonly string[])[] }[];
  /**
   * The kernel's outputs: the matmul or its fused consumer, then any elementwise kernel merged
   * in (fusion rule 8), each stored at the product's index.
   */
  roots: readonly Node[];
  /** Index of the batch axes (WGSL i32 expressions). */
  batchIndex: readonly string[];
  /**
   * The accumulators, one list per tile row: WGSL values of `width` consecutive tile columns
   * each (width 4: vec4 accumulators).
   */
  accumulators: readonly (readonly string[])[];
  width: 1 | 4;
  /** WGSL type of the accumulators' components ("f32" or "i32"). */
  element: string;
  /** The output row of tile row 0 (tile row i is output row firstRow + i), WGSL i32. */
  firstRow: string;
  /** The output column of tile column `j` (a WGSL i32 expression), increasing with j. */
  col(j: string): string;
  /** Whether tile column j is output column col(0) + j (else each column is bounds-checked). */
  consecutiveCols: boolean;
  /** Rows and columns past the last ones this kernel writes. */
  rowEnd: number;
  colEnd: number;
  /** Loop over the tile rows (the epilogue emitted once) instead of unrolling them. */
  rowLoop: boolean;
}

/** Most loop iterations `storeTile` adds to one invocation (a row loop's, then one per element). */
export function tileEpilogueIterations(rows: number, cols: number): number {
  return rows + rows * cols;
}

/** Emits the store of the tile (see the module comment). */
export function storeTile(b: KernelBuilder, t: TileEpilogue): void {
  b.line(EPILOGUE_START);
  emitStore(b, t);
  b.line(EPILOGUE_END);
}

/** Comment lines around a tile's store: what epilogue_variants.ts cuts out and shares. */
export const EPILOGUE_START = "// epilogue begins", EPILOGUE_END = "// epilogue ends";

/**
 * Comment lines around the store of one tile row (its loop over columns), inside the loop over
 * rows: where the epilogues of a shared kernel differ when their row loops are alike
 * (epilogue_variants.ts).
 */
export const ROW_START = "// row begins", ROW_END = "// row ends";

function emitStore(b: KernelBuilder, t: TileEpilogue): void {
  const cols = t.accumulators[0].length * t.width;
  const colCount = t.consecutiveCols
    ? b.bind(`min(${cols}i, ${t.colEnd}i - ${t.col("0i")})`)
    : `${cols}i`;
  // One value list per product: the anchor's, then each co-product's.
  const storeRow = (row: string, values: readonly RowValues[]) =>
    block(b, `if (${row} < ${t.rowEnd}i) {`, () => {
      b.line(ROW_START);
      block(b, `for (var tj = 0i; tj < ${colCount}; tj++) {`, () => {
        const col = b.bind(t.col("tj"));
        const store = () => {
          const index = [...t.batchIndex, row, col];
          b.seed(t.mm, index, pick(b, values[0]));
          t.coProducts?.forEach((co, c) => b.seed(co.mm, index, pick(b, values[c + 1])));
          t.terms?.forEach((term) => b.seed(term, index, `0.0f`));
          const at = rootIndex(t, index);
          storeRoots(b, t.roots, at, b.flatten(at, t.roots[0].shape));
        };
        if (t.consecutiveCols) store();
        else block(b, `if (${col} < ${t.colEnd}i) {`, store);
      });
      b.line(ROW_END);
    });
  const tiles = [t.accumulators, ...(t.coProducts ?? []).map((co) => co.accumulators)];
  const rows = t.accumulators.map((_, i) => tiles.map((accs) => rowValues(b, t, accs[i])));
  if (!t.rowLoop || rows.length === 1) {
    rows.forEach((values, i) => storeRow(`(${t.firstRow} + ${i}i)`, values));
    return;
  }
  block(b, `for (var ti = 0i; ti < ${rows.length}i; ti++) {`, () => {
    const values = tiles.map((_, c) => ({
      quads: rows[0][c].quads,
      values: rows[0][c].values.map((_, p) => b.bind(chain(rows.map((r) => r[c].values[p]), "ti"))),
    }));
    storeRow(b.bind(`(${t.firstRow} + ti)`), values);
  });
}

/**
 * Where the product's element `index` lands in the root: the same index, or permuted where the
 * root is a transpose of the product (fusion.ts `isPermutedStore`).
 */
function rootIndex(t: TileEpilogue, index: readonly string[]): readonly string[] {
  const root = t.roots[0];
  if (!transposesProduct(root, t.mm)) return index;
  return (root.params.perm as number[]).map((p) => index[p]);
}

/**
 * A tile row as vec4s (scalar accumulators grouped by 4 where the row's length allows, so that
 * picking one of 16 columns takes 3 selects, not 15), or as its scalars.
 */
function rowValues(b: KernelBuilder, t: TileEpilogue, accs: readonly string[]): RowValues {
  if (t.width === 4) return { quads: true, values: [...accs] };
  if (accs.length % 4 !== 0) return { quads: false, values: [...accs] };
  const quads = Array.from(
    { length: accs.length / 4 },
    (_, q) => b.bind(`vec4<${t.element}>(${accs.slice(4 * q, 4 * q + 4).join(", ")})`),
  );
  return { quads: true, values: quads };
}

/** A tile row's values: vec4s of 4 consecutive columns (`quads`), or one per column. */
interface RowValues {
  quads: boolean;
  values: string[];
}

/** `values[at]` (WGSL) as a chain of selects: registers stay registers, unlike an array. */
function chain(values: readonly string[], at: string): string {
  return values.slice(1).reduce(
    (v, next, k) => `select(${v}, ${next}, ${at} == ${k + 1}i)`,
    values[0],
  );
}

/** Column `tj` of a tile row (WGSL): the vec4 holding it, chosen by selects, then its component. */
function pick(b: KernelBuilder, row: RowValues): string {
  if (!row.quads) return b.bind(chain(row.values, "tj"));
  const quad = row.values.length === 1
    ? row.values[0]
    : b.bind(chain(row.values, b.bind("tj / 4i")));
  return b.bind(`${quad}[tj % 4i]`);
}
