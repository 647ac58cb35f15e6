/**
 * Reverse-mode autodiff as a graph transformation. `grad(f)` traces f into its own Graph, replays
 * that graph into the caller's trace, then walks it backwards applying each primitive's VJP rule;
 * the cotangents are ordinary traced ops, so the result is one Graph (forward + backward) that
 * the passes and every backend consume, and it can be differentiated again.
 *
 * Only f32 values carry gradients: integer and bool nodes, `stopGradient`, and primitives without
 * a VJP rule (comparisons, argmax, iota) cut the flow.
 */

import { checkpointRegion, recomputeRegion } from "./checkpoint.ts";
import { customVjpRule } from "./custom_vjp.ts";
import { isFloat } from "./dtype.ts";
import { DslError } from "./errors.ts";
import { formatAval, type Graph, type Node } from "./graph.ts";
import * as lax from "./lax.ts";
import { getPrimitive } from "./primitive.ts";
import { flattenTree, type TreeDef, treeLeafCount, unflattenTree } from "./pytree.ts";
import { shapesEqual } from "./shape.ts";
import { currentTrace, inlineGraph, isArgLeaf, leafAval, type Tensor, traceFlat } from "./trace.ts";
import { asTensor } from "./ops/coerce.ts";
import { interpret } from "./interpret.ts";

/**
 * Cotangents of `wrt` given cotangents of some graph nodes. `env` maps graph nodes to the tensors
 * of the current trace that hold their primal values.
 */
export function backwardPass(
  graph: Graph,
  env: Map<Node, Tensor>,
  seeds: ReadonlyMap<Node, Tensor>,
  wrt: readonly Node[],
): (Tensor | null)[] {
  const active = new Set<Node>(wrt.filter((n) => isFloat(n.dtype)));
  for (const n of graph.nodes) {
    if (isFloat(n.dtype) && n.inputs.some((i) => active.has(i))) active.add(n);
  }
  const cotangents = new Map<Node, Tensor>();
  const accumulate = (n: Node, ct: Tensor) => {
    const prev = cotangents.get(n);
    cotangents.set(n, prev ? lax.add(prev, ct) : ct);
  };
  for (const [n, ct] of seeds) if (active.has(n)) accumulate(n, ct);

  // Checkpointed regions are recomputed when the backward pass first reaches them.
  const recomputed = new Map<Node, Tensor>();
  const replayed = new Set<readonly Node[]>();
  const valueOf = (n: Node) => recomputed.get(n) ?? env.get(n)!;
  for (let i = graph.nodes.length - 1; i >= 0; i--) {
    const node = graph.nodes[i];
    const ct = cotangents.get(node);
    if (!ct || node.inputs.length === 0) continue;
    const custom = customVjpRule(node);
    const rule = getPrimitive(node.op).vjp;
    if (!rule && !custom) continue;
    const inputs = custom?.inputs ?? node.inputs;
    const needs = inputs.map((x) => active.has(x));
    if (!needs.some(Boolean)) continue;
    const region = checkpointRegion(node);
    if (region && !replayed.has(region)) {
      replayed.add(region);
      for (const [n, t] of recomputeRegion(region, valueOf)) recomputed.set(n, t);
    }
    const inputCts = custom ? custom.backward(ct, inputs.map(valueOf), valueOf(node)) : rule!(ct, {
      inputs: inputs.map(valueOf),
      output: valueOf(node),
      params: node.params,
      needs,
    });
    inputs.forEach((x, k) => {
      const c = inputCts[k];
      if (!needs[k] || !c) return;
      if (!shapesEqual(c.shape, x.shape) || c.dtype !== x.dtype) {
        if (custom) {
          throw new DslError(
            "customVjp",
            `the backward rule returned ${formatAval(c)} for argument ${k} of ${formatAval(x)}`,
            [formatAval(c), formatAval(x)],
          );
        }
        throw new Error(
          `internal: VJP of ${node.op} returned ${formatAval(c)} for input ${formatAval(x)}`,
        );
      }
      accumulate(x, c);
    });
  }
  return wrt.map((n) => cotangents.get(n) ?? null);
}

/** Leaf-index ranges of each top-level argument. */
function argLeafRanges(inTree: TreeDef): [number, number][] {
  if (inTree.kind !== "array") throw new Error("internal: arguments are not a list");
  let start = 0;
  return inTree.children.map((c) => {
    const n = treeLeafCount(c);
    const r: [number, number] = [start, start + n];
    start += n;
    return r;
  });
}

interface Traced {
  graph: Graph;
  env: Map<Node, Tensor>;
  args: unknown[];
  inTree: TreeDef;
}

/** Traces `f` on `args` (pytrees) and replays it into the current trace. */
function traceAndInline(f: (...args: never[]) => unknown, args: unknown[], op: string): Traced {
  const [leaves, inTree] = flattenTree(args, isArgLeaf, op);
  const tensors = leaves.map((l) => asTensor(l, op));
  const graph = traceFlat(f as (...a: unknown[]) => unknown, tensors.map(leafAval), inTree, op);
  const env = inlineGraph(graph, tensors);
  return { graph, env, args, inTree };
}

/** Options of `grad` and `valueAndGrad`. */
export interface GradOptions {
  /** Which positional arguments to differentiate with respect to (default 0). */
  argnums?: number | readonly number[];
  /** f returns [loss, aux]; aux is passed through undifferentiated. */
  hasAux?: boolean;
}

function gradImpl(
  f: (...args: never[]) => unknown,
  opts: GradOptions,
  op: string,
  args: unknown[],
): [unknown, unknown] {
  const argnums = opts.argnums ?? 0;
  const list = typeof argnums === "number" ? [argnums] : [...argnums];
  for (const a of list) {
    if (!Number.isInteger(a) || a < 0 || a >= args.length) {
      throw new DslError(op, `argnums ${a} is out of range for ${args.length} argument(s)`);
    }
  }
  const { graph, env, inTree } = traceAndInline(f, args, op);
  const ranges = argLeafRanges(inTree);
  const wrt: Node[] = [];
  for (const a of list) {
    for (let i = ranges[a][0]; i < ranges[a][1]; i++) {
      const n = graph.inputs[i];
      if (!isFloat(n.dtype)) {
        throw new DslError(
          op,
          `argument ${a} has a ${formatAval(n)} leaf; only f32 and f16 values can be ` +
            "differentiated " +
            "(pass integer data in an argument outside argnums)",
          [formatAval(n)],
        );
      }
      wrt.push(n);
    }
  }
  const outs = graph.outputs;
  let lossNode: Node;
  let value: unknown;
  if (opts.hasAux) {
    const t = graph.outTree;
    if (t.kind !== "array" || t.children.length !== 2 || t.children[0].kind !== "leaf") {
      throw new DslError(op, "with hasAux the function must return [loss, aux]");
    }
    lossNode = outs[0];
    value = unflattenTree(t, outs.map((n) => env.get(n)!));
  } else {
    if (graph.outTree.kind !== "leaf") {
      throw new DslError(op, "the function must return a single scalar loss (use hasAux for more)");
    }
    lossNode = outs[0];
    value = env.get(lossNode)!;
  }
  if (lossNode.shape.length !== 0 || !isFloat(lossNode.dtype)) {
    throw new DslError(
      op,
      `the loss must be an f32 or f16 scalar, got ${
        formatAval(lossNode)
      }; reduce it (e.g. with sum or ` +
        "mean) first",
      [formatAval(lossNode)],
    );
  }
  const seed = lax.scalar(1, lossNode.dtype);
  const cts = backwardPass(graph, env, new Map([[lossNode, seed]]), wrt);
  const leafGrads = cts.map((c, i) => c ?? lax.splat(0, wrt[i].shape, wrt[i].dtype));
  let k = 0;
  const perArg = list.map((a) => {
    const [lo, hi] = ranges[a];
    const def = (inTree as { children: TreeDef[] }).children[a];
    const g = unflattenTree(def, leafGrads.slice(k, k + hi - lo));
    k += hi - lo;
    return g;
  });
  return [value, typeof argnums === "number" ? perArg[0] : perArg];
}

/**
 * Differentiates a scalar-valued function. Inside a traced function it adds the gradient
 * computation to the trace; called directly on host arrays it evaluates on the CPU reference.
 *
 * @example const df = grad((w, x) => sum(tanh(matmul(x, w))), { argnums: 0 });
 */
// deno-lint-ignore no-explicit-any
export function grad<F extends (...args: any[]) => unknown>(
  f: F,
  opts: GradOptions = {},
  // deno-lint-ignore no-explicit-any
): (...args: Parameters<F>) => any {
  const g = (...args: unknown[]): unknown => {
    if (!currentTrace()) return interpret(g, ...args);
    return gradImpl(f, opts, "grad", args)[1];
  };
  return g;
}

/** Like `grad`, but returns `[value, gradients]` (value = `[loss, aux]` with `hasAux`). */
// deno-lint-ignore no-explicit-any
export function valueAndGrad<F extends (...args: any[]) => unknown>(
  f: F,
  opts: GradOptions = {},
  // deno-lint-ignore no-explicit-any
): (...args: Parameters<F>) => [any, any] {
  const g = (...args: unknown[]): [unknown, unknown] => {
    if (!currentTrace()) return interpret(g, ...args) as [unknown, unknown];
    return gradImpl(f, opts, "valueAndGrad", args);
  };
  return g;
}

/**
 * Vector-Jacobian product inside a traced function: returns f's outputs and a pullback mapping
 * output cotangents (same pytree as the outputs) to cotangents of every primal argument.
 */
export function vjp(
  f: (...args: never[]) => unknown,
  ...primals: unknown[]
): [unknown, (cotangents: unknown) => unknown[]] {
  if (!currentTrace()) {
    throw new DslError("vjp", "call vjp inside a traced function (interpret, trace, jit)");
  }
  const { graph, env, inTree } = traceAndInline(f, primals, "vjp");
  const out = unflattenTree(graph.outTree, graph.outputs.map((n) => env.get(n)!));
  const pullback = (cotangents: unknown): unknown[] => {
    const [cts] = flattenTree(cotangents, isArgLeaf, "vjp cotangents");
    if (cts.length !== graph.outputs.length) {
      throw new DslError(
        "vjp",
        `expected ${graph.outputs.length} cotangent(s) matching the outputs, got ${cts.length}`,
      );
    }
    const seeds = new Map<Node, Tensor>();
    graph.outputs.forEach((n, i) => {
      const c = lax.cast(asTensor(cts[i] as Parameters<typeof asTensor>[0], "vjp"), n.dtype);
      if (!shapesEqual(c.shape, n.shape)) {
        throw new DslError("vjp", `cotangent ${i} must have shape of output ${formatAval(n)}`, [
          formatAval(c),
          formatAval(n),
        ]);
      }
      const prev = seeds.get(n);
      seeds.set(n, prev ? lax.add(prev, c) : c);
    });
    const floatInputs = graph.inputs.filter((n) => isFloat(n.dtype));
    const grads = backwardPass(graph, env, seeds, floatInputs);
    const byNode = new Map(floatInputs.map((n, i) => [n, grads[i]]));
    const leaves = graph.inputs.map((n) =>
      isFloat(n.dtype) ? byNode.get(n) ?? lax.splat(0, n.shape, n.dtype) : null
    );
    return (unflattenTree(inTree, leaves) as unknown[]);
  };
  return [out, pullback];
}

/**
 * Jacobian-vector product, obtained by transposing the (linear) pullback: J·u = ∂/∂v ⟨vjp(v), u⟩.
 * Returns `[f(primals), J·tangents]` for a function of one array argument.
 */
export function jvp(f: (x: Tensor) => Tensor, primal: Tensor, tangent: Tensor): [Tensor, Tensor] {
  const [out, pullback] = vjp(f as (...a: never[]) => unknown, primal);
  const y = out as Tensor;
  const inner = (v: Tensor) => {
    const [g] = pullback(v) as Tensor[];
    return lax.sum(lax.mul(g, tangent), g.shape.map((_, i) => i));
  };
  const zero = lax.splat(0, y.shape, y.dtype); // the tangent takes the output's dtype
  const ju = gradImpl(inner as (...a: never[]) => unknown, {}, "jvp", [zero])[1];
  return [y, ju as Tensor];
}
