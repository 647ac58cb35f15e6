/**
 * The IR: a Graph is a flat, topologically ordered list of nodes, each `out = op[params](inputs)`
 * with a static shape and dtype. It prints like a jaxpr, one equation per line.
 */

import type { DType } from "./dtype.ts";
import { formatHostArray, type HostArray, isHostArray } from "./host_array.ts";
import { formatShape, sizeOf } from "./shape.ts";
import { type TreeDef, treeToString } from "./pytree.ts";

/** A value's static type: its shape and dtype, without data. */
export interface AbstractValue {
  /** Dimensions, outermost first. */
  readonly shape: readonly number[];
  /** Element type. */
  readonly dtype: DType;
}

/** An op's static parameters (axes, dtypes, constants…), keyed by name. */
export type Params = Readonly<Record<string, unknown>>;

let nextNodeId = 0;

/** One equation of the IR. `input` nodes are graph arguments; `constant` nodes hold a HostArray. */
export class Node implements AbstractValue {
  /** A process-wide unique, increasing id (creation order). */
  readonly id = nextNodeId++;
  /** Makes a node computing `op[params](inputs)` with the given result shape and dtype. */
  constructor(
    readonly op: string,
    readonly params: Params,
    readonly inputs: readonly Node[],
    readonly shape: readonly number[],
    readonly dtype: DType,
  ) {}

  /** Number of elements of the result. */
  get size(): number {
    return sizeOf(this.shape);
  }
}

/** Renders an abstract value as `dtype[shape]`, e.g. `f32[2,3]`. */
export function formatAval(v: AbstractValue): string {
  return `${v.dtype}${formatShape(v.shape)}`;
}

/** A constant node that prints inline as a literal: a scalar. */
export function isLiteral(node: Node): boolean {
  return node.op === "constant" && node.shape.length === 0;
}

export function literalValue(node: Node): number {
  return (node.params.value as HostArray).data[0];
}

/** A value captured from an enclosing trace: graph input `node` stands for `outer`. */
export interface Capture<T = unknown> {
  /** The graph input that stands for the captured value. */
  node: Node;
  /** The captured value in the enclosing trace. */
  outer: T;
}

/** A traced function: its input and output nodes, every node in order, and the pytree layouts. */
export class Graph {
  /** Wraps already-built nodes; `trace` is the usual way to make a Graph. */
  constructor(
    /** Argument nodes, in pytree-flattening order of the arguments. */
    readonly inputs: readonly Node[],
    readonly outputs: readonly Node[],
    /** All nodes, topologically ordered (inputs and constants included). */
    readonly nodes: readonly Node[],
    readonly inTree: TreeDef,
    readonly outTree: TreeDef,
    readonly captures: readonly Capture[] = [],
  ) {}

  /** Number of non-input, non-constant equations. */
  get equationCount(): number {
    return this.nodes.filter((n) => n.op !== "input" && n.op !== "constant").length;
  }

  /** The jaxpr-style listing of `printGraph`. */
  toString(): string {
    return printGraph(this);
  }
}

function varName(i: number): string {
  let s = "";
  do {
    s = String.fromCharCode(97 + (i % 26)) + s;
    i = Math.floor(i / 26) - 1;
  } while (i >= 0);
  return s;
}

function formatNumber(v: number, dtype: DType): string {
  if (dtype === "bool") return v ? "True" : "False";
  if (dtype === "i32") return String(v);
  if (Number.isNaN(v)) return "nan";
  if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
  return Number.isInteger(v) ? v.toFixed(1) : String(Math.fround(v));
}

export function formatParamValue(v: unknown): string {
  if (Array.isArray(v)) return `(${v.map(formatParamValue).join(", ")})`;
  if (isHostArray(v)) return v.data.length <= 8 ? formatHostArray(v) : formatAval(v);
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(v);
  return String(v);
}

function formatParams(params: Params): string {
  const entries = Object.entries(params).filter(([, v]) => v !== undefined);
  if (entries.length === 0) return "";
  return `[${entries.map(([k, v]) => `${k}=${formatParamValue(v)}`).join(" ")}]`;
}

/** jaxpr-style listing: `{ lambda consts ; args. let eqns in (outs) }`. */
export function printGraph(graph: Graph): string {
  const names = new Map<Node, string>();
  let counter = 0;
  const name = (n: Node) => {
    let s = names.get(n);
    if (s === undefined) names.set(n, s = varName(counter++));
    return s;
  };
  const ref = (n: Node) =>
    isLiteral(n) ? `${formatNumber(literalValue(n), n.dtype)}:${n.dtype}` : name(n);
  const decl = (n: Node) => `${name(n)}:${formatAval(n)}`;

  const consts = graph.nodes.filter((n) => n.op === "constant" && !isLiteral(n));
  const captured = graph.captures.map((c) => c.node);
  const head = [...consts, ...captured].map(decl).join(" ");
  const args = graph.inputs.map(decl).join(" ");
  const lines = [`{ lambda ${head}${head ? " " : ""}; ${args}. let`];
  for (const n of graph.nodes) {
    if (n.op === "input" || n.op === "constant") continue;
    const ins = n.inputs.map(ref).join(" ");
    lines.push(`    ${decl(n)} = ${n.op}${formatParams(n.params)} ${ins}`.trimEnd());
  }
  const outs = graph.outputs.map(ref).join(", ");
  lines.push(`  in (${outs}) }`);
  if (graph.outTree.kind !== "leaf") lines.push(`  # outputs: ${treeToString(graph.outTree)}`);
  return lines.join("\n");
}
