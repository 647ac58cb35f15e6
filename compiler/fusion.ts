/**
 * Fusion: which nodes become buffers (kernel boundaries) and which are recomputed inline inside
 * the kernel that reads them. The rules, in the spirit of tinygrad and jax-js (see peers.md §2.1):
 *
 * 1. Graph inputs, array constants and graph outputs are buffers. Scalar constants, and
 *    reshape/broadcast chains of them (splats), are literals.
 * 2. Elementwise ops, views (reshape, transpose, broadcast, slice, pad, concat), gather and iota
 *    are index arithmetic and fuse into their unique consumer. A node read by several consumers
 *    is a buffer, unless it is pure index arithmetic over a buffer, a splat or an iota.
 * 3. A reduction or matmul ends a kernel but absorbs an elementwise *epilogue*: it fuses into its
 *    unique consumer when that consumer reads it at the same index (same shape, no view between).
 *    A kernel holds at most one reduction or matmul (its anchor).
 * 4. A reduction absorbs an elementwise *prologue* (its input expression); a matmul only views of
 *    buffers, because each operand element is reused across a whole row or column.
 * 5. scatterAdd is its own kernel.
 * 6. No kernel binds more storage buffers than the device grants: past the cap, the fused
 *    sub-expression reading the most buffers is materialised (jax-js's backtracking rule).
 */

import { getPrimitive, type Graph, type Node } from "../dsl/mod.ts";

export type KernelKind = "elementwise" | "reduce" | "matmul" | "scatter";

export interface KernelPlan {
  /** The buffer this kernel writes. */
  root: Node;
  kind: KernelKind;
  /** The reduction, matmul or scatter the kernel is built around (on an identity path). */
  anchor?: Node;
  /** Nodes computed inside the kernel, in topological order (root last). */
  fused: Node[];
  /** Buffers read, in first-read order. */
  reads: Node[];
  /** Buffers read only at the kernel's own output index (safe to update in place). */
  identityReads: Set<Node>;
}

export interface FusionOptions {
  /** Storage buffers a kernel may bind, the output included. */
  maxStorageBuffers: number;
  /** false: one kernel per primitive (the op-by-op baseline). */
  fuse?: boolean;
}

const VIEW_OPS = new Set(["reshape", "transpose", "broadcast", "slice", "pad", "concat", "gather"]);

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

/** Pure index arithmetic over buffers (views of a buffer, splats, iota): free to duplicate. */
function isCheapIndexing(node: Node, buffers: Set<Node>): boolean {
  if (buffers.has(node) || isSplat(node) || node.op === "iota") return true;
  if (!VIEW_OPS.has(node.op) || node.op === "gather") return false;
  return node.inputs.every((x) => isCheapIndexing(x, buffers));
}

export function planFusion(graph: Graph, opts: FusionOptions): KernelPlan[] {
  const consumers = new Map<Node, number>();
  for (const n of graph.nodes) {
    for (const x of n.inputs) consumers.set(x, (consumers.get(x) ?? 0) + 1);
  }
  for (const n of graph.outputs) consumers.set(n, (consumers.get(n) ?? 0) + 1);
  const outputs = new Set(graph.outputs);
  const consumerOf = new Map<Node, Node>();
  for (const n of graph.nodes) for (const x of n.inputs) consumerOf.set(x, n);

  const buffers = new Set<Node>();
  for (const n of graph.nodes) {
    if (n.op === "input" || outputs.has(n)) buffers.add(n);
    else if (n.op === "constant") {
      if (n.size > 1) buffers.add(n);
    } else if (opts.fuse === false) {
      if (!isSplat(n)) buffers.add(n);
    } else if (wgslKind(n) === "scatter") buffers.add(n);
    else if (wgslKind(n) === "reduce" || wgslKind(n) === "matmul") {
      const c = consumerOf.get(n);
      const epilogue = consumers.get(n) === 1 && c !== undefined && !VIEW_OPS.has(c.op) &&
        wgslKind(c) === "inline" && c.shape.length === n.shape.length &&
        c.shape.every((d, i) => d === n.shape[i]);
      if (!epilogue) buffers.add(n);
    } else if ((consumers.get(n) ?? 0) > 1 && !isCheapIndexing(n, buffers)) buffers.add(n);
  }

  // Enforce one anchor per kernel on an identity path, matmul operands as views, and the
  // storage-buffer cap; each violation materialises a node, then the walk restarts.
  for (let guard = 0; guard < 10 * graph.nodes.length + 10; guard++) {
    const violation = findViolation(graph, buffers, opts.maxStorageBuffers);
    if (!violation) break;
    buffers.add(violation);
  }
  return graph.nodes.filter((n) => buffers.has(n) && !isLeaf(n)).map((root) =>
    describeKernel(root, buffers)
  );
}

interface Walk {
  anchor?: Node;
  fused: Set<Node>;
  reads: Set<Node>;
  identityReads: Map<Node, boolean>;
  violation?: Node;
}

/** Walks the expression of a kernel rooted at `root` (a buffer node). */
function walkKernel(root: Node, buffers: Set<Node>): Walk {
  const w: Walk = { fused: new Set(), reads: new Set(), identityReads: new Map() };
  // mode: "identity" (read at the output index), "prologue" (inside a reduction), "operand"
  // (a matmul operand: views only), "free" (anything goes, e.g. scatter operands).
  const visit = (n: Node, mode: "identity" | "other" | "prologue" | "operand", isRoot: boolean) => {
    if (w.violation) return;
    if (!isRoot && buffers.has(n)) {
      w.reads.add(n);
      w.identityReads.set(n, (w.identityReads.get(n) ?? true) && mode === "identity");
      return;
    }
    if (isSplat(n) || n.op === "constant") return;
    if (isAnchorOp(n)) {
      const kind = wgslKind(n);
      if (!isRoot && (mode !== "identity" || w.anchor)) {
        w.violation = n;
        return;
      }
      if (w.anchor && w.anchor !== n) {
        w.violation = n;
        return;
      }
      w.anchor = n;
      w.fused.add(n);
      const inner = kind === "matmul" ? "operand" : kind === "reduce" ? "prologue" : "other";
      for (const x of n.inputs) visit(x, inner, false);
      return;
    }
    if (mode === "operand" && !VIEW_OPS.has(n.op) && n.op !== "iota") {
      w.violation = n; // a computed matmul operand would be recomputed per output: materialise
      return;
    }
    w.fused.add(n);
    const next = mode === "identity" && !VIEW_OPS.has(n.op)
      ? "identity"
      : mode === "identity"
      ? "other"
      : mode;
    for (const x of n.inputs) visit(x, next, false);
  };
  visit(root, "identity", true);
  return w;
}

function findViolation(graph: Graph, buffers: Set<Node>, maxBuffers: number): Node | undefined {
  for (const root of graph.nodes) {
    if (!buffers.has(root) || isLeaf(root)) continue;
    const w = walkKernel(root, buffers);
    if (w.violation) return w.violation;
    if (w.reads.size + 1 > maxBuffers) return heaviestFusedInput(root, w, buffers);
  }
  return undefined;
}

/** The fused node (not the root) whose sub-expression reads the most distinct buffers. */
function heaviestFusedInput(root: Node, w: Walk, buffers: Set<Node>): Node {
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
    const c = readsOf(n).size;
    if (c > bestCount) [best, bestCount] = [n, c];
  }
  if (!best || bestCount <= 1) {
    throw new Error(
      `fusion: a single ${root.op} reads ${w.reads.size} buffers, more than the device's ` +
        `${maxBuffersMessage(w.reads.size)}`,
    );
  }
  return best;
}

function maxBuffersMessage(n: number): string {
  return `storage-buffer limit allows (${n} + output)`;
}

function describeKernel(root: Node, buffers: Set<Node>): KernelPlan {
  const w = walkKernel(root, buffers);
  const kind: KernelKind = !w.anchor ? "elementwise" : wgslKind(w.anchor) as KernelKind;
  const fused = [...w.fused].sort((a, b) => a.id - b.id);
  return {
    root,
    kind: kind === "reduce" || kind === "matmul" || kind === "scatter" ? kind : "elementwise",
    anchor: w.anchor,
    fused,
    reads: [...w.reads],
    identityReads: new Set([...w.identityReads].filter(([, v]) => v).map(([n]) => n)),
  };
}
