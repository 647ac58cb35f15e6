/**
 * Element types of tensors and their promotion rules.
 *
 * `bool` is a first-class dtype (results of comparisons, conditions of `where`); on the host and on
 * the device it is stored as 0/1 in 32-bit integers, since WGSL has no bool storage.
 *
 * `f16` is IEEE half precision. On the host its values live in a Float16Array (every store rounds
 * to half, to nearest even). Every op computes in f32 and rounds its result to f16, as PyTorch's
 * eager half kernels do; compiled kernels round each f16 value where they compute it, fused ones
 * included (compiler/codegen/builder.ts `halfValue`).
 */

export type DType = "f32" | "f16" | "i32" | "bool";

/** Evaluation precision of the CPU reference: `f32` mimics the device, `f64` is for gradient checks. */
export type Precision = "f32" | "f64";

export const DTYPES: readonly DType[] = ["f32", "f16", "i32", "bool"];

/** Whether `x` names a dtype. */
export function isDType(x: unknown): x is DType {
  return x === "f32" || x === "f16" || x === "i32" || x === "bool";
}

/** Whether `dtype` is a floating-point type (f32 or f16). */
export function isFloat(dtype: DType): boolean {
  return dtype === "f32" || dtype === "f16";
}

/** The float dtype a value of `dtype` is computed in by float-only ops: itself, or f32. */
export function floatDType(dtype: DType): DType {
  return isFloat(dtype) ? dtype : "f32";
}

/**
 * numpy-style promotion of two strongly typed operands: bool < i32 < f16 < f32. An integer meets
 * f16 at f16 (JAX's lattice; numpy would widen to a float type we do not have).
 */
export function promoteDTypes(a: DType, b: DType): DType {
  const rank = { bool: 0, i32: 1, f16: 2, f32: 3 } as const;
  return rank[a] >= rank[b] ? a : b;
}
