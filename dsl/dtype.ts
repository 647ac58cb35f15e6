/**
 * Element types of tensors and their promotion rules.
 *
 * `bool` is a first-class dtype (results of comparisons, conditions of `where`); on the host and on
 * the device it is stored as 0/1 in 32-bit integers, since WGSL has no bool storage.
 */

export type DType = "f32" | "i32" | "bool";

/** Evaluation precision of the CPU reference: `f32` mimics the device, `f64` is for gradient checks. */
export type Precision = "f32" | "f64";

export const DTYPES: readonly DType[] = ["f32", "i32", "bool"];

export function isDType(x: unknown): x is DType {
  return x === "f32" || x === "i32" || x === "bool";
}

export function isFloat(dtype: DType): boolean {
  return dtype === "f32";
}

/** numpy-style promotion of two strongly typed operands: bool < i32 < f32. */
export function promoteDTypes(a: DType, b: DType): DType {
  const rank = { bool: 0, i32: 1, f32: 2 } as const;
  return rank[a] >= rank[b] ? a : b;
}
