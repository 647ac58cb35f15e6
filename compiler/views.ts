/** Facts about view nodes shared by fusion planning and code generation. */

import type { Node } from "../dsl/mod.ts";

/** A transpose that swaps the last two axes only (a matrix transpose, batched). */
export function swapsLastTwo(x: Node): boolean {
  const perm = x.params.perm as number[] | undefined;
  const r = x.shape.length;
  return x.op === "transpose" && perm !== undefined &&
    perm.every((p, i) => (i < r - 2 ? p === i : p === (i === r - 2 ? r - 1 : r - 2)));
}

/** `x` reads a whole array in row-major order: the array itself or reshapes of it. */
export function isLayoutPreserving(x: Node, isBuffer: (n: Node) => boolean): boolean {
  return isBuffer(x) || (x.op === "reshape" && isLayoutPreserving(x.inputs[0], isBuffer));
}
