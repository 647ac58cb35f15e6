/**
 * Elementwise primitives. Operands have identical shapes and (except `where`'s condition)
 * identical dtypes: broadcasting and promotion happen in the numpy-style ops, explicitly, so the
 * IR shows them and the compiler turns them into index arithmetic.
 */

import { type DType, isFloat } from "../dtype.ts";
import type { AbstractValue } from "../graph.ts";
import * as lax from "../lax.ts";
import {
  definePrimitive,
  fail,
  type Primitive,
  requireDTypes,
  type VjpArgs,
} from "../primitive.ts";
import { erf, mapElements } from "../reference.ts";
import { elementwiseWgsl, type WgslHelperName } from "./wgsl.ts";
import { shapesEqual } from "../shape.ts";
import type { Tensor } from "../trace.ts";

type Vjp = (g: Tensor, args: VjpArgs<Record<string, never>>) => (Tensor | null)[];

function sameShapes(op: string, inputs: readonly AbstractValue[]): void {
  if (!inputs.every((x) => shapesEqual(x.shape, inputs[0].shape))) {
    fail(op, "operands must have identical shapes", inputs);
  }
}

function sameDTypes(op: string, inputs: readonly AbstractValue[]): void {
  if (!inputs.every((x) => x.dtype === inputs[0].dtype)) {
    fail(op, "operands must have the same dtype", inputs);
  }
}

interface ElementwiseSpec {
  name: string;
  arity: 1 | 2;
  dtypes: readonly DType[];
  /** Output dtype; defaults to the operands'. */
  outDtype?: DType;
  /** Reference for float operands (computed in f64, stored at the evaluation precision). */
  float?: (...xs: number[]) => number;
  /** Reference for i32/bool operands (must wrap like 32-bit integers). */
  int?: (...xs: number[]) => number;
  vjp?: Vjp;
  /** WGSL expression from operand expressions (and their avals). */
  wgsl: (args: string[], inputs: readonly AbstractValue[]) => string;
  helpers?: WgslHelperName[];
}

function elementwise(spec: ElementwiseSpec): Primitive<Record<string, never>> {
  return definePrimitive({
    name: spec.name,
    abstractEval(inputs) {
      if (inputs.length !== spec.arity) fail(spec.name, `expects ${spec.arity} operand(s)`, inputs);
      requireDTypes(spec.name, inputs, spec.dtypes);
      sameDTypes(spec.name, inputs);
      sameShapes(spec.name, inputs);
      return { shape: inputs[0].shape, dtype: spec.outDtype ?? inputs[0].dtype };
    },
    vjp: spec.vjp,
    evaluate(inputs, _params, ctx) {
      const fn = isFloat(inputs[0].dtype) ? spec.float : spec.int;
      if (!fn) throw new Error(`${spec.name}: no reference for ${inputs[0].dtype}`);
      return mapElements(inputs, spec.outDtype ?? inputs[0].dtype, ctx, fn);
    },
    wgsl: elementwiseWgsl((args, inputs) => spec.wgsl(args, inputs), spec.helpers),
  });
}

const FLOAT = ["f32", "f16"] as const;
const NUMERIC = ["f32", "f16", "i32"] as const;
const ANY = ["f32", "f16", "i32", "bool"] as const;
const { mul, div, sub, neg, where, splatLike } = lax;

const floatUnary = (
  name: string,
  float: (x: number) => number,
  vjp: Vjp,
  wgsl: (x: string) => string,
  helpers: WgslHelperName[] = [],
) => elementwise({ name, arity: 1, dtypes: FLOAT, float, vjp, wgsl: ([x]) => wgsl(x), helpers });

floatUnary("exp", Math.exp, (g, { output }) => [mul(g, output)], (x) => `exp(${x})`);
floatUnary("log", Math.log, (g, { inputs: [x] }) => [div(g, x)], (x) => `log(${x})`);
floatUnary(
  "sqrt",
  Math.sqrt,
  (g, { output }) => [div(g, mul(output, splatLike(2, output)))],
  (x) => `sqrt(${x})`,
);
floatUnary(
  "recip",
  (x) => 1 / x,
  (g, { output }) => [neg(mul(g, mul(output, output)))],
  (x) => `(1.0f / ${x})`,
);
floatUnary(
  "tanh",
  Math.tanh,
  (g, { output }) => [mul(g, sub(splatLike(1, output), mul(output, output)))],
  (x) => `tanh_safe(${x})`,
  ["tanh_safe"],
);
floatUnary(
  "sigmoid",
  (x) => 1 / (1 + Math.exp(-x)),
  (g, { output }) => [mul(g, mul(output, sub(splatLike(1, output), output)))],
  (x) => `(1.0f / (1.0f + exp(-${x})))`,
);
floatUnary(
  "erf",
  erf,
  (g, { inputs: [x] }) => [
    mul(g, mul(splatLike(2 / Math.sqrt(Math.PI), x), lax.exp(neg(mul(x, x))))),
  ],
  (x) => `erf_f32(${x})`,
  ["erf_f32"],
);
floatUnary("sin", Math.sin, (g, { inputs: [x] }) => [mul(g, lax.cos(x))], (x) => `sin(${x})`);
floatUnary(
  "cos",
  Math.cos,
  (g, { inputs: [x] }) => [neg(mul(g, lax.sin(x)))],
  (x) => `cos(${x})`,
);

elementwise({
  name: "neg",
  arity: 1,
  dtypes: NUMERIC,
  float: (x) => -x,
  int: (x) => (-x) | 0,
  vjp: (g) => [neg(g)],
  wgsl: ([x]) => `(-${x})`,
});

/** sign(x) as a float tensor, 0 at 0 (so |x|' = 0 there, as in JAX). */
function sign(x: Tensor): Tensor {
  const zero = splatLike(0, x);
  const one = splatLike(1, x);
  return where(lax.less(zero, x), one, where(lax.less(x, zero), neg(one), zero));
}

elementwise({
  name: "abs",
  arity: 1,
  dtypes: NUMERIC,
  float: Math.abs,
  int: (x) => Math.abs(x) | 0,
  vjp: (g, { inputs: [x] }) => [mul(g, sign(x))],
  wgsl: ([x]) => `abs(${x})`,
});

elementwise({
  name: "add",
  arity: 2,
  dtypes: NUMERIC,
  float: (a, b) => a + b,
  int: (a, b) => (a + b) | 0,
  vjp: (g) => [g, g],
  wgsl: ([a, b]) => `(${a} + ${b})`,
});
elementwise({
  name: "sub",
  arity: 2,
  dtypes: NUMERIC,
  float: (a, b) => a - b,
  int: (a, b) => (a - b) | 0,
  vjp: (g, { needs }) => [g, needs[1] ? neg(g) : null],
  wgsl: ([a, b]) => `(${a} - ${b})`,
});
elementwise({
  name: "mul",
  arity: 2,
  dtypes: NUMERIC,
  float: (a, b) => a * b,
  int: Math.imul,
  vjp: (g, { inputs: [a, b], needs }) => [needs[0] ? mul(g, b) : null, needs[1] ? mul(g, a) : null],
  wgsl: ([a, b]) => `(${a} * ${b})`,
});
elementwise({
  name: "div",
  arity: 2,
  dtypes: FLOAT,
  float: (a, b) => a / b,
  vjp: (g, { inputs: [, b], output, needs }) => [
    needs[0] ? div(g, b) : null,
    needs[1] ? neg(mul(g, div(output, b))) : null,
  ],
  wgsl: ([a, b]) => `(${a} / ${b})`,
});
elementwise({
  name: "pow",
  arity: 2,
  dtypes: FLOAT,
  float: Math.pow,
  vjp: (g, { inputs: [x, y], output, needs }) => [
    needs[0] ? mul(g, mul(y, lax.pow(x, sub(y, splatLike(1, y))))) : null,
    // d/dy x^y = log(x)·x^y; defined as 0 at x = 0 (the limit from the right), NaN for x < 0.
    needs[1]
      ? mul(g, where(lax.equal(x, splatLike(0, x)), splatLike(0, x), mul(lax.log(x), output)))
      : null,
  ],
  wgsl: ([a, b]) => `pow_f32(${a}, ${b})`,
  helpers: ["pow_f32"],
});

/** Gradient share of `a` in max(a, b): 1 where a wins, ½ on ties (as JAX and PyTorch do). */
function maxShare(a: Tensor, b: Tensor): Tensor {
  const one = splatLike(1, a);
  const zero = splatLike(0, a);
  return where(lax.less(b, a), one, where(lax.equal(a, b), splatLike(0.5, a), zero));
}

elementwise({
  name: "maximum",
  arity: 2,
  dtypes: NUMERIC,
  // Math.max propagates NaN, as WGSL's max does not guarantee: the compiler emits a NaN check.
  float: Math.max,
  int: Math.max,
  vjp: (g, { inputs: [a, b], needs }) => [
    needs[0] ? mul(g, maxShare(a, b)) : null,
    needs[1] ? mul(g, maxShare(b, a)) : null,
  ],
  wgsl: ([a, b], [x]) => (isFloat(x.dtype) ? `max_nan(${a}, ${b})` : `max(${a}, ${b})`),
  helpers: ["max_nan"],
});

elementwise({
  name: "less",
  arity: 2,
  dtypes: ANY,
  outDtype: "bool",
  float: (a, b) => (a < b ? 1 : 0),
  int: (a, b) => (a < b ? 1 : 0),
  // WGSL has no ordering on bool: compare as 0/1 integers.
  wgsl: ([a, b], [x]) =>
    x.dtype === "bool" ? `(select(0i, 1i, ${a}) < select(0i, 1i, ${b}))` : `(${a} < ${b})`,
});
elementwise({
  name: "equal",
  arity: 2,
  dtypes: ANY,
  outDtype: "bool",
  float: (a, b) => (a === b ? 1 : 0),
  int: (a, b) => (a === b ? 1 : 0),
  wgsl: ([a, b]) => `(${a} == ${b})`,
});

definePrimitive({
  name: "where",
  abstractEval(inputs) {
    if (inputs.length !== 3) fail("where", "expects (condition, x, y)", inputs);
    const [c, a, b] = inputs;
    if (c.dtype !== "bool") fail("where", "condition must be bool", inputs);
    sameDTypes("where", [a, b]);
    sameShapes("where", inputs);
    return { shape: a.shape, dtype: a.dtype };
  },
  vjp(g, { inputs: [c], needs }) {
    const zero = splatLike(0, g);
    return [null, needs[1] ? where(c, g, zero) : null, needs[2] ? where(c, zero, g) : null];
  },
  evaluate(inputs, _p, ctx) {
    return mapElements(inputs, inputs[1].dtype, ctx, (c, a, b) => (c ? a : b));
  },
  wgsl: elementwiseWgsl(([c, a, b]) => `select(${b}, ${a}, ${c})`),
});

// Bitwise integer primitives: the counter-based PRNG (dsl/random.ts) is built from these. JS and
// WGSL agree exactly: both take shift amounts modulo 32 and wrap i32 arithmetic.
const INT = ["i32"] as const;
const bitwise = (name: string, int: (a: number, b: number) => number, wgsl: string) =>
  elementwise({ name, arity: 2, dtypes: INT, int, wgsl: ([a, b]) => `(${a} ${wgsl} ${b})` });
bitwise("bitAnd", (a, b) => a & b, "&");
bitwise("bitOr", (a, b) => a | b, "|");
bitwise("bitXor", (a, b) => a ^ b, "^");
elementwise({
  name: "shiftLeft",
  arity: 2,
  dtypes: INT,
  int: (a, b) => a << b,
  wgsl: ([a, b]) => `(${a} << (u32(${b}) & 31u))`,
});
elementwise({
  name: "shiftRightLogical",
  arity: 2,
  dtypes: INT,
  int: (a, b) => (a >>> b) | 0,
  wgsl: ([a, b]) => `bitcast<i32>(bitcast<u32>(${a}) >> (u32(${b}) & 31u))`,
});
