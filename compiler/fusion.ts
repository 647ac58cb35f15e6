/**
 * Fusion: which nodes become buffers (kernel boundaries) and which are recomputed inline inside
 * the kernel that reads them. The rules, in the spirit of tinygrad and jax-js (peers.md §2.1):
 *
 * 1. Graph inputs, array constants and graph outputs are buffers. Scalar constants, and
 *    reshape/broadcast chains of them (splats), are literals.
 * 2. Elementwise ops, views (reshape, transpose, broadcast, slice, pad, concat), gather and iota
 *    are index arithmetic and fuse into the kernel that reads them. A node that would be computed
 *    by two different kernels becomes a buffer instead, unless it is pure index arithmetic over
 *    buffers, or a mask built from it (then duplicating it is free); a shared reshape or broadcast
 *    is stored as what it views (a log-sum-exp read back over its rows: [n, 1], not [n, V]).
 *    Several uses inside one kernel are computed once.
 * 3. A reduction or matmul anchors a kernel and absorbs an elementwise epilogue: it fuses into its
 *    unique consumer when that reads it at the same index (same shape, no view between). A
 *    product stored through a permutation that keeps its last axis (attention heads merged back)
 *    is written there by its own kernel. With `sumProducts`, products joined by adds are summed
 *    in one kernel (`KernelPlan.terms`).
 * 4. A reduction absorbs its elementwise prologue; a matmul only reshapes of buffers, because each
 *    operand element is reused across a whole row or column: any other view of an operand
 *    (transpose, broadcast, head split) is copied once into a row-major buffer, which lets the
 *    vectorised tile kernel run (2–3× faster steps for a transformer on llvmpipe). Exceptions,
 *    read in place: a transposed matrix (NT, TN), and with `stridedOperands` any strided view the
 *    vec4 kernel can load (split heads).
 * 5. Row-wise fusion (softmax, layerNorm, logsumexp): a reduction whose result is broadcast back
 *    over the axes it reduced, into a kernel iterating the same space, is computed inside that
 *    kernel, one row per invocation: phase 1 reduces the row, phase 2 uses it (tinygrad's
 *    "reduce before broadcast" boundary, removed for the single-kernel softmax case).
 * 6. scatterAdd is its own kernel; when its operand's buffer is donated or dead it is updated in
 *    place (only the updated rows are touched: the key/value cache of incremental decoding).
 * 7. No kernel binds more storage buffers than the device grants: past the cap, the fused
 *    sub-expression reading the most buffers is materialised (jax-js's backtracking rule).
 * 8. Elementwise kernels of one shape that only read each other at the same index merge into one
 *    multi-output kernel (an optimizer step updates a parameter and its two moments in one pass),
 *    also into the matmul kernel whose product they read (a gate's activation); a product only
 *    those merged outputs read is then not stored. An earlier elementwise kernel may also move
 *    down to a later one when nothing between them reads its outputs.
 * 9. With `coProducts`, a product kernel whose epilogue reads an earlier product kernel's outputs
 *    at its own index (the up projection times the gate's activation) moves up and computes both
 *    products, each into its own accumulators (`KernelPlan.coProducts`): horizontal fusion of
 *    siblings that share an input, without concatenating their weights.
 * 10. With `inlineProducts`, a product of a short contraction read only by a row-wise kernel
 *    (attention's scores under their softmax) is computed inside it, a dot product per element.
 */

import {
  isLayoutPreserving,
  stridedView,
  swapsLastTwo,
  transposesProduct,
  vec4Direction,
} from "./views.ts";
import { getPrimitive, type Graph, isElementwise, isFloat, type Node } from "../dsl/mod.ts";

/** The kernel template a fused kernel is generated from. */
export type KernelKind = "elementwise" | "rowwise" | "reduce" | "matmul" | "scatter";

/** One kernel-to-be: the nodes it computes, what it reads and writes, and its template. */
export interface KernelPlan {
  /** The buffers this kernel writes (several for a merged elementwise kernel). */
  roots: Node[];
  /** The template it is generated from. */
  kind: KernelKind;
  /** The reduction, matmul or scatter the kernel is built around. */
  anchor?: Node;
  /** Reductions computed row by row inside the kernel (rule 5), in dependency order. */
  rowReductions: Node[];
  /** Axes of the kernel's iteration space that row reductions reduce. */
  rowAxes: number[];
  /** Nodes computed inside the kernel, in topological order. */
  fused: Node[];
  /** Buffers read, in first-read order. */
  reads: Node[];
  /** Buffers read only at the kernel's own output index (safe to overwrite in place). */
  identityReads: Set<Node>;
  /**
   * Products of the anchor's shape summed into it (the input gradient of sibling layers): the
   * kernel accumulates each into the anchor's tile, and the sum's epilogue reads them as 0.
   */
  terms?: Node[];
  /**
   * Products of the anchor's shape computed beside it, each into accumulators of its own, that
   * the epilogue reads at the product's index (a gate's activation that multiplies the up
   * projection): the two products are one kernel, and the value between them never goes to memory
   * (fusion option `coProducts`).
   */
  coProducts?: Node[];
}

/** Options of `planFusion`. */
export interface FusionOptions {
  /** Storage buffers a kernel may bind, the outputs included. */
  maxStorageBuffers: number;
  /** false: one kernel per primitive (the op-by-op baseline). */
  fuse?: boolean;
  /**
   * Bindings a buffer node takes (default 1): more when it is larger than the device lets one
   * binding be and is bound in windows.
   */
  bindingsOf?: (n: Node) => number;
  /**
   * Longest row a row-wise kernel may loop over (its phases loop over the row several times, and
   * the device bounds the loop iterations of one invocation).
   */
  maxRowLength?: number;
  /**
   * Read a transposed right operand (x·Wᵀ) in place whenever the NT kernel can (the contraction
   * a multiple of 4): the choice on CPU adapters, whose NT kernel outruns NN (no copy either).
   */
  ntInPlace?: boolean;
  /**
   * Read a transposed left operand (Xᵀ·Y, a weight gradient) in place with the TN kernel where it
   * can (rows and columns multiples of 4, Y row-major) instead of copying Xᵀ first: the choice on
   * CPU adapters.
   */
  tnInPlace?: boolean;
  /**
   * Read an operand that is a strided view of an array (attention heads split from [b, t, h·d])
   * in place with the vec4 kernel where its strides allow (views.ts `vec4Direction`), instead of
   * copying it into a row-major buffer first: the choice on CPU adapters.
   */
  stridedOperands?: boolean;
  /**
   * Sum products of one shape that meet through adds (the input gradient of sibling layers:
   * δ_q·W_q + δ_k·W_k + δ_v·W_v) in one kernel, each accumulated into the same register tile,
   * instead of one kernel per product that adds the previous one's output: the choice on CPU
   * adapters, whose register-tile kernels take such terms.
   */
  sumProducts?: boolean;
  /**
   * Most multiply-adds along k one kernel of summed products may run per output (the split
   * pass's chunk: the split halves of a long product are not summed back into one kernel).
   */
  maxProductDepth?: number;
  /**
   * A product kernel whose epilogue reads an earlier product kernel's outputs at its own index
   * (the up projection times the gate's activation) computes both products (`KernelPlan.
   * coProducts`): one kernel instead of two, and the gate's activation is not read back. The
   * choice on GPUs, where it saves a dispatch; each product keeps its own accumulators, which
   * doubles the registers a tile holds.
   */
  coProducts?: boolean;
  /**
   * Rule 2's exception for short elementwise chains over one buffer (σ(g) and g·σ(g) of a stored
   * gate g): recomputed in each kernel that reads them instead of stored (default true).
   */
  recompute?: boolean;
  /**
   * Rule 10: a product of at most this contraction (0: none) whose only reader is a row-wise kernel
   * (attention's scores under their softmax, dO·Vᵀ under the softmax's gradient) is computed inside
   * that kernel, a dot product per element it reads, instead of stored by a kernel of its own.
   */
  inlineProducts?: number;
  /** Loop iterations one invocation may run (bounds the work rule 10 adds to a row). */
  maxLoopIterations?: number;
  /**
   * Rule 11 (default true): reductions of one space over the same axes, the later reading the
   * earlier (if at all) at its output index, are one kernel.
   */
  siblingReductions?: boolean;
  /**
   * Graph inputs the memory plan may write over (donated, and buffers reused). Rule 8 then counts
   * a merged kernel's bindings as the memory plan will bind them: an output written over a donated
   * input that only this kernel reads, at the output's index, shares its binding (an optimizer's
   * moments updated in place take one binding each, not two).
   */
  donated?: ReadonlySet<Node>;
}

/** Kernels back an elementwise kernel looks for one to merge with by moving it down (rule 8). */
const MERGE_WINDOW = 16;
const VIEW_OPS = new Set(["reshape", "transpose", "broadcast", "slice", "pad", "concat", "gather"]);
/** A row reduction longer than this with fewer rows than MIN_ROWS would starve the device. */
const MAX_SERIAL_ROW = 4096;
const MIN_ROWS = 16;

function wgslKind(node: Node) {
  return getPrimitive(node.op).wgsl.kind;
}

/** A scalar constant, or a reshape/broadcast of one: emitted as a literal. */
export function isSplat(node: Node): boolean {
  let n = node;
  while (n.op === "reshape" || n.op === "broadcast") n = n.inputs[0];
  return n.op === "constant" && n.size === 1;
}

export function isLeaf(node: Node): boolean {
  return node.op === "input" || node.op === "constant";
}

function isAnchorOp(node: Node): boolean {
  const k = wgslKind(node);
  return k === "reduce" || k === "matmul" || k === "scatter";
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Shapes equal once their size-1 axes are dropped (one flat index walks both alike). */
function sameSqueezed(a: readonly number[], b: readonly number[]): boolean {
  return sameShape(a.filter((d) => d !== 1), b.filter((d) => d !== 1));
}

/** A reshape that only adds or removes size-1 axes: the flat index is unchanged. */
export function isUnitReshape(n: Node): boolean {
  if (n.op !== "reshape") return false;
  const strip = (s: readonly number[]) => s.filter((d) => d !== 1);
  return sameShape(strip(n.shape), strip(n.inputs[0].shape));
}

export function reducedAxes(n: Node): number[] {
  return n.op === "argmax" ? [n.params.axis as number] : [...(n.params.axes as number[])];
}

/**
 * Comparisons and selects: a mask or one-hot built from them over index arithmetic (a causal mask
 * from two iotas, one-hot targets) costs a few instructions per element to recompute, less than
 * reading it back from memory. Integer sums and products of indices count as index arithmetic.
 */
const MASK_OPS = new Set(["less", "equal", "where", "cast"]);
const INDEX_ARITHMETIC = new Set(["add", "sub", "mul"]);

/**
 * Pure index arithmetic over buffers (views of a buffer, splats, iota), and masks computed from
 * it: free to duplicate.
 */
function isCheapIndexing(node: Node, buffers: Set<Node>): boolean {
  if (buffers.has(node) || isSplat(node) || node.op === "iota") return true;
  const view = VIEW_OPS.has(node.op) && node.op !== "gather";
  const indexMath = INDEX_ARITHMETIC.has(node.op) && node.dtype === "i32";
  if (!view && !MASK_OPS.has(node.op) && !indexMath) return false;
  return node.inputs.every((x) => isCheapIndexing(x, buffers));
}

/**
 * Most elementwise ops a value recomputed from one buffer may take (rule 2): the tanh of GPT-2's
 * GELU and 1 + tanh take 7.
 */
const MAX_RECOMPUTED_OPS = 8;

/**
 * The one array a short elementwise chain reads besides scalars (σ(g), g·σ(g) of a gate g), where
 * `stored` holds it: recomputing such a chain where it is read costs a few instructions per
 * element, while storing it costs a write and a read of a whole array, and it keeps no other
 * array alive than the one it reads.
 */
function cheapSource(node: Node, stored: (n: Node) => boolean): Node | undefined {
  if (stored(node) || !isFloat(node.dtype)) return undefined;
  const sources = new Set<Node>();
  let ops = 0;
  const walk = (x: Node): boolean => {
    if (isSplat(x)) return true;
    if (stored(x)) {
      sources.add(x);
      return sameShape(x.shape, node.shape);
    }
    ops++;
    return isElementwise(x.op) && ops <= MAX_RECOMPUTED_OPS && x.inputs.every(walk);
  };
  return walk(node) && sources.size === 1 ? [...sources][0] : undefined;
}

/** A product's contraction: the multiply-adds per output element. */
function contraction(mm: Node): number {
  return mm.inputs[0].shape[mm.shape.length - 1];
}

/** The contractions of the products a row-wise kernel computes inline (rule 10), summed. */
export function inlinedDepth(plan: KernelPlan): number {
  const inline = plan.fused.filter((n) => n.op === "matmul" && n !== plan.anchor);
  return inline.reduce((d, mm) => d + contraction(mm), 0);
}

/** Splits a graph into kernels (rules 1–10 above), in execution order. */
export function planFusion(graph: Graph, opts: FusionOptions): KernelPlan[] {
  const outputs = new Set(graph.outputs);
  const consumerCount = new Map<Node, number>();
  const consumerOf = new Map<Node, Node>();
  for (const n of graph.nodes) {
    for (const x of n.inputs) {
      consumerCount.set(x, (consumerCount.get(x) ?? 0) + 1);
      consumerOf.set(x, n);
    }
  }

  const buffers = new Set<Node>();
  for (const n of graph.nodes) {
    if (n.op === "input" || outputs.has(n)) buffers.add(n);
    else if (n.op === "constant") {
      if (n.size > 1) buffers.add(n);
    } else if (opts.fuse === false) {
      if (!isSplat(n)) buffers.add(n);
    } else if (wgslKind(n) === "scatter") buffers.add(n);
    else if (wgslKind(n) === "matmul" && consumerCount.get(n) !== 1) buffers.add(n);
  }
  // Matmul operands are read in tiles: give each a row-major buffer (or its plain transpose, for
  // x·Wᵀ) so the vectorised kernel applies. Copying a view once costs far less than a generic
  // kernel re-deriving strided indices for every multiply-add.
  if (opts.fuse !== false) {
    const plain = (x: Node) => !VIEW_OPS.has(x.op) || isSplat(x);
    for (const n of graph.nodes) {
      if (n.op !== "matmul") continue;
      const [a, b] = n.inputs;
      const rows = n.shape[n.shape.length - 2];
      const cols = n.shape[n.shape.length - 1], k = b.shape[b.shape.length - 2];
      // A transposed right operand (x·Wᵀ) is read in place by the NT kernel when copying it
      // would cost more than it saves: the product has few rows (decoding: copying a whole cache
      // to multiply one row would dominate), the copy's rows could not be read as vec4 (an odd
      // vocabulary), W is over the binding limit (a tied LM head: the NT kernel reads the table
      // in parts, the copy would be windowed), or the device runs NT faster anyway.
      const inPlace = rows < 32 || (k % 4 === 0 && (cols % 4 !== 0 || opts.ntInPlace)) ||
        (opts.bindingsOf?.(b) ?? 1) > 1;
      // Where Wᵀ is the transpose of a view that must be stored anyway (attention heads merged
      // back: reshape∘transpose), store that view and read it in place: its other consumers
      // share the buffer, where a copy of Wᵀ would be one more.
      const nt = swapsLastTwo(b) && inPlace && !isSplat(layoutSource(b.inputs[0]));
      // A strided view (a head split) is read where it lies when the kernel can load it as vec4
      // along the wanted direction; its array is then stored in its own layout.
      const strided = (x: Node, direction: "rows" | "columns") => {
        const source = stridedSource(x, direction, plain, opts);
        if (source && !isLeaf(source)) buffers.add(source);
        return source !== undefined;
      };
      if (nt && !isLayoutPreserving(b.inputs[0], plain) && !strided(b, "columns")) {
        buffers.add(beneathReshapes(b.inputs[0]));
      }
      // Wᵀ as some other view whose rows axis is contiguous ([b, t, h·d] read as [b, h, d, t]).
      const ntStrided = !nt && inPlace && !isLayoutPreserving(b, plain) && strided(b, "columns");
      // A transposed left operand (Xᵀ·Y) is read in place by the TN kernel, which reads rows of
      // X and of Y as vec4, where Y ends up row-major.
      const tn = opts.tnInPlace === true && !nt && !ntStrided && swapsLastTwo(a) &&
        !isSplat(layoutSource(a.inputs[0])) && (opts.bindingsOf?.(a.inputs[0]) ?? 1) === 1 &&
        rows % 4 === 0 && cols % 4 === 0;
      const aInPlace = isLayoutPreserving(a, plain) || tn || strided(a, "rows") ||
        (!nt && !ntStrided && cols % 4 === 0 && strided(a, "columns"));
      if (!aInPlace) buffers.add(beneathReshapes(a));
      // The kernel reads X itself: computed, it is stored once (where the copy stored Xᵀ), in its
      // own layout where it is a view that does not preserve one.
      if (tn) {
        const x = a.inputs[0];
        if (isLayoutPreserving(x, plain)) buffers.add(layoutSource(x));
        else if (!strided(a, "columns")) buffers.add(beneathReshapes(x));
      }
      if (!isLayoutPreserving(b, plain) && !nt && !ntStrided && !strided(b, "rows")) {
        buffers.add(beneathReshapes(b));
      }
    }
  }
  if (opts.fuse === false) {
    return graph.nodes.filter((n) => buffers.has(n) && !isLeaf(n)).map((root) =>
      describeKernel([root], buffers, opts.maxRowLength)
    );
  }

  // Materialise until every kernel obeys the rules; each round fixes the violations it finds.
  const weight = (nodes: Iterable<Node>) => {
    let n = 0;
    for (const x of nodes) n += opts.bindingsOf?.(x) ?? 1;
    return n;
  };
  // A product read where it cannot be computed (inside another kernel's prologue, or through a
  // view) is materialised together with its elementwise epilogue: the kernel that computes it
  // then also applies the epilogue (a residual add read by both the next norm and the next add).
  const epilogueTop = (n: Node): Node => {
    if (wgslKind(n) !== "matmul") return n;
    let x = n;
    for (;;) {
      const c = consumerOf.get(x);
      if (consumerCount.get(x) !== 1 || outputs.has(x) || !c || buffers.has(c)) return x;
      if (!isElementwise(c.op) || !sameShape(c.shape, n.shape)) return x;
      // A sum of two products (an input gradient of two branches) ends the epilogue: one of
      // them must go to memory, and the other's kernel then adds it; unless the other is
      // summed into this one's kernel (`sumProducts`).
      const joins = (y: Node) =>
        y !== x && computesAnchor(y, buffers) &&
        !(y.op === "matmul" && summed?.(y, n, buffers) === true);
      if (c.inputs.some(joins)) return x;
      x = c;
    }
  };
  // A product joins another's sum through adds alone, each read once: the kernel then seeds the
  // anchor with the sum of both and reads the term as 0 (linear, so the adds still add up).
  const single = (x: Node) => consumerCount.get(x) === 1 && !outputs.has(x);
  const summed: SumTerm | undefined = opts.sumProducts
    ? (n, anchor, bufs, terms = []) => {
      const join = consumerOf.get(n)!;
      const reaches = (x: Node): boolean =>
        x === anchor ||
        (x.op === "add" && single(x) && !bufs.has(x) && x.inputs.some(reaches));
      const summedDepth = [anchor, ...terms, n].reduce((d, mm) => d + contraction(mm), 0);
      const fits = summedDepth <= (opts.maxProductDepth ?? Infinity);
      // f32 only: one accumulator for f16 products would skip the half rounding of each.
      return single(n) && n.dtype === "f32" && sameShape(n.shape, anchor.shape) && fits &&
        join.op === "add" && join.inputs.some((x) => x !== n && reaches(x));
    }
    : undefined;
  // A kernel's walk depends only on which of the nodes it touched are buffers: one that touched
  // none of the last round's new buffers (and was clean) is the same walk again.
  const walkOf = new Map<Node, Walk>();
  let added: Node[] = [];
  const walk = (root: Node) => {
    const cached = walkOf.get(root);
    if (cached && !cached.violation && !added.some((n) => cached.touched.has(n))) return cached;
    const w = walkKernel([root], buffers, opts.maxRowLength, summed);
    walkOf.set(root, w);
    return w;
  };
  for (let round = 0; round < graph.nodes.length + 2; round++) {
    const roots = graph.nodes.filter((n) => buffers.has(n) && !isLeaf(n));
    const walks = roots.map(walk);
    const fixes = new Set<Node>();
    walks.forEach((w, i) => {
      if (w.violation) fixes.add(epilogueTop(w.violation));
      else if (weight(w.reads) + weight([roots[i]]) > opts.maxStorageBuffers) {
        fixes.add(heaviestFusedInput(roots[i], w, buffers, opts.maxStorageBuffers, weight));
      }
    });
    if (fixes.size === 0) {
      // Rule 2: a non-trivial node fused into two kernels is computed once, into a buffer.
      // Its exception: a short elementwise chain over one stored array is recomputed.
      const recompute = opts.recompute !== false;
      const isBuffer = (n: Node) => buffers.has(n);
      const owners = new Map<Node, number>();
      walks.forEach((w) =>
        w.fused.forEach((n) => {
          const cheap = isCheapIndexing(n, buffers) || (recompute && cheapSource(n, isBuffer));
          if (!cheap) owners.set(n, (owners.get(n) ?? 0) + 1);
        })
      );
      const shared = [...owners].filter(([, c]) => c > 1).map(([n]) => n)
        .sort((a, b) => a.id - b.id);
      // Only the latest shared nodes: materialising them may make their producers private.
      const sharedSet = new Set(shared);
      // Of the latest, in order, one that is a short chain over one array stored before it (a
      // GELU's tanh over its input) is not stored: the next round recomputes it from that array.
      const stores = new Set<Node>();
      for (const n of shared) {
        const c = consumerOf.get(n);
        if (c && sharedSet.has(c) && consumerCount.get(n) === 1) continue;
        const stored = (x: Node) => x !== n && (buffers.has(x) || stores.has(x));
        if (recompute && cheapSource(n, stored)) continue;
        stores.add(n);
        fixes.add(beneathViews(n));
      }
    }
    if (fixes.size === 0) break;
    added = outermost(fixes, buffers);
    added.forEach((n) => buffers.add(n));
  }
  const roots = graph.nodes.filter((n) => buffers.has(n) && !isLeaf(n));
  const kernels = mergeElementwise(
    roots.map((r) => describeKernel([r], buffers, opts.maxRowLength, summed)),
    opts.maxStorageBuffers,
    weight,
    opts.coProducts === true,
    inPlaceCounter(graph, opts.donated, opts.bindingsOf),
    opts.siblingReductions !== false,
    opts.maxLoopIterations ?? Infinity,
  );
  // A product that only the outputs merged into its own kernel read (the MLP's hidden gradient,
  // read by the gate's and the up projection's gradients) is not stored.
  const read = new Set(kernels.flatMap((k) => k.reads));
  const pruned = kernels.map((k) => {
    if (k.kind !== "matmul") return k;
    const products = new Set([k.anchor, ...(k.coProducts ?? [])]);
    const unread = (r: Node) => products.has(r) && !read.has(r) && !outputs.has(r);
    const roots = k.roots.filter((r) => !unread(r));
    return roots.length > 0 && roots.length < k.roots.length ? { ...k, roots } : k;
  });
  return opts.inlineProducts
    ? inlineProducts(pruned, opts.inlineProducts, outputs, opts, weight)
    : pruned;
}

/**
 * Rule 10: each product kernel whose one output only a later row-wise kernel reads, with a
 * contraction of at most `maxDepth`, becomes part of that kernel, which computes the product's
 * elements (and its epilogue) where it reads them. The product's operands are buffers already, so
 * the row-wise kernel reads them instead of the product's output.
 */
function inlineProducts(
  kernels: KernelPlan[],
  maxDepth: number,
  outputs: ReadonlySet<Node>,
  opts: FusionOptions,
  weight: (nodes: Iterable<Node>) => number,
): KernelPlan[] {
  // Each element of a row costs its inlined contractions again in every phase that reads it.
  const rowWork = (k: KernelPlan, depth: number) => {
    const row = k.rowAxes.reduce((p, a) => p * k.roots[0].shape[a], 1);
    return (k.rowReductions.length + 1) * row * (1 + inlinedDepth(k) + depth);
  };
  const readers = new Map<Node, KernelPlan[]>();
  for (const k of kernels) {
    for (const n of k.reads) readers.set(n, [...(readers.get(n) ?? []), k]);
  }
  const into = new Map<KernelPlan, KernelPlan>(); // row-wise kernel → it with products inlined
  const gone = new Set<KernelPlan>();
  for (const m of kernels) {
    if (m.kind !== "matmul" || m.terms || m.coProducts || m.roots.length !== 1) continue;
    const [root] = m.roots;
    const depth = contraction(m.anchor!);
    const [reader, ...others] = readers.get(root) ?? [];
    if (outputs.has(root) || !reader || others.length > 0 || reader.kind !== "rowwise") continue;
    if (depth > maxDepth || !isFloat(m.anchor!.dtype)) continue;
    const row = into.get(reader) ?? reader;
    const reads = [...new Set([...row.reads.filter((n) => n !== root), ...m.reads])];
    if (weight(reads) + weight(row.roots) > opts.maxStorageBuffers) continue;
    if (rowWork(row, depth) >= (opts.maxLoopIterations ?? Infinity)) continue;
    into.set(reader, {
      ...row,
      fused: [...new Set([...row.fused, ...m.fused])].sort((a, b) => a.id - b.id),
      reads,
      // The product reads its operands along whole rows and columns, not at the kernel's own
      // index: writing the output over one of them (in place, memory_plan.ts) would let a row
      // read elements another row already overwrote.
      identityReads: new Set(
        [...row.identityReads].filter((n) => n !== root && !m.reads.includes(n)),
      ),
    });
    gone.add(m);
  }
  return kernels.filter((k) => !gone.has(k)).map((k) => into.get(k) ?? k);
}

/** `x` computes a reduction or product inline (through elementwise ops and reshapes). */
function computesAnchor(x: Node, buffers: ReadonlySet<Node>, seen = new Set<Node>()): boolean {
  if (buffers.has(x) || isLeaf(x) || seen.has(x)) return false;
  seen.add(x); // shared sub-expressions (a PRNG's rounds) are searched once
  if (isAnchorOp(x)) return true;
  if (!isElementwise(x.op) && x.op !== "reshape") return false;
  return x.inputs.some((y) => computesAnchor(y, buffers, seen));
}

/**
 * The fixes no other fix computes: materialising one changes what the kernels beneath it see, so
 * a violation found inside its expression (a softmax's row maximum reached through the division
 * a matmul reads as its operand) may be gone next round, and fixing both at once would split
 * the row-wise kernel needlessly.
 */
function outermost(fixes: ReadonlySet<Node>, buffers: ReadonlySet<Node>): Node[] {
  const beneath = new Set<Node>();
  const mark = (n: Node) => {
    for (const x of n.inputs) {
      if (beneath.has(x) || buffers.has(x)) continue;
      beneath.add(x);
      mark(x);
    }
  };
  fixes.forEach(mark);
  return [...fixes].filter((n) => !beneath.has(n));
}

/**
 * The array a matmul operand reads in place as a strided view loaded as vec4 along `direction`
 * (fusion option `stridedOperands`), or undefined where it must be copied.
 */
function stridedSource(
  x: Node,
  direction: "rows" | "columns",
  plain: (n: Node) => boolean,
  opts: FusionOptions,
): Node | undefined {
  if (!opts.stridedOperands) return undefined;
  const view = stridedView(x, plain);
  if (!view || isSplat(view.source) || (opts.bindingsOf?.(view.source) ?? 1) !== 1) {
    return undefined;
  }
  return vec4Direction(x, view) === direction ? view.source : undefined;
}

/** The array a layout-preserving view reads (through reshapes and contiguous slices). */
function layoutSource(n: Node): Node {
  let x = n;
  while (x.op === "reshape" || x.op === "slice") x = x.inputs[0];
  return x;
}

/**
 * The node a reshape chain views: materialising it instead of the reshape lets every reader (two
 * kernels, or two matmuls reading it under different reshapes) share one buffer through free
 * views, and the kernel computing it may be a matmul epilogue (which iterates the product's
 * shape, not the reshape's).
 */
function beneathReshapes(n: Node): Node {
  return beneath(n, RESHAPE);
}

/**
 * The node a chain of reshapes and broadcasts views: a shared broadcast (a row statistic read
 * back over the row by two kernels) is stored unbroadcast, and its readers expand it for free.
 */
function beneathViews(n: Node): Node {
  return beneath(n, EXPANDING_VIEWS);
}

const RESHAPE = new Set(["reshape"]);
const EXPANDING_VIEWS = new Set(["reshape", "broadcast"]);

/** The node beneath a chain of `views` of `n`, stopping above leaves and splats. */
function beneath(n: Node, views: ReadonlySet<string>): Node {
  let x = n;
  while (views.has(x.op) && !isLeaf(x.inputs[0]) && !isSplat(x.inputs[0])) x = x.inputs[0];
  return x;
}

/** Whether product `n` is summed into `anchor`'s kernel as a term (fusion option `sumProducts`). */
type SumTerm = (
  n: Node,
  anchor: Node,
  buffers: ReadonlySet<Node>,
  /** The terms already summed into the anchor. */
  terms?: readonly Node[],
) => boolean;

interface Walk {
  anchor?: Node;
  /** Products summed into the anchor (`KernelPlan.terms`). */
  terms: Node[];
  rowReductions: Node[];
  rowAxes?: number[];
  /** Row reductions found outside a reduction's prologue (incompatible with an anchor). */
  rootRowReduction?: Node;
  fused: Set<Node>;
  reads: Set<Node>;
  identityReads: Map<Node, boolean>;
  violation?: Node;
  /** Every node the walk looked at (what decides whether a new buffer changes it). */
  touched: Set<Node>;
}

type Mode = "full" | "other" | "operand" | "rowOuter";

/**
 * Walks the expression of a kernel. `full` means the node is read at the kernel's own iteration
 * index (the output index, or inside a reduction's prologue the full input index); `other` after
 * a view; `operand` inside a matmul operand.
 */
function walkKernel(
  roots: readonly Node[],
  buffers: Set<Node>,
  maxRowLength = Infinity,
  summed?: SumTerm,
): Walk {
  const w: Walk = {
    terms: [],
    rowReductions: [],
    fused: new Set(),
    reads: new Set(),
    identityReads: new Map(),
    touched: new Set(),
  };
  const rootSet = new Set(roots);
  // A matmul stored through a permutation of its axes (attention heads merged back into
  // [b, t, h, d]): the kernel iterates the product's space and writes each element where the
  // permutation puts it, so no other kernel copies the product into that layout.
  const permuted = roots.length === 1 && isPermutedStore(roots[0], buffers);
  const space = permuted ? roots[0].inputs[0].shape : roots[0].shape;
  const rowSet = new Set<Node>();

  /**
   * Rule 5: `n` broadcasts a small expression back over some axes of the kernel's space. If that
   * expression (elementwise ops, reshapes, stopGradient) contains reductions over exactly those
   * axes of an input of the kernel's full shape, return them.
   */
  const rowReductionsUnder = (n: Node, inPrologue: boolean): Node[] => {
    if (n.op !== "broadcast") return [];
    const fullShape = inPrologue ? w.anchor!.inputs[0].shape : space;
    const src = n.inputs[0];
    if (!sameShape(n.shape, fullShape)) return [];
    const axes = src.shape.flatMap((d, i) => (d === 1 && n.shape[i] !== 1 ? [i] : []));
    const wanted = inPrologue ? reducedAxes(w.anchor!) : w.rowAxes;
    if (axes.length === 0) return [];
    if (wanted && (wanted.length !== axes.length || wanted.some((a, i) => a !== axes[i]))) {
      return [];
    }
    const rowLength = axes.reduce((p, a) => p * fullShape[a], 1);
    const rows = fullShape.reduce((p, d) => p * d, 1) / Math.max(1, rowLength);
    if (rowLength > MAX_SERIAL_ROW && rows < MIN_ROWS) return [];
    if (rowLength > maxRowLength) return [];
    const found: Node[] = [];
    const seen = new Set<Node>();
    const search = (x: Node) => {
      w.touched.add(x);
      if (seen.has(x) || buffers.has(x) || isSplat(x)) return;
      seen.add(x);
      if (x.op === "sum" || x.op === "max") {
        const ax = reducedAxes(x);
        if (
          sameShape(x.inputs[0].shape, fullShape) && ax.length === axes.length &&
          ax.every((a, i) => a === axes[i])
        ) found.push(x);
        return;
      }
      const elementwise = wgslKind(x) === "inline" && !VIEW_OPS.has(x.op) && x.op !== "iota";
      if (elementwise || x.op === "reshape") x.inputs.forEach(search);
    };
    search(src);
    return found;
  };

  // A visit's effects depend only on (node, mode, prologue): revisiting through another path
  // adds nothing, and skipping it keeps shared sub-expressions under views (e.g. the rounds of a
  // PRNG) from being walked once per path — exponentially many.
  const visited = new Set<string>();
  const visit = (n: Node, mode: Mode, inPrologue: boolean, isRoot: boolean): void => {
    if (w.violation) return;
    w.touched.add(n);
    const key = `${n.id}:${mode}:${inPrologue ? 1 : 0}:${isRoot ? 1 : 0}`;
    if (visited.has(key)) return;
    visited.add(key);
    if (!isRoot && buffers.has(n) && !rootSet.has(n)) {
      w.reads.add(n);
      const identity = mode === "full" && !inPrologue && n.size === roots[0].size && !permuted;
      w.identityReads.set(n, (w.identityReads.get(n) ?? true) && identity);
      return;
    }
    if (isSplat(n) || n.op === "constant") return;
    if (isRoot && permuted) {
      w.fused.add(n);
      visit(n.inputs[0], "full", false, false);
      return;
    }
    if (w.fused.has(n) && mode === "full" && !isAnchorOp(n)) return; // same index: computed once
    if (w.fused.has(n) && isAnchorOp(n)) {
      // A reduction is computed at one index only: its own (anchor) or the row's (row phase).
      const sameIndex = mode === "full" && !inPrologue &&
        (n === w.anchor || w.rowReductions.includes(n));
      if (!sameIndex && !(mode === "rowOuter" && rowSet.has(n))) w.violation = n;
      return;
    }
    if (mode === "rowOuter" && rowSet.has(n)) {
      w.fused.add(n);
      if (!w.rowReductions.includes(n)) w.rowReductions.push(n);
      visit(n.inputs[0], "full", inPrologue, false);
      return;
    }
    if (
      mode === "rowOuter" && wgslKind(n) === "inline" && !VIEW_OPS.has(n.op) ||
      mode === "rowOuter" && n.op === "reshape"
    ) {
      w.fused.add(n);
      n.inputs.forEach((x) => visit(x, "rowOuter", inPrologue, false));
      return;
    }
    if (isAnchorOp(n)) {
      const kind = wgslKind(n);
      const term = kind === "matmul" && w.anchor !== undefined && w.anchor !== n &&
        wgslKind(w.anchor) === "matmul" && mode === "full" && !inPrologue &&
        summed?.(n, w.anchor, buffers, w.terms) === true;
      if (term) {
        w.terms.push(n);
        w.fused.add(n);
        n.inputs.forEach((x) => visit(x, "operand", true, false));
        return;
      }
      // A matmul's epilogue must iterate exactly its output (its tile indices are seeded).
      const ok = (isRoot || (mode === "full" && !inPrologue)) && (!w.anchor || w.anchor === n) &&
        (kind !== "matmul" || sameShape(n.shape, space));
      if (!ok) {
        w.violation = n;
        return;
      }
      w.anchor = n;
      w.fused.add(n);
      if (kind === "matmul") n.inputs.forEach((x) => visit(x, "operand", true, false));
      else if (kind === "reduce") visit(n.inputs[0], "full", true, false);
      else {
        // scatterAdd: an operand buffer is read at the output's own index (so the memory plan
        // may update it in place and the kernel then skips copying it).
        const [operand, ...rest] = n.inputs;
        visit(operand, buffers.has(operand) ? "full" : "other", !buffers.has(operand), false);
        rest.forEach((x) => visit(x, "other", true, false));
      }
      return;
    }
    if (mode === "operand" && !VIEW_OPS.has(n.op) && n.op !== "iota") {
      w.violation = n; // a computed matmul operand would be recomputed per output: materialise
      return;
    }
    if (mode === "full") {
      const reductions = rowReductionsUnder(n, inPrologue);
      if (reductions.length) {
        reductions.forEach((r) => rowSet.add(r));
        if (!inPrologue) {
          w.rowAxes = reducedAxes(reductions[0]);
          w.rootRowReduction ??= reductions[0];
        }
        w.fused.add(n);
        visit(n.inputs[0], "rowOuter", inPrologue, false);
        return;
      }
    }
    w.fused.add(n);
    const next: Mode = mode === "operand"
      ? "operand"
      : (VIEW_OPS.has(n.op) && !isUnitReshape(n)) || mode === "rowOuter"
      ? "other"
      : mode;
    for (const x of n.inputs) visit(x, next, inPrologue, false);
  };
  for (const r of roots) visit(r, "full", false, true);
  // Row reductions over a product: the product (with its epilogue) goes to memory and one
  // row-wise kernel reads it, rather than each row reduction becoming a kernel of its own.
  if (!w.violation && w.anchor && wgslKind(w.anchor) === "matmul" && w.rowReductions.length) {
    w.violation = w.anchor;
  }
  if (!w.violation && w.anchor && w.rootRowReduction) w.violation = w.rootRowReduction;
  return w;
}

/**
 * `root` permutes the axes of a product computed in its own kernel, keeping the last axis last
 * (each tile row is still stored as consecutive elements).
 */
export function isPermutedStore(root: Node, buffers: ReadonlySet<Node>): boolean {
  if (root.op !== "transpose") return false;
  const perm = root.params.perm as number[];
  const mm = root.inputs[0];
  return perm[perm.length - 1] === perm.length - 1 && mm.op === "matmul" &&
    !buffers.has(mm);
}

/**
 * The fused node (not the root) whose materialisation saves the most bindings: the bindings its
 * sub-expression reads, less the ones its own buffer would take.
 */
function heaviestFusedInput(
  root: Node,
  w: Walk,
  buffers: Set<Node>,
  max: number,
  weight: (nodes: Iterable<Node>) => number,
): Node {
  const memo = new Map<Node, Set<Node>>();
  const readsOf = (n: Node): Set<Node> => {
    if (buffers.has(n)) return new Set([n]);
    let s = memo.get(n);
    if (!s) {
      s = new Set();
      for (const x of n.inputs) for (const b of readsOf(x)) s.add(b);
      memo.set(n, s);
    }
    return s;
  };
  let best: Node | undefined;
  let bestCount = -1;
  for (const n of w.fused) {
    if (n === root || isSplat(n)) continue;
    const c = weight(readsOf(n)) - weight([n]);
    if (c > bestCount) [best, bestCount] = [n, c];
  }
  if (!best || bestCount <= 0) {
    throw new Error(
      `fusion: ${root.op} alone reads ${w.reads.size} buffers; the device allows ${max} ` +
        "storage bindings per kernel (output included; a buffer over the binding size takes " +
        "one per window)",
    );
  }
  return best;
}

function describeKernel(
  roots: Node[],
  buffers: Set<Node>,
  maxRowLength?: number,
  summed?: SumTerm,
): KernelPlan {
  const w = walkKernel(roots, buffers, maxRowLength, summed);
  if (w.violation) throw new Error(`internal: fusion left a violation at ${w.violation.op}`);
  const anchorKind = w.anchor ? wgslKind(w.anchor) : undefined;
  const kind: KernelKind = anchorKind === "reduce"
    ? "reduce"
    : anchorKind === "matmul"
    ? "matmul"
    : anchorKind === "scatter"
    ? "scatter"
    : w.rowReductions.length
    ? "rowwise"
    : "elementwise";
  const identityReads = new Set([...w.identityReads].filter(([, v]) => v).map(([n]) => n));
  return {
    roots,
    kind,
    anchor: w.anchor,
    rowReductions: [...w.rowReductions].sort((a, b) => a.id - b.id),
    rowAxes: w.rowAxes ?? (w.anchor && anchorKind === "reduce" ? reducedAxes(w.anchor) : []),
    fused: [...w.fused].sort((a, b) => a.id - b.id),
    reads: [...w.reads],
    identityReads,
    ...(w.terms.length ? { terms: w.terms } : {}),
  };
}

/** Elements a reduction loops over per output. */
const reducedLength = (red: Node) =>
  reducedAxes(red).reduce((p, a) => p * red.inputs[0].shape[a], 1);

/**
 * Whether two reduction kernels may be one (rule 11): sums or maxima over the same axes of one
 * shape, stored at one shape, with no inlined products, and every reduction of both within the
 * device's loop budget per output.
 */
function siblingSpaces(a: KernelPlan, b: KernelPlan, maxLoopIterations: number): boolean {
  if (a.kind !== "reduce" || b.kind !== "reduce" || a.terms || b.terms) return false;
  const x = a.anchor!, y = b.anchor!;
  const plain = (n: Node) => n.op === "sum" || n.op === "max";
  const reductions = [...a.rowReductions, x, ...b.rowReductions, y];
  return plain(x) && plain(y) && sameShape(x.shape, y.shape) && reducedLength(y) > 1 &&
    sameShape(x.inputs[0].shape, y.inputs[0].shape) &&
    reducedAxes(x).join() === reducedAxes(y).join() &&
    sameSqueezed(a.roots[0].shape, b.roots[0].shape) &&
    inlinedDepth(a) === 0 && inlinedDepth(b) === 0 &&
    reductions.reduce((n, r) => n + reducedLength(r), 0) < maxLoopIterations - 1;
}

/**
 * Whether reduction kernel `k` reads `prev`'s outputs, if at all, only where a row phase of one
 * kernel would have them: at its output index, or in its prologue broadcast back over the reduced
 * axes (a target's log-probability x − lse summed against a one-hot reads lse that way).
 */
function readsAtRows(prev: KernelPlan, k: KernelPlan): boolean {
  if (!sameSqueezed(prev.roots[0].shape, k.roots[0].shape)) return false;
  const space = k.anchor!.inputs[0].shape, axes = reducedAxes(k.anchor!);
  const rowShape = space.map((d, i) => (axes.includes(i) ? 1 : d));
  const users = (x: Node) => k.fused.filter((n) => n.inputs.includes(x));
  // Elementwise at the output's size is the epilogue: the reduced axes are longer than 1.
  const atOutput = (u: Node) =>
    wgslKind(u) === "inline" && !VIEW_OPS.has(u.op) && u.op !== "iota" &&
    u.size === k.anchor!.size;
  const overRows = (x: Node): boolean =>
    users(x).every((u) =>
      u.op === "reshape"
        ? overRows(u)
        : u.op === "broadcast"
        ? sameShape(u.inputs[0].shape, rowShape) && sameShape(u.shape, space)
        : atOutput(u)
    );
  return prev.roots.every((r) =>
    !k.reads.includes(r) || k.identityReads.has(r) || (r.size === k.anchor!.size && overRows(r))
  );
}

/** Bindings a kernel's outputs share with inputs they are written over (see `inPlaceCounter`). */
type InPlaceCounter = (roots: readonly Node[], soleReads: readonly Node[]) => number;

/**
 * How many of `roots` the memory plan writes over one of `soleReads` (reads at the output's index
 * that no other kernel reads): donated graph inputs, bound whole, of a root's dtype and size, not
 * themselves outputs. Each root takes one such input, as the memory plan's matching does within
 * each dtype and size, so the plan binds at most the count this leaves. 0 without donations.
 */
function inPlaceCounter(
  graph: Graph,
  donated: ReadonlySet<Node> | undefined,
  bindingsOf: ((n: Node) => number) | undefined,
): InPlaceCounter {
  if (!donated?.size) return () => 0;
  const outputs = new Set(graph.outputs);
  return (roots, soleReads) => {
    const free = soleReads.filter((r) =>
      donated.has(r) && !outputs.has(r) && (bindingsOf?.(r) ?? 1) === 1
    );
    let shared = 0;
    for (const root of roots) {
      const i = free.findIndex((r) => r.dtype === root.dtype && r.size === root.size);
      if (i >= 0) {
        free.splice(i, 1);
        shared++;
      }
    }
    return shared;
  };
}

/**
 * Rule 8: merges an elementwise kernel into an earlier one of the same shape when nothing between
 * them produces what it reads and it reads the earlier one's outputs (if at all) only at the same
 * index. The earlier one may be a matmul whose output it reads: the tile epilogue then stores
 * both (a gate's activation next to the gate, the gated product next to the up projection).
 */
function mergeElementwise(
  kernels: KernelPlan[],
  maxBuffers: number,
  weight: (nodes: Iterable<Node>) => number,
  coProducts: boolean,
  inPlace: InPlaceCounter,
  siblings: boolean,
  maxLoopIterations: number,
): KernelPlan[] {
  /** How many of the current kernels read each node. */
  const readers = new Map<Node, number>();
  for (const k of kernels) for (const n of k.reads) readers.set(n, (readers.get(n) ?? 0) + 1);
  /** `first` and `then` as one kernel, or undefined past the binding cap. */
  const merge = (first: KernelPlan, then: KernelPlan): KernelPlan | undefined => {
    const roots = [...first.roots, ...then.roots];
    const reads = [...new Set([...first.reads, ...then.reads])].filter((n) => !roots.includes(n));
    const identity = (n: Node) =>
      (!first.reads.includes(n) || first.identityReads.has(n)) &&
      (!then.reads.includes(n) || then.identityReads.has(n));
    // Readers of n once merged: the two kernels count as one.
    const readersAfter = (n: Node) =>
      readers.get(n)! - (first.reads.includes(n) && then.reads.includes(n) ? 1 : 0);
    const shared = inPlace(roots, reads.filter((n) => identity(n) && readersAfter(n) === 1));
    if (weight(reads) + weight(roots) - shared > maxBuffers) return undefined;
    for (const n of first.reads) if (then.reads.includes(n)) readers.set(n, readers.get(n)! - 1);
    return {
      ...first,
      roots,
      fused: [...new Set([...first.fused, ...then.fused])].sort((a, b) => a.id - b.id),
      reads,
      identityReads: new Set(reads.filter(identity)),
    };
  };
  /** `k` reads `prev`'s outputs, if at all, only at its own index. */
  const sameIndex = (prev: KernelPlan, k: KernelPlan) =>
    sameShape(prev.roots[0].shape, k.roots[0].shape) &&
    prev.roots.every((r) => !k.reads.includes(r) || k.identityReads.has(r));
  /** A product kernel iterating its own product's space (not stored through a permutation). */
  const plainProduct = (k: KernelPlan) =>
    k.kind === "matmul" && !transposesProduct(k.roots[0], k.anchor) &&
    sameShape(k.roots[0].shape, k.anchor!.shape);
  /** Rule 9: `k`'s product computed beside `prev`'s (`KernelPlan.coProducts`), if allowed. */
  const coProduct = (prev: KernelPlan, k: KernelPlan): KernelPlan | undefined => {
    const ok = coProducts && plainProduct(prev) && plainProduct(k) && !prev.terms &&
      !prev.coProducts && !k.coProducts && isFloat(prev.anchor!.dtype) &&
      prev.anchor!.dtype === k.anchor!.dtype && sameShape(prev.anchor!.shape, k.anchor!.shape);
    const both = ok ? merge(prev, k) : undefined;
    if (!both) return undefined;
    const { terms: _, ...rest } = both;
    return {
      ...rest,
      anchor: k.anchor,
      ...(k.terms ? { terms: k.terms } : {}),
      coProducts: [prev.anchor!],
    };
  };
  /**
   * Rule 11: `k`'s reduction computed in `prev`'s kernel, when both reduce one space over the same
   * axes (a log-sum-exp and the target's logit over a row of logits; a count and the sum it
   * divides): `prev`'s reduction becomes a row phase of `k`'s kernel, each stored as before.
   */
  const siblingReductions = (prev: KernelPlan, k: KernelPlan): KernelPlan | undefined => {
    if (!siblingSpaces(prev, k, maxLoopIterations)) return undefined;
    const both = merge(prev, k);
    if (!both) return undefined;
    const rowReductions = [...prev.rowReductions, prev.anchor!, ...k.rowReductions]
      .sort((a, b) => a.id - b.id);
    return { ...both, anchor: k.anchor, rowReductions };
  };
  const out: KernelPlan[] = [];
  // The product kernel at j joins the kernel it reads from last, where that is a product kernel it
  // reads at its own index (the gated product, merged into the up projection, reads the gate).
  const joinCoProduct = (j: number) => {
    const k = out[j];
    for (let i = j - 1; i >= 0; i--) {
      if (!out[i].roots.some((r) => k.reads.includes(r))) continue;
      const both = sameIndex(out[i], k) ? coProduct(out[i], k) : undefined;
      if (both) {
        out[i] = both;
        out.splice(j, 1);
      }
      return;
    }
  };
  for (const k of kernels) {
    let merged = false;
    for (let j = out.length - 1; j >= 0 && k.kind === "reduce" && siblings; j--) {
      const both = readsAtRows(out[j], k) ? siblingReductions(out[j], k) : undefined;
      if (both) {
        out[j] = both;
        merged = true;
        break;
      }
      if (out[j].roots.some((r) => k.reads.includes(r))) break;
    }
    for (let j = out.length - 1; j >= 0 && k.kind === "elementwise"; j--) {
      const prev = out[j];
      const readsPrev = prev.roots.some((r) => k.reads.includes(r));
      const permuted = transposesProduct(prev.roots[0], prev.anchor);
      const intoProduct = prev.kind === "matmul" && readsPrev && !permuted &&
        sameShape(prev.roots[0].shape, prev.anchor!.shape);
      const both = (prev.kind === "elementwise" || intoProduct) && sameIndex(prev, k) &&
        merge(prev, k);
      if (both) {
        out[j] = both;
        merged = true;
        if (coProducts && both.kind === "matmul") joinCoProduct(j);
        break;
      }
      if (readsPrev) break; // k cannot move above a kernel whose output it reads
    }
    // Else an earlier elementwise kernel moves down to k, when no kernel between them reads what
    // it writes (a query's rotary embedding next to the key's, past the key's projection).
    const read = new Set<Node>();
    const lowest = Math.max(0, out.length - MERGE_WINDOW);
    for (let j = out.length - 1; !merged && j >= lowest && k.kind === "elementwise"; j--) {
      const prev = out[j];
      const free = prev.kind === "elementwise" && prev.roots.every((r) => !read.has(r));
      const both = free && sameIndex(prev, k) && merge(prev, k);
      if (both) {
        out.splice(j, 1);
        out.push(both);
        merged = true;
      }
      prev.reads.forEach((n) => read.add(n));
    }
    if (merged) continue;
    out.push(k);
    // A product kernel whose epilogue reads an earlier product at its own index joins it.
    if (coProducts && k.kind === "matmul") joinCoProduct(out.length - 1);
  }
  return out;
}
