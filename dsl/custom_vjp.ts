/**
 * Custom gradients (JAX's custom_vjp): `customVjp(forward, backward)` computes forward from
 * primitives as usual, but the backward pass gives the cotangent of its result to `backward`
 * instead of walking the primitives inside. A composite whose gradient has a compact closed form
 * uses it to keep less for the backward pass and to compute it in fewer kernels: softmax keeps
 * only its output (dx = y·(g − Σ g·y)), rmsNorm only its input (the row statistic is recomputed
 * in the kernel that needs it), where the primitives' own rules would keep the exponentials, the
 * broadcast sums or the reciprocal norms, each a buffer and a kernel of its own.
 *
 * The intermediate values inside forward still carry gradients reaching them from outside (if
 * another computation reads them); only the result's cotangent takes the custom rule.
 */

import type { Node } from "./graph.ts";
import type { Tensor } from "./trace.ts";

/** The rule `backwardPass` applies to the result node of a custom-gradient function. */
export interface CustomVjpRule {
  /** The argument nodes the rule gives cotangents for. */
  inputs: readonly Node[];
  /** Cotangents of the arguments (null: none) from the result's cotangent and the primals. */
  backward: (ct: Tensor, inputs: readonly Tensor[], output: Tensor) => (Tensor | null)[];
}

const rules = new WeakMap<Node, CustomVjpRule>();

/**
 * `forward` with the gradient `backward` (cotangent of the result, the arguments and the result →
 * cotangents of the arguments, each of its argument's shape, or null). `backward` is traced like
 * any function, so the gradient can itself be differentiated.
 *
 * @example
 * const square = customVjp((x: Tensor) => mul(x, x), (g, [x]) => [mul(g, mul(x, 2))]);
 */
export function customVjp(
  forward: (...args: Tensor[]) => Tensor,
  backward: CustomVjpRule["backward"],
): (...args: Tensor[]) => Tensor {
  return (...args: Tensor[]) => {
    const out = forward(...args);
    register(out, args, backward);
    return out;
  };
}

/** The custom rule whose result is `node`, if any. */
export function customVjpRule(node: Node): CustomVjpRule | undefined {
  return rules.get(node);
}

/**
 * Gives `to` the rule of `from` when a transformation replays `from` as `to` (grad's and jit's
 * inlining, vmap's batching): `args` are the replayed arguments, and `backward` the rule as it
 * applies to them (vmap batches it). Without this the replay's gradient would fall back to the
 * primitives' rules: correct, but with what the custom rule avoids keeping.
 */
export function replayRule(
  from: Node,
  to: Tensor,
  args: (rule: CustomVjpRule) => readonly Tensor[],
  backward?: (rule: CustomVjpRule) => CustomVjpRule["backward"],
): void {
  const rule = rules.get(from);
  if (rule) register(to, args(rule), backward?.(rule) ?? rule.backward);
}

/** Sets the rule of `out` (computed from `args` in `out`'s trace) unless it has one. */
function register(
  out: Tensor,
  args: readonly Tensor[],
  backward: CustomVjpRule["backward"],
): void {
  if (rules.has(out.node)) return;
  const trace = out.trace;
  const inputs = args.map((x) => x.trace === trace ? x.node : trace.captures.get(x));
  // An argument forward never read, or returned as is, leaves the primitives' rules in force.
  const known = inputs.filter((x): x is Node => x !== undefined);
  if (known.length === inputs.length && !known.includes(out.node)) {
    rules.set(out.node, { inputs: known, backward });
  }
}
