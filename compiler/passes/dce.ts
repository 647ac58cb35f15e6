/** Dead-code elimination: keeps the nodes the outputs depend on (and every graph input). */

import { Graph, type Node } from "../../dsl/mod.ts";

/** Drops the nodes no output depends on, keeping every graph input. */
export function eliminateDeadCode(graph: Graph): Graph {
  const live = new Set<Node>(graph.outputs);
  for (let i = graph.nodes.length - 1; i >= 0; i--) {
    const n = graph.nodes[i];
    if (live.has(n)) { for (const x of n.inputs) live.add(x); }
  }
  const nodes = graph.nodes.filter((n) => live.has(n) || n.op === "input");
  return new Graph(graph.inputs, graph.outputs, nodes, graph.inTree, graph.outTree, graph.captures);
}
