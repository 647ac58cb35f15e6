/**
 * Reshapes sink below elementwise epilogues of a matmul: e(reshape(x·y), z) becomes
 * reshape(e(x·y, reshape(z))). A linear layer flattens its tokens into rows for the product and
 * reshapes the result back, so its residual add, bias or gate reads the product through a view
 * and fusion (rule 3: an epilogue reads the anchor at its own index) could not absorb it: the
 * product went to memory and a separate kernel added it. After the rewrite the epilogue iterates
 * the product's own shape (a reshape keeps the row-major flat index, so the other operands are
 * read through free index arithmetic) and the reshape moves to the epilogue's output, where
 * consumers read it as a view.
 *
 * Only chains fusion would absorb are rewritten: the product (or an epilogue already sunk) feeds
 * only the reshape, and the reshape only the elementwise op; or, where the product has other
 * readers, every operand of the op is already a view of an array of the product's shape (a gated
 * MLP's activation and gating: fusion rule 8 then stores them from the product's own kernel).
 */

import { type Graph, isElementwise, type Node } from "../../dsl/mod.ts";
import { splatValue } from "./fold.ts";
import { rewriteGraph } from "./rewrite.ts";

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** `graph` with reshapes between matmuls and their elementwise epilogues moved past them. */
export function sinkReshapes(graph: Graph): Graph {
  const consumers = new Map<Node, number>();
  for (const n of graph.nodes) {
    for (const x of n.inputs) consumers.set(x, (consumers.get(x) ?? 0) + 1);
  }
  const outputs = new Set(graph.outputs);
  const single = (n: Node) => consumers.get(n) === 1 && !outputs.has(n);
  /** Rewritten epilogues (in the new graph) that may carry the chain on. */
  const epilogues = new Set<Node>();
  /** The product, or an epilogue already sunk below its reshape. */
  const isAnchor = (n: Node) => n.op === "matmul" || epilogues.has(n);
  return rewriteGraph(graph, (node, inputs, emit) => {
    if (!isElementwise(node.op) || node.shape.length === 0) return undefined;
    const viewsAnchor = (x: Node) => x.op === "reshape" && isAnchor(x.inputs[0]);
    let at = inputs.findIndex((x, i) => {
      const old = node.inputs[i];
      const link = single(old) && (old.op !== "reshape" || single(old.inputs[0]));
      return link && viewsAnchor(x);
    });
    if (at < 0) {
      // A product read elsewhere too: sunk only where every operand is already a view of an array
      // in the product's shape (or a splat), so the op becomes one more output of the product's
      // kernel (fusion rule 8) without reshaping anything that was not flat already.
      at = inputs.findIndex(viewsAnchor);
      const target = at < 0 ? undefined : inputs[at].inputs[0].shape;
      const flat = (x: Node) =>
        splatValue(x) !== undefined ||
        (x.op === "reshape" && sameShape(x.inputs[0].shape, target!));
      if (at < 0 || !inputs.every(flat)) return undefined;
    }
    const inner = inputs[at].inputs[0];
    const target = inner.shape;
    const operands = inputs.map((x, i) => {
      if (i === at) return inner;
      if (x.op === "reshape" && sameShape(x.inputs[0].shape, target)) return x.inputs[0];
      return emit.emit("reshape", { shape: [...target] }, [x], target, x.dtype);
    });
    const sunk = emit.emit(node.op, node.params, operands, target, node.dtype);
    epilogues.add(sunk);
    return emit.emit("reshape", { shape: [...node.shape] }, [sunk], node.shape, node.dtype);
  });
}
