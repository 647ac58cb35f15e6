/**
 * Matmul reassociation and distribution: P·(R·S) → (P·R)·S (and (R·S)·P → R·(S·P)) when the
 * product R·S is a large intermediate that only feeds thin products, and P·(D + s·R·S) →
 * P·D + s·((P·R)·S) for a dense summand D. This is what keeps the adapters' costs honest:
 * - HD-PiSSA's g_A = Bᵀ·G with G = δᵀ·x (m×n, formed by autodiff) becomes (δ·B)ᵀ·x, and
 *   g_B = G·Aᵀ becomes δᵀ·(x·Aᵀ): the dense gradient is never formed (DCE removes it);
 * - LoRA's forward x·(W + s·B·A)ᵀ becomes x·Wᵀ + s·(x·Aᵀ)·Bᵀ, so no merged weight (nor its
 *   transposed copy) exists, and its factor gradients become s·(δ·B)ᵀ·x and s·δᵀ·(x·Aᵀ).
 *
 * A candidate Q is a sum of terms, each a matmul or a dense value, possibly transposed (last two
 * axes) and scaled by a scalar (a broadcast one-element value); at least one term is a matmul. It
 * is dissolved only when every consumer is a matmul and the distributed products cost fewer
 * multiply-adds than forming Q (its products, plus `MATERIALIZE_COST` per element for each
 * elementwise pass that writes it) and the original products.
 */

import type { Graph, Node } from "../../dsl/mod.ts";
import { swapsLastTwo } from "../views.ts";
import { type Emitter, rewriteGraph } from "./rewrite.ts";

/**
 * Q as a sum of terms: (left·right) or a dense value, transposed or not, times an optional scalar
 * `coef` (the one-element node a broadcast expands).
 */
type Term =
  & { transposed: boolean; coef?: Node }
  & ({ left: Node; right: Node; dense?: undefined } | { dense: Node; left?: undefined });

/**
 * Multiply-adds one element of an elementwise pass is worth: such passes are bound by memory,
 * which moves an element in about the time the arithmetic units do tens of multiply-adds.
 */
const MATERIALIZE_COST = 16;

/** The one-element value a broadcast expands, if `x` is such a broadcast. */
function scalarOf(x: Node): Node | undefined {
  return x.op === "broadcast" && x.inputs[0].size === 1 ? x.inputs[0] : undefined;
}

/** Q's terms and the elementwise passes that build it, or undefined if Q is not of this form. */
function termsOf(q: Node): { terms: Term[]; passes: number } | undefined {
  if (q.op === "matmul") {
    return { terms: [{ left: q.inputs[0], right: q.inputs[1], transposed: false }], passes: 0 };
  }
  if (swapsLastTwo(q)) {
    const inner = termsOf(q.inputs[0]);
    if (!inner) return undefined;
    const terms = inner.terms.map((t) => ({ ...t, transposed: !t.transposed }));
    return { terms, passes: inner.passes + 1 };
  }
  if (q.op === "add") {
    const parts = q.inputs.map((x) =>
      termsOf(x) ?? { terms: [{ dense: x, transposed: false }], passes: 0 }
    );
    return {
      terms: parts.flatMap((p) => p.terms),
      passes: parts[0].passes + parts[1].passes + 1,
    };
  }
  if (q.op === "mul") {
    const side = q.inputs.findIndex((x) => scalarOf(x) !== undefined);
    if (side < 0) return undefined;
    const inner = termsOf(q.inputs[1 - side]);
    if (!inner || inner.terms.some((t) => t.coef)) return undefined;
    const coef = scalarOf(q.inputs[side]);
    return { terms: inner.terms.map((t) => ({ ...t, coef })), passes: inner.passes + 1 };
  }
  return undefined;
}

/** Terms of a candidate: a sum with at least one product in it. */
function terms(q: Node): { terms: Term[]; passes: number } | undefined {
  const t = termsOf(q);
  return t && t.terms.some((x) => x.left) ? t : undefined;
}

const rows = (n: Node) => n.shape[n.shape.length - 2];
const cols = (n: Node) => n.shape[n.shape.length - 1];
const batch = (n: Node) => n.shape.slice(0, -2).reduce((a, b) => a * b, 1);

/** Multiply-adds of X·Y. */
const productCost = (xRows: number, inner: number, yCols: number) => xRows * inner * yCols;

/** Cost of the term's own product R·S (none for a dense term). */
function termCost(t: Term): number {
  return t.left ? batch(t.left) * productCost(rows(t.left), cols(t.left), cols(t.right)) : 0;
}

/** A product term seen from the consumer: factors (X, Y) with Qterm = X·Y (transposes inside). */
function orient(t: Term & { left: Node }): { x: Node; y: Node; xT: boolean; yT: boolean } {
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
    const found = terms(q);
    const users = consumers.get(q) ?? [];
    if (!found || users.length === 0) continue;
    const ts = found.terms;
    if (!users.every((u) => u.op === "matmul" && u.inputs[0] !== u.inputs[1])) continue;
    if (
      !ts.every((t) =>
        t.left
          ? t.left.shape.length === q.shape.length && t.right.shape.length === q.shape.length
          : t.dense.shape.length === q.shape.length
      )
    ) continue;
    const consumerCost = (u: Node) => batch(u) * productCost(rows(u), cols(u.inputs[0]), cols(u));
    const before = ts.reduce((s, t) => s + termCost(t), 0) +
      MATERIALIZE_COST * found.passes * q.size + users.reduce((s, u) => s + consumerCost(u), 0);
    let after = 0;
    for (const u of users) {
      const qOnRight = u.inputs[1] === q;
      const p = qOnRight ? u.inputs[0] : u.inputs[1];
      for (const t of ts) {
        // A dense term keeps the consumer's product (through a transposed view if needed).
        if (!t.left) {
          after += consumerCost(u);
          continue;
        }
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

/** x · c for a one-element c, reshaped to x's rank and broadcast. */
function scaled(x: Node, c: Node, emitter: Emitter): Node {
  const ones = x.shape.map(() => 1);
  const c1 = c.shape.join() === ones.join()
    ? c
    : emitter.emit("reshape", { shape: ones }, [c], ones, c.dtype);
  const wide = emitter.emit("broadcast", { shape: [...x.shape] }, [c1], x.shape, c.dtype);
  return emitter.emit("mul", {}, [x, wide], x.shape, x.dtype);
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
    // The candidate as rewritten: a product inside it that read another dissolved candidate is
    // now a sum itself, which may no longer be of this form (a scaled sum of scaled products):
    // then the consumer reads the candidate as computed.
    const found = terms(q);
    if (!found) return undefined;
    const sum = found.terms.map((t) => {
      let product: Node;
      if (!t.left) {
        const d = t.transposed ? transposeLastTwo(t.dense, emitter) : t.dense;
        product = side === 1 ? matmul(p, d, emitter) : matmul(d, p, emitter);
      } else {
        const { x, y, xT, yT } = orient(t);
        const X = xT ? transposeLastTwo(x, emitter) : x;
        const Y = yT ? transposeLastTwo(y, emitter) : y;
        product = side === 1
          ? matmul(matmul(p, X, emitter), Y, emitter)
          : matmul(X, matmul(Y, p, emitter), emitter);
      }
      return t.coef ? scaled(product, t.coef, emitter) : product;
    });
    return sum.reduce((a, b) => emitter.emit("add", {}, [a, b], node.shape, node.dtype));
  });
}
