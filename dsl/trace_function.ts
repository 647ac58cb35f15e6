/** `trace(f, ...specs)`: the Graph of a function, for printing, passes and compilation. */

import { isDType } from "./dtype.ts";
import type { Graph } from "./graph.ts";
import { isHostArray } from "./host_array.ts";
import { flattenTree } from "./pytree.ts";
import { type ArgSpec, isTensor, leafAval, traceFlat } from "./trace.ts";
import { isValidShape } from "./shape.ts";

/** A `{ shape, dtype? }` object with nothing else: a shape specification, not a pytree node. */
export function isShapeSpec(x: unknown): x is ArgSpec {
  if (typeof x !== "object" || x === null || isHostArray(x) || isTensor(x)) return false;
  const keys = Object.keys(x);
  const spec = x as { shape?: unknown; dtype?: unknown };
  return isValidShape(spec.shape) && keys.every((k) => k === "shape" || k === "dtype") &&
    (spec.dtype === undefined || isDType(spec.dtype));
}

function isSpecLeaf(x: unknown): x is ArgSpec | number | boolean {
  return isHostArray(x) || isShapeSpec(x) || typeof x === "number" || typeof x === "boolean";
}

/**
 * Traces `f` on arguments described by host arrays or `{ shape, dtype }` specs (pytrees of them);
 * `String(graph)` prints the IR.
 *
 * @example String(trace((x) => sum(tanh(x)), { shape: [3] }))
 */
// deno-lint-ignore no-explicit-any
export function trace(f: (...args: any[]) => unknown, ...specs: unknown[]): Graph {
  const [leaves, inTree] = flattenTree(specs, isSpecLeaf, "trace");
  return traceFlat(f, leaves.map(leafAval), inTree, "trace");
}
