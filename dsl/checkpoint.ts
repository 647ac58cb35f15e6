/**
 * Activation checkpointing (rematerialisation). `checkpoint(f)` records which nodes f adds to the
 * trace; when a gradient reaches them, `backwardPass` recomputes the region from its inputs
 * instead of reading the forward values, so the forward intermediates die as soon as the forward
 * pass no longer needs them. The recomputation reads its inputs through `checkpointBarrier`, an
 * identity the compiler keeps, so common-subexpression elimination cannot merge the recomputed
 * nodes back into the forward ones.
 */

import type { Node } from "./graph.ts";
import { bind, currentTrace, type Tensor } from "./trace.ts";

const regionOf = new WeakMap<Node, readonly Node[]>();

/**
 * `f` with its intermediates recomputed in the backward pass instead of kept from the forward
 * pass: less memory for one more forward pass of f. Values and gradients are unchanged. Nested
 * checkpoints are recomputed as part of the outermost one.
 *
 * @example const block = checkpoint((h: Tensor) => add(h, mlp(h))); // per decoder block
 */
// deno-lint-ignore no-explicit-any
export function checkpoint<F extends (...args: any[]) => unknown>(f: F): F {
  const g = (...args: unknown[]) => {
    const trace = currentTrace();
    if (!trace) return f(...args);
    const start = trace.nodes.length;
    const out = f(...args);
    const region = trace.nodes.slice(start);
    for (const n of region) regionOf.set(n, region);
    return out;
  };
  return g as F;
}

/** The checkpointed region `node` belongs to, if any. */
export function checkpointRegion(node: Node): readonly Node[] | undefined {
  return regionOf.get(node);
}

/**
 * Replays `region` in the active trace: every computed node again, from `value(x)` of the nodes
 * outside it (through a barrier each); inputs and constants keep their values. Returns the
 * recomputed tensors by node.
 */
export function recomputeRegion(
  region: readonly Node[],
  value: (n: Node) => Tensor,
): Map<Node, Tensor> {
  const members = new Set(region);
  const recomputed = new Map<Node, Tensor>();
  const barriers = new Map<Node, Tensor>();
  const read = (x: Node): Tensor => {
    const mine = recomputed.get(x);
    if (mine) return mine;
    if (members.has(x)) return value(x);
    let b = barriers.get(x);
    if (!b) barriers.set(x, b = bind("checkpointBarrier", [value(x)]));
    return b;
  };
  for (const n of region) {
    if (n.op === "input" || n.op === "constant") continue;
    recomputed.set(n, bind(n.op, n.inputs.map(read), n.params));
  }
  return recomputed;
}
