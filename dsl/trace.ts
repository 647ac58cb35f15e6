/**
 * Tracing: plain TypeScript functions run on `Tensor` handles, and every op they call appends a
 * node to the active trace. A trace nested in another (grad inside grad, a function closing over
 * an outer tensor) *captures* outer tensors as extra inputs, so each Graph is self-contained and
 * differentiating it never mixes up perturbations of different levels.
 */

import type { DType } from "./dtype.ts";
import { replayRule } from "./custom_vjp.ts";
import { DslError } from "./errors.ts";
import { type AbstractValue, type Capture, formatAval, Graph, Node, type Params } from "./graph.ts";
import {
  allocData,
  type HostArray,
  isFloat16Data,
  isHostArray,
  newFloat16Array,
  validateHostArray,
} from "./host_array.ts";
import { getPrimitive } from "./primitive.ts";
import { flattenTree, unflattenTree } from "./pytree.ts";

/** One level of tracing: the nodes recorded so far and the values captured from outer levels. */
export class Trace {
  /** Nodes recorded at this level, in order. */
  readonly nodes: Node[] = [];
  /** Outer-trace tensors used here, each mapped to the input node that stands for it. */
  readonly captures: Map<Tensor, Node> = new Map();
  /** Constant nodes already made for HostArrays, so each array is embedded once. */
  readonly constants: WeakMap<HostArray, Node> = new WeakMap();
  /** False once the traced function has returned; its tensors can then no longer be captured. */
  active = true;
  /** Starts a trace nested in `parent` (undefined for a top-level trace). */
  constructor(readonly parent: Trace | undefined) {}

  /** Whether this trace is `other` or nested (at any depth) inside it. */
  isWithin(other: Trace): boolean {
    return this === other || (this.parent !== undefined && this.parent.isWithin(other));
  }
}

/** A traced value: a handle on a node of the active trace, with its static shape and dtype. */
export class Tensor implements AbstractValue {
  /** Wraps `node` of `trace`; ops make tensors, users normally do not. */
  constructor(readonly node: Node, readonly trace: Trace) {}
  /** Dimensions, outermost first. */
  get shape(): readonly number[] {
    return this.node.shape;
  }
  /** Element type. */
  get dtype(): DType {
    return this.node.dtype;
  }
  /** Number of dimensions. */
  get ndim(): number {
    return this.node.shape.length;
  }
  /** Number of elements. */
  get size(): number {
    return this.node.size;
  }
  /** `Tensor(dtype[shape])`. */
  toString(): string {
    return `Tensor(${formatAval(this.node)})`;
  }
}

let current: Trace | undefined;

export function currentTrace(): Trace | undefined {
  return current;
}

export function requireTrace(op: string): Trace {
  if (!current) {
    throw new DslError(
      op,
      "called outside a traced function; run it through interpret(f, ...), jit(f), grad(f) or " +
        "trace(f, ...)",
    );
  }
  return current;
}

/** Runs `fn` with a fresh trace nested in the current one. */
export function withNewTrace<T>(fn: (trace: Trace) => T): [T, Trace] {
  const trace = new Trace(current);
  const saved = current;
  current = trace;
  try {
    return [fn(trace), trace];
  } finally {
    current = saved;
    trace.active = false;
  }
}

/** The node standing for tensor `t` inside `trace` (capturing it when it belongs to an outer one). */
function nodeIn(trace: Trace, t: Tensor, op: string): Node {
  if (t.trace === trace) return t.node;
  if (!t.trace.active || !trace.isWithin(t.trace)) {
    throw new DslError(
      op,
      `a ${formatAval(t)} tensor escaped the trace it was created in (it was stored outside ` +
        "the traced function and used later); return it from the function instead",
    );
  }
  let node = trace.captures.get(t);
  if (!node) {
    node = new Node("input", { captured: true }, [], t.shape, t.dtype);
    trace.captures.set(t, node);
    trace.nodes.push(node);
  }
  return node;
}

/** Appends `op[params](inputs)` to the active trace after checking its shape/dtype rule. */
export function bind(op: string, inputs: readonly Tensor[], params: Params = {}): Tensor {
  const trace = requireTrace(op);
  const prim = getPrimitive(op);
  const nodes = inputs.map((t) => nodeIn(trace, t, op));
  const aval = prim.abstractEval(nodes, params);
  const node = new Node(op, params, nodes, Object.freeze([...aval.shape]), aval.dtype);
  trace.nodes.push(node);
  return new Tensor(node, trace);
}

/** A HostArray as a constant of the active trace (one node per array per trace). */
export function constantTensor(value: HostArray, op = "constant"): Tensor {
  const trace = requireTrace(op);
  let node = trace.constants.get(value);
  if (!node) {
    validateHostArray(value, op);
    // An f16 constant given as f32 data is rounded once, here, so every reader sees half values.
    const held = value.dtype === "f16" && !isFloat16Data(value.data)
      ? { ...value, data: newFloat16Array(value.data) }
      : value;
    node = new Node("constant", { value: held }, [], Object.freeze([...value.shape]), value.dtype);
    trace.constants.set(value, node);
    trace.nodes.push(node);
  }
  return new Tensor(node, trace);
}

export function isTensor(x: unknown): x is Tensor {
  return x instanceof Tensor;
}

/** Shape/dtype specification of a traced argument. */
export interface ArgSpec {
  /** Dimensions of the argument. */
  shape: readonly number[];
  /** Element type; f32 when omitted. */
  dtype?: DType;
}

export type ArgLeaf = HostArray | Tensor | number | boolean;

export function isArgLeaf(x: unknown): x is ArgLeaf {
  return isHostArray(x) || isTensor(x) || typeof x === "number" || typeof x === "boolean";
}

export function leafAval(x: ArgLeaf | ArgSpec): AbstractValue {
  if (typeof x === "number") return { shape: [], dtype: "f32" };
  if (typeof x === "boolean") return { shape: [], dtype: "bool" };
  return { shape: [...x.shape], dtype: x.dtype ?? "f32" };
}

export function isOutputLeaf(x: unknown): x is Tensor | HostArray | number | boolean {
  return isTensor(x) || isHostArray(x) || typeof x === "number" || typeof x === "boolean";
}

/**
 * Traces `f` on arguments of the given avals into a Graph. Arguments are pytrees whose leaves are
 * described by `leafAvals` (in flattening order of `inTree`).
 */
export function traceFlat(
  f: (...args: unknown[]) => unknown,
  leafAvals: readonly AbstractValue[],
  inTree: import("./pytree.ts").TreeDef,
  name = "trace",
): Graph {
  const [graph] = withNewTrace((trace) => {
    const inputs = leafAvals.map((a) => {
      const node = new Node("input", {}, [], Object.freeze([...a.shape]), a.dtype);
      trace.nodes.push(node);
      return node;
    });
    const args = unflattenTree(inTree, inputs.map((n) => new Tensor(n, trace))) as unknown[];
    const result = f(...args);
    if (result instanceof Promise) {
      throw new DslError(name, "the traced function returned a Promise; it must be synchronous");
    }
    const [outLeaves, outTree] = flattenTree(result, isOutputLeaf, `${name} output`);
    const outputs = outLeaves.map((leaf) => nodeIn(trace, toTensorLeaf(leaf), name));
    const captures: Capture<Tensor>[] = [...trace.captures].map(([outer, node]) => ({
      node,
      outer,
    }));
    return new Graph(inputs, outputs, [...trace.nodes], inTree, outTree, captures);
  });
  return graph;
}

function toTensorLeaf(x: Tensor | HostArray | number | boolean): Tensor {
  if (isTensor(x)) return x;
  if (isHostArray(x)) return constantTensor(x);
  const dtype: DType = typeof x === "boolean" ? "bool" : "f32";
  return constantTensor({
    shape: [],
    dtype,
    data: allocData(dtype, 1).fill(+x),
  });
}

/**
 * Replays `graph` inside the active trace with `args` for its inputs; returns the tensors of all
 * its nodes. Captured inputs resolve to the outer tensors they stand for.
 */
export function inlineGraph(graph: Graph, args: readonly Tensor[]): Map<Node, Tensor> {
  const env = new Map<Node, Tensor>();
  graph.inputs.forEach((n, i) => env.set(n, args[i]));
  for (const c of graph.captures) env.set(c.node, c.outer as Tensor);
  for (const n of graph.nodes) {
    if (env.has(n)) continue;
    if (n.op === "constant") env.set(n, constantTensor(n.params.value as HostArray));
    else {
      const t = bind(n.op, n.inputs.map((i) => env.get(i)!), n.params);
      replayRule(n, t, (rule) => rule.inputs.map((x) => env.get(x)!));
      env.set(n, t);
    }
  }
  return env;
}
