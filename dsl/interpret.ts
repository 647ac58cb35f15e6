/**
 * The CPU reference interpreter: evaluates a Graph node by node with each primitive's `evaluate`.
 * It is the oracle every backend is tested against. `f32` precision rounds every stored value to
 * f32 (as a device does); `f64` keeps doubles, for finite-difference gradient checks.
 */

import type { Precision } from "./dtype.ts";
import { DslError } from "./errors.ts";
import { formatAval, type Graph, type Node } from "./graph.ts";
import { allocData, type HostArray, isHostArray, validateHostArray } from "./host_array.ts";
import { getPrimitive } from "./primitive.ts";
import { flattenTree, unflattenTree } from "./pytree.ts";
import { shapesEqual } from "./shape.ts";
import { currentTrace, isArgLeaf, isTensor, leafAval, traceFlat } from "./trace.ts";

/** Converts an argument leaf to a HostArray at the given precision. */
export function toHostLeaf(x: unknown, precision: Precision, op: string): HostArray {
  if (typeof x === "number") return { shape: [], dtype: "f32", data: allocScalar(x, precision) };
  if (typeof x === "boolean") return { shape: [], dtype: "bool", data: new Int32Array([+x]) };
  if (isTensor(x)) {
    throw new DslError(op, `got a traced ${formatAval(x)}; pass host arrays (array(...)) instead`);
  }
  if (!isHostArray(x)) throw new DslError(op, `unsupported argument ${String(x)}`);
  validateHostArray(x, op);
  const wanted = allocData(x.dtype, 0, precision).constructor;
  if (x.data.constructor === wanted) return x;
  const data = allocData(x.dtype, x.data.length, precision);
  data.set(x.data);
  return { shape: x.shape, dtype: x.dtype, data };
}

function allocScalar(v: number, precision: Precision) {
  const d = allocData("f32", 1, precision);
  d[0] = v;
  return d;
}

/** Evaluates `graph` on flat inputs; returns the flat outputs (fresh arrays). */
export function evaluateGraph(
  graph: Graph,
  inputs: readonly HostArray[],
  opts: { precision?: Precision } = {},
): HostArray[] {
  const ctx = { precision: opts.precision ?? "f32" };
  if (graph.captures.length) throw new Error("evaluateGraph: graph has captured inputs");
  if (inputs.length !== graph.inputs.length) {
    throw new DslError(
      "evaluate",
      `expected ${graph.inputs.length} input(s), got ${inputs.length}`,
    );
  }
  const values = new Map<Node, HostArray>();
  graph.inputs.forEach((n, i) => {
    const x = toHostLeaf(inputs[i], ctx.precision, "evaluate");
    if (!shapesEqual(x.shape, n.shape) || x.dtype !== n.dtype) {
      throw new DslError(
        "evaluate",
        `input ${i} is ${formatAval(x)} but the graph expects ${formatAval(n)}`,
      );
    }
    values.set(n, x);
  });
  // Only nodes the outputs need are evaluated; values are dropped after their last use.
  const live = new Set<Node>(graph.outputs);
  const uses = new Map<Node, number>();
  for (let i = graph.nodes.length - 1; i >= 0; i--) {
    const n = graph.nodes[i];
    if (!live.has(n)) continue;
    for (const x of n.inputs) {
      live.add(x);
      uses.set(x, (uses.get(x) ?? 0) + 1);
    }
  }
  const outputs = new Set(graph.outputs);
  for (const n of graph.nodes) {
    if (!live.has(n) || values.has(n)) continue;
    const args = n.inputs.map((x) => values.get(x)!);
    values.set(n, getPrimitive(n.op).evaluate(args, n.params, ctx));
    for (const x of n.inputs) {
      const left = uses.get(x)! - 1;
      uses.set(x, left);
      if (left === 0 && !outputs.has(x)) values.delete(x);
    }
  }
  return graph.outputs.map((n) => {
    const v = values.get(n)!;
    const data = allocData(v.dtype, v.data.length, ctx.precision);
    data.set(v.data);
    return { shape: [...v.shape], dtype: v.dtype, data };
  });
}

function run(precision: Precision, f: (...args: never[]) => unknown, args: unknown[]): unknown {
  const op = precision === "f64" ? "interpretF64" : "interpret";
  if (currentTrace()) {
    throw new DslError(op, "cannot run inside a traced function; call the function directly");
  }
  const [leaves, inTree] = flattenTree(args, isArgLeaf, op);
  const hosts = leaves.map((l) => toHostLeaf(l, precision, op));
  const graph = traceFlat(f as (...a: unknown[]) => unknown, hosts.map(leafAval), inTree, op);
  const outs = evaluateGraph(graph, hosts, { precision });
  return unflattenTree(graph.outTree, outs);
}

/**
 * Runs `f` on host arrays with the CPU reference (f32 semantics) and returns host arrays in the
 * pytree shape of its result.
 *
 * @example interpret((x) => sum(mul(x, x)), array([1, 2, 3])) // f32[] 14
 */
// deno-lint-ignore no-explicit-any
export function interpret(f: (...args: any[]) => unknown, ...args: unknown[]): any {
  return run("f32", f, args);
}

/** As `interpret`, evaluating in f64 (inputs and float outputs are Float64Array). */
// deno-lint-ignore no-explicit-any
export function interpretF64(f: (...args: any[]) => unknown, ...args: unknown[]): any {
  return run("f64", f, args);
}
