/**
 * Common-subexpression elimination: two nodes with the same op, params and (already merged)
 * inputs become one. Scalar constants merge by value; array constants by identity of their data.
 */

import type { Graph, HostArray, Node } from "../../dsl/mod.ts";
import { rewriteGraph } from "./rewrite.ts";

const dataIds = new WeakMap<object, number>();
let nextDataId = 0;

function valueKey(v: unknown): string {
  if (typeof v === "number") return Object.is(v, -0) ? "-0" : String(v);
  if (Array.isArray(v)) return `(${v.map(valueKey).join(",")})`;
  if (typeof v === "object" && v !== null && "data" in v) {
    const h = v as HostArray;
    if (h.data.length === 1) return `${h.dtype}[${h.shape}]=${valueKey(h.data[0])}`;
    let id = dataIds.get(h.data);
    if (id === undefined) dataIds.set(h.data, id = nextDataId++);
    return `data#${id}`;
  }
  return JSON.stringify(v);
}

export function nodeKey(node: Node, inputs: readonly Node[]): string {
  const params = Object.keys(node.params).sort().map((k) => `${k}=${valueKey(node.params[k])}`);
  return `${node.op}[${params.join(";")}](${inputs.map((x) => x.id).join(",")}):${node.dtype}`;
}

/** Merges nodes with the same op, params and inputs into one (common-subexpression elimination). */
export function eliminateCommonSubexpressions(graph: Graph): Graph {
  const byKey = new Map<string, Node>();
  return rewriteGraph(graph, (node, inputs, emitter) => {
    const key = nodeKey(node, inputs);
    const existing = byKey.get(key);
    if (existing) return existing;
    const out = emitter.keep(node, inputs);
    byKey.set(key, out);
    return out;
  });
}
