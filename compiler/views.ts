/** Facts about view nodes shared by fusion planning and code generation. */

import type { Node } from "../dsl/mod.ts";
import { stridesOf } from "../dsl/shape.ts";

/** A transpose that swaps the last two axes only (a matrix transpose, batched). */
export function swapsLastTwo(x: Node): boolean {
  const perm = x.params.perm as number[] | undefined;
  const r = x.shape.length;
  return x.op === "transpose" && perm !== undefined &&
    perm.every((p, i) => (i < r - 2 ? p === i : p === (i === r - 2 ? r - 1 : r - 2)));
}

/**
 * `x` reads one contiguous block of an array in row-major order: the array itself, reshapes of
 * it, or contiguous slices of it (a block of a table's rows).
 */
export function isLayoutPreserving(x: Node, isBuffer: (n: Node) => boolean): boolean {
  if (isBuffer(x)) return true;
  const view = x.op === "reshape" || (x.op === "slice" && contiguousSliceStart(x) !== undefined);
  return view && isLayoutPreserving(x.inputs[0], isBuffer);
}

/**
 * The flat offset of a slice's first element when the slice is one contiguous block of its input
 * (axes before the first partial one kept to a single index, all axes after it whole).
 */
export function contiguousSliceStart(slice: Node): number | undefined {
  const starts = slice.params.starts as number[], ends = slice.params.ends as number[];
  const shape = slice.inputs[0].shape;
  const partial = shape.findIndex((d, i) => ends[i] - starts[i] !== d);
  if (partial < 0) return 0;
  const contiguous = shape.every((d, i) =>
    i < partial ? ends[i] - starts[i] === 1 : i === partial || ends[i] - starts[i] === d
  );
  if (!contiguous) return undefined;
  return starts.reduce((flat, s, i) => flat * shape[i] + s, 0);
}

/** A kernel's output `root` is its product `mm` stored through a permutation (heads merged). */
export function transposesProduct(root: Node, mm: Node | undefined): boolean {
  return root.op === "transpose" && root.inputs[0] === mm;
}

/** `x` as strides over a buffer: x[i] is source[offset + Σ i_k · strides_k]. */
export interface StridedView {
  source: Node;
  offset: number;
  strides: number[];
}

/**
 * `x` as a strided view of a buffer, through reshapes, transposes and slices (a head split and
 * its permutation: [b, t, h·d] → [b, h, t, d]); undefined where a reshape merges axes that are
 * not adjacent in memory (no strides describe it).
 */
export function stridedView(x: Node, isBuffer: (n: Node) => boolean): StridedView | undefined {
  if (isBuffer(x)) return { source: x, offset: 0, strides: stridesOf(x.shape) };
  if (x.op !== "reshape" && x.op !== "transpose" && x.op !== "slice") return undefined;
  const inner = stridedView(x.inputs[0], isBuffer);
  if (!inner) return undefined;
  if (x.op === "transpose") {
    return { ...inner, strides: (x.params.perm as number[]).map((p) => inner.strides[p]) };
  }
  if (x.op === "slice") {
    const starts = x.params.starts as number[];
    const offset = starts.reduce((o, s, k) => o + s * inner.strides[k], inner.offset);
    return { ...inner, offset };
  }
  const strides = reshapedStrides(x.inputs[0].shape, inner.strides, x.shape);
  return strides && { ...inner, strides };
}

/**
 * Strides of a reshape of a strided view, where each group of old axes that the reshape merges
 * or splits is contiguous in memory (NumPy's no-copy reshape rule); size-1 axes get stride 0.
 */
function reshapedStrides(
  from: readonly number[],
  strides: readonly number[],
  to: readonly number[],
): number[] | undefined {
  const oldAxes = from.flatMap((d, i) => (d === 1 ? [] : [i]));
  const newAxes = to.flatMap((d, i) => (d === 1 ? [] : [i]));
  const out = to.map(() => 0);
  let o = 0, n = 0;
  while (n < newAxes.length) {
    let o2 = o + 1, n2 = n + 1;
    let po = from[oldAxes[o]], pn = to[newAxes[n]];
    while (po !== pn) {
      if (po < pn) po *= from[oldAxes[o2++]];
      else pn *= to[newAxes[n2++]];
    }
    for (let k = o; k < o2 - 1; k++) {
      const [outer, inner] = [oldAxes[k], oldAxes[k + 1]];
      if (strides[outer] !== strides[inner] * from[inner]) return undefined;
    }
    let s = strides[oldAxes[o2 - 1]];
    for (let k = n2 - 1; k >= n; k--) {
      out[newAxes[k]] = s;
      s *= to[newAxes[k]];
    }
    [o, n] = [o2, n2];
  }
  return out;
}

/**
 * Which way the vec4 matmul kernel can read a strided operand [..., R, C] in place: along its
 * rows (C contiguous: A of NN/NT, B of NN), along its columns (R contiguous: Xᵀ of TN, Wᵀ of NT),
 * or neither (then it is copied into a row-major buffer first). Every other stride and the
 * offset must be whole vec4s.
 */
export function vec4Direction(x: Node, v: StridedView): "rows" | "columns" | undefined {
  const r = x.shape.length;
  const [R, C] = x.shape.slice(r - 2);
  const [sR, sC] = v.strides.slice(r - 2);
  const quads = (s: number) => s % 4 === 0;
  if (v.offset % 4 !== 0 || !v.strides.slice(0, r - 2).every(quads)) return undefined;
  if (sC === 1 && C % 4 === 0 && quads(sR)) return "rows";
  if (sR === 1 && R % 4 === 0 && quads(sC)) return "columns";
  return undefined;
}
