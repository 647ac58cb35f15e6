/**
 * Turning op arguments into tensors of one dtype and one shape: numpy broadcasting, dtype
 * promotion (bool < i32 < f16 < f32), and weakly typed plain numbers (a literal adapts to the tensor's
 * dtype, as Python scalars do in JAX, unless it needs a float).
 */

// Registers every primitive: any module using ops gets them, however it is imported.
import "../primitives/mod.ts";
import { type DType, floatDType, isFloat, promoteDTypes } from "../dtype.ts";
import { DslError } from "../errors.ts";
import { formatAval } from "../graph.ts";
import { type HostArray, isHostArray } from "../host_array.ts";
import * as lax from "../lax.ts";
import { broadcastShapes, normalizeAxis } from "../shape.ts";
import { constantTensor, isTensor, requireTrace, type Tensor } from "../trace.ts";

/** Anything an op accepts as an operand. */
export type TensorLike = Tensor | HostArray | number | boolean;

/** What the op computes in: `arith` turns bool into i32; `float` in f16 or f32 (ints: f32). */
export type OperandKind = "arith" | "float" | "any";

function describe(x: TensorLike): string {
  if (typeof x === "number" || typeof x === "boolean") return `${typeof x} ${x}`;
  if (isTensor(x) || isHostArray(x)) return formatAval(x);
  return typeof x;
}

/** A single operand as a tensor (HostArrays become graph constants). */
export function asTensor(x: TensorLike, op: string): Tensor {
  if (isTensor(x)) return x;
  requireTrace(op);
  if (isHostArray(x)) return constantTensor(x, op);
  if (typeof x === "number") return lax.scalar(x, "f32");
  if (typeof x === "boolean") return lax.scalar(x ? 1 : 0, "bool");
  throw new DslError(op, `expected a Tensor, HostArray or number, got ${describe(x)}`);
}

/**
 * `x` as an f32 tensor to compute in, and the cast that brings a result back to x's float dtype:
 * ops with internal statistics (softmax, norms, means) compute in f32 and return f16 for f16
 * input, as PyTorch's half kernels do.
 */
export function computeInF32(x: TensorLike, op: string): [Tensor, (y: Tensor) => Tensor] {
  const t = asTensor(x, op);
  const out = floatDType(t.dtype);
  return [lax.cast(t, "f32"), (y) => lax.cast(y, out)];
}

/** The dtype several operands promote to. */
export function resultDType(xs: readonly TensorLike[], kind: OperandKind): DType {
  let strong: DType | undefined;
  for (const x of xs) {
    if (isTensor(x) || isHostArray(x)) strong = strong ? promoteDTypes(strong, x.dtype) : x.dtype;
  }
  let dtype: DType = strong ??
    (xs.every((x) => typeof x === "boolean") ? "bool" : "f32");
  for (const x of xs) {
    if (typeof x === "number") {
      if (!Number.isInteger(x) && !isFloat(dtype)) dtype = "f32";
      else if (dtype === "bool") dtype = "i32";
    }
  }
  if (kind === "float") return floatDType(dtype);
  if (kind === "arith" && dtype === "bool") return "i32";
  return dtype;
}

/** Broadcasts tensors to one shape, naming `op` and the shapes on failure. */
export function broadcastAll(op: string, xs: readonly Tensor[]): Tensor[] {
  const shape = broadcastShapes(...xs.map((x) => x.shape));
  if (!shape) {
    throw new DslError(
      op,
      `shapes ${xs.map(formatAval).join(", ")} cannot be broadcast together`,
      xs.map(formatAval),
    );
  }
  return xs.map((x) => broadcastTensor(x, shape));
}

export function broadcastTensor(x: Tensor, shape: readonly number[]): Tensor {
  const lead = shape.length - x.shape.length;
  const reshaped = lax.reshape(x, [...new Array(lead).fill(1), ...x.shape]);
  return lax.broadcast(reshaped, shape);
}

/** Operands of an elementwise op: promoted to one dtype and broadcast to one shape. */
export function prepareOperands(
  op: string,
  xs: readonly TensorLike[],
  kind: OperandKind = "arith",
): Tensor[] {
  const dtype = resultDType(xs, kind);
  const tensors = xs.map((x) => {
    if (typeof x === "number" || typeof x === "boolean") {
      requireTrace(op);
      return lax.scalar(+x, dtype);
    }
    return lax.cast(asTensor(x, op), dtype);
  });
  return broadcastAll(op, tensors);
}

/** Normalises axes (number, array, or all when undefined); rejects out-of-range and repeats. */
export function normalizeAxes(
  op: string,
  x: Tensor,
  axes: number | readonly number[] | undefined,
): number[] {
  if (axes === undefined) return x.shape.map((_, i) => i);
  const list = typeof axes === "number" ? [axes] : [...axes];
  const out = list.map((a) => {
    const n = normalizeAxis(a, x.shape.length);
    if (n < 0) {
      throw new DslError(
        op,
        `axis ${a} is out of range for ${formatAval(x)} (rank ${x.shape.length})`,
        [formatAval(x)],
      );
    }
    return n;
  });
  if (new Set(out).size !== out.length) {
    throw new DslError(op, `repeated axis in ${JSON.stringify(list)}`, [formatAval(x)]);
  }
  return out.sort((a, b) => a - b);
}

export function normalizeOneAxis(op: string, x: Tensor, axis: number, rank = x.ndim): number {
  const n = normalizeAxis(axis, rank);
  if (n < 0) {
    throw new DslError(op, `axis ${axis} is out of range for ${formatAval(x)} (rank ${rank})`, [
      formatAval(x),
    ]);
  }
  return n;
}
