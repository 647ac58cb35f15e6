/**
 * Rebuilding a Graph node by node: the common skeleton of every pass. A pass sees each node with
 * its already-rewritten inputs and returns a replacement (possibly emitting new nodes first), or
 * undefined to keep an equivalent node.
 */

import { Graph, Node, type Params } from "../../dsl/mod.ts";
import type { DType } from "../../dsl/mod.ts";

/** What a rewrite may use to build replacement nodes. */
export interface Emitter {
  /** Appends a new node. */
  emit(
    op: string,
    params: Params,
    inputs: readonly Node[],
    shape: readonly number[],
    dtype: DType,
  ): Node;
  /** `node` itself when its inputs are unchanged, else an equivalent node on the new inputs. */
  keep(node: Node, inputs: readonly Node[]): Node;
}

function keep(node: Node, inputs: readonly Node[]): Node {
  const same = inputs.every((x, i) => x === node.inputs[i]);
  return same ? node : new Node(node.op, node.params, inputs, node.shape, node.dtype);
}

/** A pass's rule for one node: its replacement, or undefined to keep an equivalent node. */
export type NodeRewrite = (
  node: Node,
  inputs: readonly Node[],
  emitter: Emitter,
) => Node | undefined;

/** Rebuilds `graph` in order, replacing each node by what `rewrite` returns for it. */
export function rewriteGraph(graph: Graph, rewrite: NodeRewrite): Graph {
  const mapped = new Map<Node, Node>();
  const nodes: Node[] = [];
  const seen = new Set<Node>();
  const push = (n: Node) => {
    if (!seen.has(n)) {
      seen.add(n);
      nodes.push(n);
    }
  };
  const emitter: Emitter = {
    emit(op, params, inputs, shape, dtype) {
      const n = new Node(op, params, inputs, Object.freeze([...shape]), dtype);
      push(n);
      return n;
    },
    keep,
  };
  for (const node of graph.nodes) {
    if (node.op === "input") {
      mapped.set(node, node);
      push(node);
      continue;
    }
    const inputs = node.inputs.map((x) => mapped.get(x)!);
    const out = rewrite(node, inputs, emitter) ?? keep(node, inputs);
    mapped.set(node, out);
    push(out);
  }
  const outputs = graph.outputs.map((n) => mapped.get(n)!);
  return new Graph(graph.inputs, outputs, nodes, graph.inTree, graph.outTree, graph.captures);
}
