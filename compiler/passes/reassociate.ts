/**
 * Matmul reassociation: P·(R·S) → (P·R)·S (and (R·S)·P → R·(S·P)) when the product R·S is a
 * large intermediate that only feeds thin products. This is what keeps projected gradients cheap:
 * HD-PiSSA's g_A = Bᵀ·G with G = δᵀ·x (m×n, formed by autodiff) becomes (δ·B)ᵀ·x, and
 * g_B = G·Aᵀ becomes δᵀ·(x·Aᵀ): the dense gradient is never formed (DCE removes it).
 *
 * A candidate Q is a matmul, a last-two-axes transpose of one, or a sum of such terms. It is
 * dissolved only when every consumer is a matmul and the reassociated products cost fewer
 * multiply-adds in total than forming Q and the original products.
 */

import type { Graph, Node } from "../../dsl/mod.ts";
import { swapsLastTwo } from "../views.ts";
import { type Emitter, rewriteGraph } from "./rewrite.ts";

/** Q as a sum of products [left, right, transposed?]: term = (left·right) or (left·right)ᵀ. */
type Term = { left: Node; right: Node; transposed: boolean };

function terms(q: Node): Term[] | undefined {
  if (q.op === "matmul") return [{ left: q.inputs[0], right: q.inputs[1], transposed: false }];
  if (swapsLastTwo(q) && q.inputs[0].op === "matmul") {
    const m = q.inputs[0];
    return [{ left: m.inputs[0], right: m.inputs[1], transposed: true }];
  }
  if (q.op === "add") {
    const a = terms(q.inputs[0]), b = terms(q.inputs[1]);
    return a && b ? [...a, ...b] : undefined;
  }
  return undefined;
}

const rows = (n: Node) => n.shape[n.shape.length - 2];
const cols = (n: Node) => n.shape[n.shape.length - 1];
const batch = (n: Node) => n.shape.slice(0, -2).reduce((a, b) => a * b, 1);

/** Multiply-adds of X·Y. */
const productCost = (xRows: number, inner: number, yCols: number) => xRows * inner * yCols;

/** Cost of the term's own product R·S. */
function termCost(t: Term): number {
  return batch(t.left) * productCost(rows(t.left), cols(t.left), cols(t.right));
}

/** A term seen from the consumer: factors (X, Y) with Qterm = X·Y (transposes pushed inside). */
function orient(t: Term): { x: Node; y: Node; xT: boolean; yT: boolean } {
  // (R·S)ᵀ = Sᵀ·Rᵀ
  return t.transposed
    ? { x: t.right, y: t.left, xT: true, yT: true }
    : { x: t.left, y: t.right, xT: false, yT: false };
}

const dim = (n: Node, transposed: boolean, which: "rows" | "cols") =>
  (which === "rows") !== transposed ? rows(n) : cols(n);

/** Decides which candidates to dissolve. */
function planDissolves(graph: Graph): Set<Node> {
  const consumers = new Map<Node, Node[]>();
  for (const n of graph.nodes) {
    for (const x of n.inputs) consumers.set(x, [...(consumers.get(x) ?? []), n]);
  }
  const outputs = new Set(graph.outputs);
  const dissolve = new Set<Node>();
  for (const q of graph.nodes) {
    if (q.shape.length < 2 || outputs.has(q) || q.dtype !== "f32") continue;
    const ts = terms(q);
    const users = consumers.get(q) ?? [];
    if (!ts || users.length === 0) continue;
    if (!users.every((u) => u.op === "matmul" && u.inputs[0] !== u.inputs[1])) continue;
    if (
      !ts.every((t) =>
        t.left.shape.length === q.shape.length && t.right.shape.length === q.shape.length
      )
    ) continue;
    const before = ts.reduce((s, t) => s + termCost(t), 0) +
      users.reduce((s, u) => s + batch(u) * productCost(rows(u), cols(u.inputs[0]), cols(u)), 0);
    let after = 0;
    for (const u of users) {
      const qOnRight = u.inputs[1] === q;
      const p = qOnRight ? u.inputs[0] : u.inputs[1];
      for (const t of ts) {
        const { x, y, xT, yT } = orient(t);
        const inner = dim(x, xT, "cols");
        // P·(X·Y) = (P·X)·Y;  (X·Y)·P = X·(Y·P)
        after += qOnRight
          ? batch(u) *
            (productCost(rows(p), cols(p), inner) + productCost(rows(p), inner, dim(y, yT, "cols")))
          : batch(u) *
            (productCost(inner, rows(p), cols(p)) +
              productCost(dim(x, xT, "rows"), inner, cols(p)));
      }
    }
    if (after < before) dissolve.add(q);
  }
  return dissolve;
}

function transposeLastTwo(x: Node, emitter: Emitter): Node {
  const r = x.shape.length;
  const perm = x.shape.map((_, i) => (i < r - 2 ? i : i === r - 2 ? r - 1 : r - 2));
  const shape = perm.map((p) => x.shape[p]);
  if (x.op === "transpose" && swapsLastTwo(x)) return x.inputs[0];
  return emitter.emit("transpose", { perm }, [x], shape, x.dtype);
}

function matmul(a: Node, b: Node, emitter: Emitter): Node {
  const shape = [...a.shape.slice(0, -1), b.shape[b.shape.length - 1]];
  return emitter.emit("matmul", {}, [a, b], shape, a.dtype);
}

/** Rewrites the graph; run DCE afterwards to drop the dissolved intermediates. */
export function reassociateMatmuls(graph: Graph): Graph {
  const dissolve = planDissolves(graph);
  if (dissolve.size === 0) return graph;
  const original = new Map<Node, Node>(); // rewritten candidate → original (to find its plan)
  return rewriteGraph(graph, (node, inputs, emitter) => {
    if (dissolve.has(node)) {
      const kept = emitter.keep(node, inputs);
      original.set(kept, node);
      return kept;
    }
    if (node.op !== "matmul") return undefined;
    const side = inputs.findIndex((x) => original.has(x));
    if (side < 0) return undefined;
    const q = inputs[side];
    const p = inputs[1 - side];
    const sum = terms(q)!.map((t) => {
      const { x, y, xT, yT } = orient(t);
      const X = xT ? transposeLastTwo(x, emitter) : x;
      const Y = yT ? transposeLastTwo(y, emitter) : y;
      return side === 1
        ? matmul(matmul(p, X, emitter), Y, emitter)
        : matmul(X, matmul(Y, p, emitter), emitter);
    });
    return sum.reduce((a, b) => emitter.emit("add", {}, [a, b], node.shape, node.dtype));
  });
}
