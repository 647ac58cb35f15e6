/**
 * Splitting work that one kernel invocation must not do alone. Run at lowering time with sizes
 * derived from the device (`SplitSizes`), after `optimize`:
 *
 * - **Reductions** (sum, max, argmax) over more than `reduceChunk` elements become a tree of
 *   reductions: the reduced extent R is padded with the identity to C·P and reduced over C (one
 *   output per partial), then the P partials are reduced again, recursively. C ≈ √R, so a sum
 *   accumulates in a √R-ary tree: R = 10⁶ takes two stages of 1000, and its rounding error is
 *   bounded by (C + P)·u·Σ|x| instead of R·u·Σ|x| (docs/dsl.md). The partials run in parallel,
 *   where one invocation used to loop over the whole extent.
 * - **Matmul contractions** longer than `matmulChunk` are split-K: P partial products over
 *   consecutive slices of K, added in order.
 * - **Scatter-adds** of more than `scatterChunk` updates become a chain of scatter-adds over
 *   consecutive slices of the updates: the accumulation order (row-major over the updates) and so
 *   the result are exactly those of one scatter-add.
 *
 * Why: a device can bound what one invocation may loop over (Mesa's llvmpipe and lavapipe end
 * every invocation after 65,535 loop iterations in total, silently), and one invocation looping
 * over millions of elements is slow on any device.
 */

import {
  type DType,
  getPrimitive,
  type Graph,
  type HostArray,
  isFloat,
  type Node,
  type Params,
} from "../../dsl/mod.ts";
import { allocData } from "../../dsl/host_array.ts";
import { type Emitter, rewriteGraph } from "./rewrite.ts";

/** The most elements one reduction, contraction or scatter kernel handles per output. */
export interface SplitSizes {
  /** Longest reduced extent reduced by one loop. */
  reduceChunk: number;
  /** Longest matmul contraction computed by one loop. */
  matmulChunk: number;
  /** Most updates one scatter-add kernel applies. */
  scatterChunk: number;
}

/** Builds nodes through the primitives' own shape rules. */
class Builder {
  constructor(private readonly e: Emitter) {}

  op(op: string, inputs: readonly Node[], params: Params = {}): Node {
    const aval = getPrimitive(op).abstractEval(inputs, params);
    return this.e.emit(op, params, inputs, aval.shape, aval.dtype);
  }

  reshape(x: Node, shape: readonly number[]): Node {
    const same = x.shape.length === shape.length && x.shape.every((d, i) => d === shape[i]);
    return same ? x : this.op("reshape", [x], { shape: [...shape] });
  }

  transpose(x: Node, perm: readonly number[]): Node {
    return perm.every((p, i) => p === i) ? x : this.op("transpose", [x], { perm: [...perm] });
  }

  /** Pads axis `axis` at its end by `extra` elements of `value`. */
  padEnd(x: Node, axis: number, extra: number, value: number): Node {
    if (extra === 0) return x;
    const lo = x.shape.map(() => 0);
    const hi = x.shape.map((_, i) => (i === axis ? extra : 0));
    return this.op("pad", [x], { lo, hi, value });
  }

  cast(x: Node, dtype: DType): Node {
    return x.dtype === dtype ? x : this.op("cast", [x], { dtype });
  }

  slice(x: Node, axis: number, start: number, end: number): Node {
    if (start === 0 && end === x.shape[axis]) return x;
    const starts = x.shape.map((_, i) => (i === axis ? start : 0));
    const ends = x.shape.map((d, i) => (i === axis ? end : d));
    return this.op("slice", [x], { starts, ends });
  }

  /** A scalar constant broadcast to `shape`. */
  splat(value: number, shape: readonly number[], dtype: DType): Node {
    const data = allocData(dtype, 1).fill(value);
    const host: HostArray = { shape: [], dtype, data };
    const c = this.e.emit("constant", { value: host }, [], [], dtype);
    if (shape.length === 0) return c;
    const ones = this.reshape(c, shape.map(() => 1));
    return this.op("broadcast", [ones], { shape: [...shape] });
  }
}

/** Chunk length C (and count P = ⌈R/C⌉) for a reduction of R elements: C ≈ √R, C ≤ chunk. */
export function chunking(r: number, chunk: number): { c: number; p: number } {
  const c = Math.min(chunk, Math.ceil(Math.sqrt(r)));
  return { c, p: Math.ceil(r / c) };
}

/**
 * Additions along the longest path of the summation tree of R elements: a sum of R f32 values in
 * this order is within γ_L·Σ|x| of the exact sum, L this length and γ_L = L·u/(1 − L·u),
 * u = 2⁻²⁴ (Higham, Accuracy and Stability of Numerical Algorithms, §4.2).
 */
export function summationLength(r: number, chunk: number): number {
  if (r <= chunk) return Math.max(0, r - 1);
  const { c, p } = chunking(r, chunk);
  return c - 1 + summationLength(p, chunk);
}

function identityOf(op: string, dtype: DType): number {
  if (op === "sum") return 0;
  return isFloat(dtype) ? -Infinity : -2147483648;
}

/**
 * x with the `axes` moved last and flattened into one axis of length R: [...kept, R].
 */
function flattenReduced(b: Builder, x: Node, axes: readonly number[]): Node {
  const kept = x.shape.map((_, i) => i).filter((i) => !axes.includes(i));
  const moved = b.transpose(x, [...kept, ...axes]);
  const r = axes.reduce((p, a) => p * x.shape[a], 1);
  return b.reshape(moved, [...kept.map((i) => x.shape[i]), r]);
}

/** sum or max of `x` ([...O, R]) over its last axis, as a tree of chunked reductions. */
function treeReduce(b: Builder, op: "sum" | "max", x: Node, chunk: number): Node {
  const rank = x.shape.length;
  const r = x.shape[rank - 1];
  if (r <= chunk) return b.op(op, [x], { axes: [rank - 1] });
  const { c, p } = chunking(r, chunk);
  // Chunk j holds elements j, j + P, j + 2P, …: neighbouring outputs read neighbouring elements.
  const padded = b.padEnd(x, rank - 1, c * p - r, identityOf(op, x.dtype));
  const grid = b.reshape(padded, [...x.shape.slice(0, -1), c, p]);
  const partials = b.op(op, [grid], { axes: [rank - 1] });
  return treeReduce(b, op, partials, chunk);
}

/** argmax of `x` ([...O, R]) over its last axis: first index of the maximum, NaN as maximum. */
function treeArgmax(b: Builder, x: Node, chunk: number): Node {
  const rank = x.shape.length;
  const r = x.shape[rank - 1];
  if (r <= chunk) return b.op("argmax", [x], { axis: rank - 1 });
  const { c, p } = chunking(r, chunk);
  // Contiguous chunks, padding last: the first chunk holding the maximum holds its first index.
  const padded = b.padEnd(x, rank - 1, c * p - r, identityOf("max", x.dtype));
  const grid = b.reshape(padded, [...x.shape.slice(0, -1), p, c]);
  const chunkMax = b.op("max", [grid], { axes: [rank] });
  const within = b.op("argmax", [grid], { axis: rank }); // [...O, P]
  const best = treeArgmax(b, chunkMax, chunk); // [...O]
  // within[o, best[o]], read from the flattened partials.
  const outer = x.shape.slice(0, -1);
  const o = outer.reduce((a, d) => a * d, 1);
  const bestFlat = b.reshape(best, [o]);
  const rowStart = b.op("mul", [
    b.op("iota", [], { shape: [o], axis: 0, dtype: "i32" }),
    b.splat(p, [o], "i32"),
  ]);
  const picked = b.op("gather", [
    b.reshape(within, [o * p]),
    b.op("add", [rowStart, bestFlat]),
  ], { axis: 0 });
  const index = b.op("add", [b.op("mul", [bestFlat, b.splat(c, [o], "i32")]), picked]);
  return b.reshape(index, outer);
}

function splitReduction(b: Builder, node: Node, input: Node, chunk: number): Node | undefined {
  const axes = node.op === "argmax"
    ? [node.params.axis as number]
    : [...(node.params.axes as number[])].sort((a, c) => a - c);
  const r = axes.reduce((p, a) => p * input.shape[a], 1);
  if (r <= chunk) return undefined;
  // An f16 sum's partials stay f32 and round once, as the unsplit sum does.
  const widen = node.op === "sum" && input.dtype === "f16";
  const flat = flattenReduced(b, widen ? b.cast(input, "f32") : input, axes);
  const out = node.op === "argmax"
    ? treeArgmax(b, flat, chunk)
    : treeReduce(b, node.op as "sum" | "max", flat, chunk);
  return b.reshape(widen ? b.cast(out, "f16") : out, node.shape);
}

/**
 * The K slices [start, end) of a split-K product: about equal, at most `chunk` long. Where chunk
 * allows, each is a multiple of 4 long, and K mod 4 (when not 0) is a last slice of its own: the
 * copy of a slice of `a` then has rows of a multiple of 4, which the matmul kernels read as vec4
 * (slices of an odd vocabulary's logits gradient, read one element at a time, ran at half speed).
 */
export function matmulSlices(k: number, chunk: number): [number, number][] {
  const aligned = chunk >= 8 && k >= 8;
  const most = aligned ? chunk - (chunk % 4) : chunk;
  const body = aligned ? k - (k % 4) : k;
  const even = Math.ceil(body / Math.ceil(body / most));
  const c = aligned ? Math.min(Math.ceil(even / 4) * 4, most) : even;
  const slices: [number, number][] = [];
  for (let s = 0; s < body; s += c) slices.push([s, Math.min(body, s + c)]);
  if (body < k) slices.push([body, k]);
  return slices;
}

/**
 * a·b with K > chunk as Σ_p a[…, K slice p]·b[K slice p, …] over consecutive slices
 * (`matmulSlices`), added in order (split-K). No padding; a slice of `a` that the matmul kernel
 * must copy is a buffer of its own, freed after its product, so the copies never exceed one slice
 * at a time.
 */
function splitMatmul(b: Builder, [x, y]: readonly Node[], chunk: number) {
  const rank = x.shape.length;
  const k = x.shape[rank - 1];
  if (k <= chunk) return undefined;
  // f16 partial products stay f32 and round once, as the unsplit product does.
  const half = x.dtype === "f16";
  const [a, c] = half ? [b.cast(x, "f32"), b.cast(y, "f32")] : [x, y];
  let sum: Node | undefined;
  for (const [s, e] of matmulSlices(k, chunk)) {
    const part = b.op("matmul", [b.slice(a, rank - 1, s, e), b.slice(c, rank - 2, s, e)]);
    sum = sum ? b.op("add", [sum, part]) : part;
  }
  return half ? b.cast(sum!, "f16") : sum;
}

/** scatterAdd with more than `chunk` updates as a chain over consecutive slices of them. */
function splitScatter(b: Builder, node: Node, inputs: readonly Node[], chunk: number) {
  const [operand, indices, updates] = inputs;
  const count = indices.size;
  if (count <= chunk) return undefined;
  const axis = node.params.axis as number;
  const flatIdx = b.reshape(indices, [count]);
  const outer = operand.shape.slice(0, axis), inner = operand.shape.slice(axis + 1);
  const flatUpd = b.reshape(updates, [...outer, count, ...inner]);
  let acc = operand;
  for (let s = 0; s < count; s += chunk) {
    const e = Math.min(count, s + chunk);
    acc = b.op("scatterAdd", [
      acc,
      b.slice(flatIdx, 0, s, e),
      b.slice(flatUpd, axis, s, e),
    ], { axis });
  }
  return acc;
}

/** Rewrites reductions, contractions and scatters larger than `sizes` allows (see above). */
export function splitLargeWork(graph: Graph, sizes: SplitSizes): Graph {
  for (const [name, v] of Object.entries(sizes)) {
    if (!(Number.isInteger(v) && v >= 2) && v !== Infinity) {
      throw new Error(`splitLargeWork: ${name} must be an integer ≥ 2 (got ${v})`);
    }
  }
  return rewriteGraph(graph, (node, inputs, emitter) => {
    const b = new Builder(emitter);
    switch (node.op) {
      case "sum":
      case "max":
      case "argmax":
        return splitReduction(b, node, inputs[0], sizes.reduceChunk);
      case "matmul":
        return splitMatmul(b, inputs, sizes.matmulChunk);
      case "scatterAdd":
        return splitScatter(b, node, inputs, sizes.scatterChunk);
      default:
        return undefined;
    }
  });
}
