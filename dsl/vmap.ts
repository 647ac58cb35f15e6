/**
 * `vmap`: the batching transformation (JAX's vmap, in_axes 0 or None, out_axes 0). `f` is traced
 * once on per-example shapes; the graph is then replayed with a leading batch axis on everything
 * that depends on a batched argument, using one rule per primitive (axes shifted, views extended,
 * unbatched operands broadcast only where an op needs both). A matmul of batched rows with an
 * unbatched weight becomes one 2-D product over all rows — which is what lets the trainer run K
 * shards' forward and backward passes as one batched pass.
 */

import { type CustomVjpRule, replayRule } from "./custom_vjp.ts";
import { DslError } from "./errors.ts";
import { full } from "./ops/creation.ts";
import { sum } from "./ops/reduce.ts";
import type { Node } from "./graph.ts";
import { isElementwise } from "./primitive.ts";
import type { HostArray } from "./host_array.ts";
import { interpret } from "./interpret.ts";
import * as lax from "./lax.ts";
import { asTensor } from "./ops/coerce.ts";
import { flattenTree, unflattenTree } from "./pytree.ts";
import {
  bind,
  constantTensor,
  currentTrace,
  isArgLeaf,
  leafAval,
  type Tensor,
  traceFlat,
} from "./trace.ts";

/**
 * A custom gradient rule under vmap: the rule itself, vmapped over the arguments the replay batched
 * (and over the cotangent and result); the cotangent of an argument shared by every example is
 * the sum over the batch of each example's.
 */
function batchedBackward(rule: CustomVjpRule, args: readonly Value[]): CustomVjpRule["backward"] {
  const shared = args.map((a) => !a.batched);
  if (shared.every(Boolean)) return rule.backward; // the replay did not batch this node
  return (g, xs, out) => {
    const perExample = (gk: Tensor, outk: Tensor, ...xk: Tensor[]) =>
      rule.backward(gk, xk, outk).map((c, i) => c ?? full(xk[i].shape, 0));
    const inAxes = [0 as const, 0 as const, ...shared.map((s) => s ? null : 0 as const)];
    const cts = vmap(perExample, { inAxes })(g, out, ...xs) as Tensor[];
    return cts.map((c, i) => shared[i] ? sum(c, 0) : c);
  };
}

/** A value during replay: the tensor and whether it carries the leading batch axis. */
interface Value {
  t: Tensor;
  batched: boolean;
}

const shift = (axes: readonly number[]) => axes.map((a) => a + 1);

/** `x` with a leading batch axis of size k (a broadcast view when it had none). */
function lift(x: Value, k: number): Tensor {
  if (x.batched) return x.t;
  const shape = x.t.shape;
  return lax.broadcast(lax.reshape(x.t, [1, ...shape]), [k, ...shape]);
}

/** Applies the primitive per example and stacks: correct for every op, used for the rare ones. */
function unrolled(node: Node, args: Value[], k: number): Tensor {
  const rows: Tensor[] = [];
  for (let i = 0; i < k; i++) {
    const inputs = args.map((a) => {
      if (!a.batched) return a.t;
      const starts = a.t.shape.map((_, d) => (d === 0 ? i : 0));
      const ends = a.t.shape.map((s, d) => (d === 0 ? i + 1 : s));
      return lax.reshape(lax.slice(a.t, starts, ends), a.t.shape.slice(1));
    });
    const out = bind(node.op, inputs, node.params);
    rows.push(lax.reshape(out, [1, ...out.shape]));
  }
  return lax.concat(rows, 0);
}

/** The batched version of one node whose inputs include a batched value. */
function batchRule(node: Node, args: Value[], k: number): Tensor {
  const p = node.params as Record<string, unknown>;
  const [x] = args;
  if (isElementwise(node.op)) return bind(node.op, args.map((a) => lift(a, k)), node.params);
  switch (node.op) {
    case "sum":
    case "max":
      return bind(node.op, [x.t], { ...p, axes: shift(p.axes as number[]) });
    case "argmax":
      return bind(node.op, [x.t], { ...p, axis: (p.axis as number) + 1 });
    case "reshape":
      return lax.reshape(x.t, [k, ...(p.shape as number[])]);
    case "transpose":
      return lax.transpose(x.t, [0, ...shift(p.perm as number[])]);
    case "broadcast":
      return lax.broadcast(x.t, [k, ...(p.shape as number[])]);
    case "slice":
      return lax.slice(x.t, [0, ...(p.starts as number[])], [k, ...(p.ends as number[])]);
    case "pad":
      return lax.pad(
        x.t,
        [0, ...(p.lo as number[])],
        [0, ...(p.hi as number[])],
        p.value as number,
      );
    case "concat":
      return lax.concat(args.map((a) => lift(a, k)), (p.axis as number) + 1);
    case "matmul": {
      const [a, b] = args;
      if (a.batched && !b.batched && b.t.ndim === 2) {
        // Rows of every example against one weight: a single [(k·…·M), K]·[K, N] product.
        const rows = a.t.shape.slice(0, -1).reduce((s, d) => s * d, 1);
        const flat = lax.matmul(lax.reshape(a.t, [rows, a.t.shape[a.t.ndim - 1]]), b.t);
        return lax.reshape(flat, [...a.t.shape.slice(0, -1), b.t.shape[1]]);
      }
      return lax.matmul(lift(a, k), lift(b, k));
    }
    case "gather": {
      const [table, indices] = args;
      const axis = p.axis as number;
      if (table.batched && !indices.batched) return lax.gather(table.t, indices.t, axis + 1);
      if (!table.batched && indices.batched) {
        const out = lax.gather(table.t, indices.t, axis);
        if (axis === 0) return out;
        const perm = out.shape.map((_, i) => i);
        perm.splice(axis, 1);
        return lax.transpose(out, [axis, ...perm]);
      }
      return unrolled(node, args, k);
    }
    default:
      return unrolled(node, args, k);
  }
}

/** Options of `vmap`. */
export interface VmapOptions {
  /** Per positional argument: 0 (leaves carry a leading batch axis) or null (shared). Default all 0. */
  inAxes?: readonly (0 | null)[];
}

/**
 * `vmap(f, { inAxes })(...args)`: f applied to every slice along axis 0 of the batched arguments,
 * results stacked along a new axis 0. Works inside traces (jit, grad) and eagerly on host arrays.
 *
 * @example vmap((row) => sum(row))(array([[1, 2], [3, 4]])) // f32[2] [3, 7]
 * @example vmap((x, w) => matmul(x, w), { inAxes: [0, null] })(xs, w) // w shared by every slice
 */
// deno-lint-ignore no-explicit-any
export function vmap<F extends (...args: any[]) => unknown>(
  f: F,
  opts: VmapOptions = {},
  // deno-lint-ignore no-explicit-any
): (...args: Parameters<F>) => any {
  // deno-lint-ignore no-explicit-any
  const batchedF = (...args: Parameters<F>): any => {
    if (!currentTrace()) return interpret(batchedF, ...(args as unknown[]));
    const inAxes = opts.inAxes ?? args.map(() => 0 as const);
    if (inAxes.length !== args.length) {
      throw new DslError(
        "vmap",
        `inAxes has ${inAxes.length} entries for ${args.length} argument(s)`,
      );
    }
    const leafBatched: boolean[] = [];
    const tensors: Tensor[] = [];
    let k: number | undefined;
    args.forEach((arg, i) => {
      const [leaves] = flattenTree(arg, isArgLeaf, "vmap");
      for (const leaf of leaves) {
        const t = asTensor(leaf as Tensor | HostArray, "vmap");
        const batched = inAxes[i] === 0;
        if (batched) {
          if (t.ndim === 0) {
            throw new DslError("vmap", `argument ${i} has a scalar leaf; it cannot be batched`);
          }
          if (k !== undefined && t.shape[0] !== k) {
            throw new DslError(
              "vmap",
              `batched leaves disagree on the batch size (${k} vs ${t.shape[0]})`,
            );
          }
          k = t.shape[0];
        }
        leafBatched.push(batched);
        tensors.push(t);
      }
    });
    if (k === undefined) {
      throw new DslError("vmap", "no batched argument (every inAxes entry is null)");
    }
    const [, inTree] = flattenTree(args, isArgLeaf, "vmap");
    const avals = tensors.map((t, i) => {
      const a = leafAval(t);
      return leafBatched[i] ? { shape: a.shape.slice(1), dtype: a.dtype } : a;
    });
    const graph = traceFlat(f as (...a: unknown[]) => unknown, avals, inTree, "vmap");
    const env = new Map<Node, Value>();
    graph.inputs.forEach((n, i) => env.set(n, { t: tensors[i], batched: leafBatched[i] }));
    for (const c of graph.captures) env.set(c.node, { t: c.outer as Tensor, batched: false });
    for (const n of graph.nodes) {
      if (env.has(n)) continue;
      if (n.op === "constant") {
        env.set(n, { t: constantTensor(n.params.value as HostArray), batched: false });
        continue;
      }
      const inputs = n.inputs.map((x) => env.get(x)!);
      const batched = inputs.some((x) => x.batched);
      const t = batched ? batchRule(n, inputs, k) : bind(n.op, inputs.map((x) => x.t), n.params);
      const args = (rule: CustomVjpRule) => rule.inputs.map((x) => env.get(x)!);
      replayRule(
        n,
        t,
        (rule) => args(rule).map((a) => a.t),
        (rule) => batchedBackward(rule, args(rule)),
      );
      env.set(n, { t, batched });
    }
    const outs = graph.outputs.map((n) => lift(env.get(n)!, k!));
    return unflattenTree(graph.outTree, outs);
  };
  return batchedF;
}
