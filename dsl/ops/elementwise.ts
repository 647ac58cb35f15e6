/** Elementwise ops with numpy broadcasting and promotion; composites are built from primitives. */

import type { DType } from "../dtype.ts";
import * as lax from "../lax.ts";
import type { Tensor } from "../trace.ts";
import {
  asTensor,
  broadcastAll,
  computeInF32,
  type OperandKind,
  prepareOperands,
  type TensorLike,
} from "./coerce.ts";

const binaryOp = (op: string, kind: OperandKind = "arith") => (a: TensorLike, b: TensorLike) => {
  const [x, y] = prepareOperands(op, [a, b], kind);
  return lax[op as "add"](x, y);
};

const floatUnaryOp = (op: string) => (x: TensorLike): Tensor => {
  const [t] = prepareOperands(op, [x], "float");
  return lax[op as "exp"](t);
};

/** a + b, with numpy broadcasting. */
export const add: (a: TensorLike, b: TensorLike) => Tensor = binaryOp("add");
/** a − b. */
export const sub: (a: TensorLike, b: TensorLike) => Tensor = binaryOp("sub");
/** a · b (elementwise). */
export const mul: (a: TensorLike, b: TensorLike) => Tensor = binaryOp("mul");
/** a / b, always in f32 (true division, as numpy's `/`). */
export const div: (a: TensorLike, b: TensorLike) => Tensor = binaryOp("div", "float");
/** aᵇ in f32. */
export const pow: (a: TensorLike, b: TensorLike) => Tensor = binaryOp("pow", "float");
/** Elementwise maximum; NaN propagates; gradient split equally on ties. */
export const maximum: (a: TensorLike, b: TensorLike) => Tensor = binaryOp("maximum");

/** eˣ, in f32. */
export const exp: (x: TensorLike) => Tensor = floatUnaryOp("exp");
/** Natural logarithm, in f32. */
export const log: (x: TensorLike) => Tensor = floatUnaryOp("log");
/** √x, in f32. */
export const sqrt: (x: TensorLike) => Tensor = floatUnaryOp("sqrt");
/** Hyperbolic tangent, in f32. */
export const tanh: (x: TensorLike) => Tensor = floatUnaryOp("tanh");
/** Logistic sigmoid 1 / (1 + e⁻ˣ), in f32. */
export const sigmoid: (x: TensorLike) => Tensor = floatUnaryOp("sigmoid");
/** Gauss error function, in f32. */
export const erf: (x: TensorLike) => Tensor = floatUnaryOp("erf");
/** Sine (radians), in f32. */
export const sin: (x: TensorLike) => Tensor = floatUnaryOp("sin");
/** Cosine (radians), in f32. */
export const cos: (x: TensorLike) => Tensor = floatUnaryOp("cos");
/** 1 / x. */
export const reciprocal: (x: TensorLike) => Tensor = floatUnaryOp("recip");

/** −x (bool is computed as i32). */
export function neg(x: TensorLike): Tensor {
  return lax.neg(prepareOperands("neg", [x])[0]);
}

/** |x| (bool is computed as i32). */
export function abs(x: TensorLike): Tensor {
  return lax.abs(prepareOperands("abs", [x])[0]);
}

/** 1 / √x. */
export function rsqrt(x: TensorLike): Tensor {
  return lax.recip(sqrt(x));
}

/** x · x (bool is computed as i32). */
export function square(x: TensorLike): Tensor {
  const [t] = prepareOperands("square", [x]);
  return lax.mul(t, t);
}

/** Elementwise minimum (−max(−a, −b), so NaN propagates and ties split the gradient). */
export function minimum(a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = prepareOperands("minimum", [a, b]);
  return lax.neg(lax.maximum(lax.neg(x), lax.neg(y)));
}

/** max(x, 0), with gradient 0 at 0. */
export function relu(x: TensorLike): Tensor {
  const [t] = prepareOperands("relu", [x]);
  const zero = lax.splatLike(0, t);
  return lax.where(lax.less(zero, t), t, zero);
}

/**
 * Gaussian error linear unit. `approximate: true` (the default, as in JAX and GPT-2) uses the tanh
 * form; `false` uses erf.
 */
export function gelu(x: TensorLike, opts: { approximate?: boolean } = {}): Tensor {
  // In f32, rounded once for f16 input (a half polynomial would round at every step).
  const [t, back] = computeInF32(prepareOperands("gelu", [x], "float")[0], "gelu");
  const half = lax.mul(t, lax.splatLike(0.5, t));
  if (opts.approximate === false) {
    const inner = lax.erf(lax.mul(t, lax.splatLike(Math.SQRT1_2, t)));
    return back(lax.mul(half, lax.add(lax.splatLike(1, t), inner)));
  }
  const cube = lax.mul(lax.mul(t, t), t);
  const inner = lax.mul(
    lax.splatLike(Math.sqrt(2 / Math.PI), t),
    lax.add(t, lax.mul(lax.splatLike(0.044715, t), cube)),
  );
  return back(lax.mul(half, lax.add(lax.splatLike(1, t), lax.tanh(inner))));
}

/** x · sigmoid(x) (a.k.a. swish); in f32, rounded once for f16 input. */
export function silu(x: TensorLike): Tensor {
  const [t, back] = computeInF32(prepareOperands("silu", [x], "float")[0], "silu");
  return back(lax.mul(t, lax.sigmoid(t)));
}

/** Sign of x: −1, 0 or 1 in x's dtype. */
export function sign(x: TensorLike): Tensor {
  const [t] = prepareOperands("sign", [x]);
  const zero = lax.splatLike(0, t);
  const one = lax.splatLike(1, t);
  return lax.where(lax.less(zero, t), one, lax.where(lax.less(t, zero), lax.neg(one), zero));
}

/** Clamps x to [lo, hi]. */
export function clip(x: TensorLike, lo: TensorLike, hi: TensorLike): Tensor {
  return minimum(maximum(x, lo), hi);
}

/** a < b as bool, with broadcasting (false when either is NaN). */
export function less(a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = prepareOperands("less", [a, b], "any");
  return lax.less(x, y);
}

/** a > b as bool, with broadcasting (false when either is NaN). */
export function greater(a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = prepareOperands("greater", [a, b], "any");
  return lax.less(y, x);
}

/** a == b as bool, with broadcasting. */
export function equal(a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = prepareOperands("equal", [a, b], "any");
  return lax.equal(x, y);
}

/** a != b as bool, with broadcasting (true when either is NaN). */
export function notEqual(a: TensorLike, b: TensorLike): Tensor {
  return logicalNot(equal(a, b));
}

/** a ≤ b (false when either is NaN). */
export function lessEqual(a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = prepareOperands("lessEqual", [a, b], "any");
  const lt = lax.less(x, y);
  return lax.where(lt, lt, lax.equal(x, y));
}

/** a ≥ b (false when either is NaN). */
export function greaterEqual(a: TensorLike, b: TensorLike): Tensor {
  return lessEqual(b, a);
}

function asBool(x: TensorLike, op: string): Tensor {
  const t = asTensor(x, op);
  // Non-zero is true, NaN included (numpy's truthiness, and what cast(x, "bool") does).
  return t.dtype === "bool" ? t : lax.cast(t, "bool");
}

/** Logical not; a non-bool operand means "non-zero". */
export function logicalNot(x: TensorLike): Tensor {
  const t = asBool(x, "logicalNot");
  return lax.equal(t, lax.splatLike(0, t));
}

/** Logical and, with broadcasting; a non-bool operand means "non-zero". */
export function logicalAnd(a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = broadcastAll("logicalAnd", [asBool(a, "logicalAnd"), asBool(b, "logicalAnd")]);
  return lax.where(x, y, x);
}

/** Logical or, with broadcasting; a non-bool operand means "non-zero". */
export function logicalOr(a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = broadcastAll("logicalOr", [asBool(a, "logicalOr"), asBool(b, "logicalOr")]);
  return lax.where(x, x, y);
}

/** isfinite(x): false for ±Inf and NaN. */
export function isFinite(x: TensorLike): Tensor {
  const [t] = prepareOperands("isFinite", [x], "float");
  return lax.less(lax.abs(t), lax.splatLike(Infinity, t));
}

/**
 * Selects `a` where `cond` holds, else `b` (all three broadcast). A non-bool condition means
 * "non-zero".
 */
export function where(cond: TensorLike, a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = prepareOperands("where", [a, b], "any");
  const [c, xb, yb] = broadcastAll("where", [asBool(cond, "where"), x, y]);
  return lax.where(c, xb, yb);
}

/** Converts x to `dtype` (to bool: non-zero, NaN included, is true). */
export function cast(x: TensorLike, dtype: DType): Tensor {
  return lax.cast(asTensor(x, "cast"), dtype);
}

/** The identity whose gradient is zero. */
export function stopGradient(x: TensorLike): Tensor {
  return lax.stopGradient(asTensor(x, "stopGradient"));
}
