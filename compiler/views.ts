/** Facts about view nodes shared by fusion planning and code generation. */

import type { Node } from "../dsl/mod.ts";

/** A transpose that swaps the last two axes only (a matrix transpose, batched). */
export function swapsLastTwo(x: Node): boolean {
  const perm = x.params.perm as number[] | undefined;
  const r = x.shape.length;
  return x.op === "transpose" && perm !== undefined &&
    perm.every((p, i) => (i < r - 2 ? p === i : p === (i === r - 2 ? r - 1 : r - 2)));
}

/**
 * `x` reads one contiguous block of an array in row-major order: the array itself, reshapes of
 * it, or contiguous slices of it (a block of a table's rows).
 */
export function isLayoutPreserving(x: Node, isBuffer: (n: Node) => boolean): boolean {
  if (isBuffer(x)) return true;
  const view = x.op === "reshape" || (x.op === "slice" && contiguousSliceStart(x) !== undefined);
  return view && isLayoutPreserving(x.inputs[0], isBuffer);
}

/**
 * The flat offset of a slice's first element when the slice is one contiguous block of its input
 * (axes before the first partial one kept to a single index, all axes after it whole).
 */
export function contiguousSliceStart(slice: Node): number | undefined {
  const starts = slice.params.starts as number[], ends = slice.params.ends as number[];
  const shape = slice.inputs[0].shape;
  const partial = shape.findIndex((d, i) => ends[i] - starts[i] !== d);
  if (partial < 0) return 0;
  const contiguous = shape.every((d, i) =>
    i < partial ? ends[i] - starts[i] === 1 : i === partial || ends[i] - starts[i] === d
  );
  if (!contiguous) return undefined;
  return starts.reduce((flat, s, i) => flat * shape[i] + s, 0);
}
