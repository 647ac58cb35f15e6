/**
 * Example-based tests of every public op on small inputs whose expected values are written out as
 * literals (worked by hand, or with numpy/scipy in f64 and rounded to 8 significant digits). Each
 * test runs the op through the CPU reference (`interpret`) and checks values, shape and dtype,
 * including the NaN/Inf edge cases where the semantics matter.
 */

import assert from "node:assert/strict";
import {
  abs,
  add,
  arange,
  argmax,
  array,
  broadcastTo,
  cast,
  clip,
  concat,
  cos,
  crossEntropy,
  div,
  equal,
  erf,
  exp,
  expandDims,
  full,
  gelu,
  grad,
  greater,
  greaterEqual,
  type HostArray,
  interpret,
  isFinite,
  layerNorm,
  less,
  lessEqual,
  log,
  logicalAnd,
  logicalNot,
  logicalOr,
  logSoftmax,
  logsumexp,
  matmul,
  max,
  maximum,
  mean,
  min,
  minimum,
  mul,
  neg,
  notEqual,
  oneHot,
  ones,
  pad,
  pow,
  reciprocal,
  relu,
  reshape,
  rmsNorm,
  rsqrt,
  scatterAdd,
  sigmoid,
  sign,
  silu,
  sin,
  slice,
  softmax,
  sqrt,
  square,
  squeeze,
  stack,
  stopGradient,
  sub,
  sum,
  take,
  tanh,
  transpose,
  where,
  zeros,
} from "../../mod.ts";
import { assertClose } from "../helpers/arrays.ts";

const f32 = (data: Parameters<typeof array>[0], shape?: number[]) =>
  array(data, { dtype: "f32", shape });
const i32 = (data: Parameters<typeof array>[0], shape?: number[]) =>
  array(data, { dtype: "i32", shape });

/** Asserts shape and dtype, then values (rtol 1e-6: f32 results vs. f64 literals). */
function check(
  actual: HostArray,
  shape: number[],
  dtype: HostArray["dtype"],
  expected: HostArray | number | boolean | readonly unknown[],
  opts: { rtol?: number; atol?: number } = {},
): void {
  assert.deepEqual(actual.shape, shape, "shape");
  assert.equal(actual.dtype, dtype, "dtype");
  assertClose(actual, expected, { rtol: opts.rtol ?? 1e-6, atol: opts.atol ?? 1e-6 });
}

// Shared inputs for the unary float ops.
const X = f32([-2, -0.5, 0, 1, 3]);
const POS = f32([0.25, 1, 2, 4, 9]);

// ---------------------------------------------------------------------------------------------
// Elementwise arithmetic with broadcasting

Deno.test("add broadcasts [2,1] + [3] to [2,3]", () => {
  const r = interpret((a, b) => add(a, b), f32([[1], [10]]), f32([1, 2, 3]));
  check(r, [2, 3], "f32", [[2, 3, 4], [11, 12, 13]]);
});

Deno.test("add with a plain number and a scalar-shaped array", () => {
  check(interpret((a) => add(a, 1.5), f32([1, 2])), [2], "f32", [2.5, 3.5]);
  check(interpret((a, b) => add(a, b), f32(2), f32([[1, 2]])), [1, 2], "f32", [[3, 4]]);
});

Deno.test("sub broadcasts in both directions: [3,1] − [1,2]", () => {
  const r = interpret((a, b) => sub(a, b), f32([[1], [2], [3]]), f32([[10, 20]]));
  check(r, [3, 2], "f32", [[-9, -19], [-8, -18], [-7, -17]]);
});

Deno.test("sub with the number on the left: 1 − x", () => {
  check(interpret((a) => sub(1, a), f32([0.5, 3])), [2], "f32", [0.5, -2]);
});

Deno.test("mul broadcasts a row over a matrix; i32 × i32 stays i32", () => {
  const r = interpret((a, b) => mul(a, b), f32([[1, 2], [3, 4]]), f32([10, -1]));
  check(r, [2, 2], "f32", [[10, -2], [30, -4]]);
  check(interpret((a, b) => mul(a, b), i32([3, -4]), i32([5, 6])), [2], "i32", [15, -24]);
});

Deno.test("div: true division, x/0 = ±Inf and 0/0 = NaN", () => {
  const r = interpret((a, b) => div(a, b), f32([1, -1, 0, 7]), f32([0, 0, 0, 2]));
  check(r, [4], "f32", [Infinity, -Infinity, NaN, 3.5]);
});

Deno.test("neg of f32 and i32 keeps the dtype", () => {
  check(interpret((a) => neg(a), f32([1.5, -2, 0])), [3], "f32", [-1.5, 2, 0]);
  check(interpret((a) => neg(a), i32([3, -4])), [2], "i32", [-3, 4]);
});

Deno.test("exp of [-2, -0.5, 0, 1, 3]; exp(-Inf) = 0, exp(Inf) = Inf", () => {
  check(interpret((a) => exp(a), X), [5], "f32", [
    0.13533528,
    0.60653066,
    1,
    2.7182818,
    20.085537,
  ]);
  check(interpret((a) => exp(a), f32([-Infinity, Infinity])), [2], "f32", [0, Infinity]);
});

Deno.test("log of positives; log(0) = −Inf, log(−1) = NaN", () => {
  check(interpret((a) => log(a), POS), [5], "f32", [
    -1.3862944,
    0,
    0.69314718,
    1.3862944,
    2.1972246,
  ]);
  check(interpret((a) => log(a), f32([0, -1])), [2], "f32", [-Infinity, NaN]);
});

Deno.test("sqrt of positives; sqrt(−1) = NaN; sqrt of i32 gives f32", () => {
  check(interpret((a) => sqrt(a), POS), [5], "f32", [0.5, 1, 1.4142136, 2, 3]);
  check(interpret((a) => sqrt(a), f32([-1, 0])), [2], "f32", [NaN, 0]);
  check(interpret((a) => sqrt(a), i32([4, 9])), [2], "f32", [2, 3]);
});

Deno.test("rsqrt of positives; rsqrt(0) = Inf", () => {
  check(interpret((a) => rsqrt(a), POS), [5], "f32", [2, 1, 0.70710678, 0.5, 0.33333333]);
  check(interpret((a) => rsqrt(a), f32([0])), [1], "f32", [Infinity]);
});

Deno.test("tanh of [-2, -0.5, 0, 1, 3] and saturation at ±Inf", () => {
  check(interpret((a) => tanh(a), X), [5], "f32", [
    -0.96402758,
    -0.46211716,
    0,
    0.76159416,
    0.99505475,
  ]);
  check(interpret((a) => tanh(a), f32([-Infinity, Infinity])), [2], "f32", [-1, 1]);
});

Deno.test("sigmoid of [-2, -0.5, 0, 1, 3]; sigmoid(±large) saturates to 0/1 without NaN", () => {
  check(interpret((a) => sigmoid(a), X), [5], "f32", [
    0.11920292,
    0.37754067,
    0.5,
    0.73105858,
    0.95257413,
  ]);
  check(interpret((a) => sigmoid(a), f32([-1000, 1000])), [2], "f32", [0, 1]);
});

Deno.test("relu zeroes negatives (and i32 stays i32)", () => {
  check(interpret((a) => relu(a), X), [5], "f32", [0, 0, 0, 1, 3]);
  check(interpret((a) => relu(a), i32([-3, 0, 4])), [3], "i32", [0, 0, 4]);
});

Deno.test("gelu: tanh approximation by default, exact erf form with approximate: false", () => {
  check(interpret((a) => gelu(a), X), [5], "f32", [
    -0.045402306,
    -0.15428599,
    0,
    0.84119199,
    2.9963626,
  ]);
  check(interpret((a) => gelu(a, { approximate: false }), X), [5], "f32", [
    -0.045500264,
    -0.15426877,
    0,
    0.84134475,
    2.9959503,
  ]);
});

Deno.test("silu = x·sigmoid(x)", () => {
  check(interpret((a) => silu(a), X), [5], "f32", [
    -0.23840584,
    -0.18877033,
    0,
    0.73105858,
    2.8577224,
  ]);
});

Deno.test("abs of f32 (incl. −0 and −Inf) and i32", () => {
  check(interpret((a) => abs(a), f32([-2.5, -0, 3, -Infinity])), [4], "f32", [2.5, 0, 3, Infinity]);
  check(interpret((a) => abs(a), i32([-7, 7])), [2], "i32", [7, 7]);
});

Deno.test("square of f32 and i32", () => {
  check(interpret((a) => square(a), f32([-3, 0.5])), [2], "f32", [9, 0.25]);
  check(interpret((a) => square(a), i32([-3, 4])), [2], "i32", [9, 16]);
});

Deno.test("pow with broadcasting; pow(−8, 1/3) = NaN, 0⁰ = 1; i32 bases give f32", () => {
  const r = interpret((a, b) => pow(a, b), f32([[2], [4]]), f32([0, 0.5, 3]));
  check(r, [2, 3], "f32", [[1, 1.4142136, 8], [1, 2, 64]]);
  check(interpret((a) => pow(a, 1 / 3), f32([-8, 0])), [2], "f32", [NaN, 0]);
  check(interpret((a) => pow(a, 0), f32([0])), [1], "f32", [1]);
  check(interpret((a) => pow(a, 2), i32([3, -2])), [2], "f32", [9, 4]);
});

Deno.test("maximum broadcasts and propagates NaN from either side", () => {
  const r = interpret((a, b) => maximum(a, b), f32([[1, 5], [NaN, -1]]), f32([2, NaN]));
  check(r, [2, 2], "f32", [[2, NaN], [NaN, NaN]]);
  check(interpret((a) => maximum(a, 0), i32([-2, 3])), [2], "i32", [0, 3]);
});

Deno.test("minimum broadcasts and propagates NaN from either side", () => {
  const r = interpret((a, b) => minimum(a, b), f32([[1, 5], [NaN, -1]]), f32([2, 0]));
  check(r, [2, 2], "f32", [[1, 0], [NaN, -1]]);
  check(interpret((a) => minimum(a, NaN), f32([1])), [1], "f32", [NaN]);
  check(interpret((a) => minimum(a, 0), i32([-2, 3])), [2], "i32", [-2, 0]);
});

Deno.test("where with a bool condition broadcasts condition and branches", () => {
  const r = interpret(
    (c, a, b) => where(c, a, b),
    array([[true], [false]]),
    f32([1, 2, 3]),
    f32(-1),
  );
  check(r, [2, 3], "f32", [[1, 2, 3], [-1, -1, -1]]);
});

Deno.test("where with a numeric condition means non-zero (f32 and i32)", () => {
  check(interpret((c) => where(c, 1, 2), f32([0, 2, -0.5, -0])), [4], "f32", [2, 1, 1, 2]);
  check(interpret((c) => where(c, 1, 2), i32([0, 3, -1])), [3], "f32", [2, 1, 1]);
});

Deno.test("where with numeric NaN condition counts NaN as non-zero, like cast to bool (numpy)", () => {
  check(interpret((c) => where(c, 1, 2), f32([NaN])), [1], "f32", [1]);
  check(interpret((c) => cast(c, "bool"), f32([NaN])), [1], "bool", [true]);
});

Deno.test("less / greater / equal give bool, broadcast, and are false on NaN", () => {
  const a = f32([1, 2, 3, NaN]);
  const b = f32([2, 2, 2, NaN]);
  check(interpret((x, y) => less(x, y), a, b), [4], "bool", [true, false, false, false]);
  check(interpret((x, y) => greater(x, y), a, b), [4], "bool", [false, false, true, false]);
  check(interpret((x, y) => equal(x, y), a, b), [4], "bool", [false, true, false, false]);
  check(
    interpret((x) => less(x, 2), i32([[1], [3]])),
    [2, 1],
    "bool",
    [[true], [false]],
  );
});

Deno.test("cast: f32→i32 truncates toward zero and saturates, NaN→0; i32→f32; →bool is ≠ 0", () => {
  check(
    interpret((x) => cast(x, "i32"), f32([-1.7, 2.9, NaN, 1e10, -1e10])),
    [5],
    "i32",
    [-1, 2, 0, 2147483647, -2147483648],
  );
  check(interpret((x) => cast(x, "f32"), i32([-3, 16777217])), [2], "f32", [-3, 16777216]);
  check(interpret((x) => cast(x, "bool"), f32([0, -0, 0.1, -2])), [4], "bool", [0, 0, 1, 1]);
  check(interpret((x) => cast(x, "i32"), array([true, false])), [2], "i32", [1, 0]);
});

// ---------------------------------------------------------------------------------------------
// Dtype promotion

Deno.test("promotion: i32 + f32 → f32", () => {
  check(interpret((a, b) => add(a, b), i32([1, 2]), f32([0.5, 1])), [2], "f32", [1.5, 3]);
});

Deno.test("promotion: i32 + 0.5 → f32, i32 + 2 stays i32 (weakly typed literal)", () => {
  check(interpret((a) => add(a, 0.5), i32([1, 2])), [2], "f32", [1.5, 2.5]);
  check(interpret((a) => add(a, 2), i32([1, 2])), [2], "i32", [3, 4]);
  check(interpret((a) => mul(a, 2), f32([1.5])), [1], "f32", [3]);
});

Deno.test("promotion: bool + bool → i32", () => {
  const r = interpret((a, b) => add(a, b), array([true, false, true]), array([true, true, false]));
  check(r, [3], "i32", [2, 1, 1]);
});

Deno.test("promotion: i32 / i32 → f32 true division", () => {
  const r = interpret((a, b) => div(a, b), i32([1, 7, -7]), i32([2, 2, 2]));
  check(r, [3], "f32", [0.5, 3.5, -3.5]);
});

Deno.test("promotion: comparisons of mixed i32/f32 give bool", () => {
  const r = interpret((a, b) => less(a, b), i32([1, 2]), f32([1.5, 1.5]));
  check(r, [2], "bool", [true, false]);
  check(interpret((a) => equal(a, 2), i32([2, 3])), [2], "bool", [true, false]);
});

// ---------------------------------------------------------------------------------------------
// Reductions

const R = f32([
  [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]],
  [[-1, -2, -3, -4], [0, 0, 0, 0], [2, 4, 6, 8]],
]); // shape [2, 3, 4]

Deno.test("sum over all axes, one axis, negative axis, several axes, keepDims", () => {
  check(interpret((x) => sum(x), R), [], "f32", 88);
  check(interpret((x) => sum(x, 0), R), [3, 4], "f32", [[0, 0, 0, 0], [5, 6, 7, 8], [
    11,
    14,
    17,
    20,
  ]]);
  check(interpret((x) => sum(x, -1), R), [2, 3], "f32", [[10, 26, 42], [-10, 0, 20]]);
  check(interpret((x) => sum(x, [0, -1]), R), [3], "f32", [0, 26, 62]);
  check(interpret((x) => sum(x, 1, { keepDims: true }), R), [2, 1, 4], "f32", [
    [[15, 18, 21, 24]],
    [[1, 2, 3, 4]],
  ]);
  check(interpret((x) => sum(x, [], {}), f32([1, 2])), [2], "f32", [1, 2]);
});

Deno.test("sum of i32 stays i32; sum of bool counts trues as i32", () => {
  check(interpret((x) => sum(x, -1), i32([[1, 2], [3, 4]])), [2], "i32", [3, 7]);
  check(interpret((x) => sum(x), array([true, true, false])), [], "i32", 2);
});

Deno.test("mean over axes (f32 result, also for i32 input), keepDims", () => {
  check(interpret((x) => mean(x), R), [], "f32", 88 / 24);
  check(interpret((x) => mean(x, [-2, -1]), R), [2], "f32", [6.5, 0.8333333]);
  check(interpret((x) => mean(x, 0, { keepDims: true }), R), [1, 3, 4], "f32", [
    [[0, 0, 0, 0], [2.5, 3, 3.5, 4], [5.5, 7, 8.5, 10]],
  ]);
  check(interpret((x) => mean(x), i32([1, 2])), [], "f32", 1.5);
});

Deno.test("max over axes with keepDims; NaN propagates; −Inf is a valid element", () => {
  check(interpret((x) => max(x), R), [], "f32", 12);
  check(interpret((x) => max(x, -1), R), [2, 3], "f32", [[4, 8, 12], [-1, 0, 8]]);
  check(interpret((x) => max(x, [0, 2], { keepDims: true }), R), [1, 3, 1], "f32", [[[4], [8], [
    12,
  ]]]);
  check(
    interpret((x) => max(x, 1), f32([[1, NaN, 3], [-Infinity, -Infinity, -5]])),
    [2],
    "f32",
    [NaN, -5],
  );
  check(interpret((x) => max(x, 0), i32([[1, -5], [-2, 7]])), [2], "i32", [1, 7]);
});

Deno.test("min (extra) over axes with keepDims and negative axes", () => {
  check(interpret((x) => min(x), R), [], "f32", -4);
  check(interpret((x) => min(x, -2, { keepDims: true }), R), [2, 1, 4], "f32", [
    [[1, 2, 3, 4]],
    [[-1, -2, -3, -4]],
  ]);
  check(interpret((x) => min(x, 0), f32([[1, NaN], [0, 2]])), [2], "f32", [0, NaN]);
});

Deno.test("logsumexp over the last axis, over two axes, with keepDims", () => {
  check(interpret((x) => logsumexp(x, -1), R), [2, 3], "f32", [
    [4.4401897, 8.4401897, 12.44019],
    [-0.5598103, 1.3862944, 8.1450779],
  ]);
  check(interpret((x) => logsumexp(x, [0, 1]), R), [4], "f32", [
    9.0195396,
    10.02096,
    11.025089,
    12.036306,
  ]);
  check(interpret((x) => logsumexp(x, 1, { keepDims: true }), f32([[0, 1, 2]])), [1, 1], "f32", [[
    2.407606,
  ]]);
});

Deno.test("logsumexp is stable for large values; all −Inf row gives −Inf; +Inf gives +Inf", () => {
  check(
    interpret((x) => logsumexp(x, -1), f32([[-1, 0, 1000], [1000, 1000, -Infinity]])),
    [
      2,
    ],
    "f32",
    [1000, 1000.6931472],
  );
  check(
    interpret(
      (x) => logsumexp(x, -1),
      f32([[-Infinity, -Infinity], [Infinity, 1], [-Infinity, 0]]),
    ),
    [3],
    "f32",
    [-Infinity, Infinity, 0],
  );
});

Deno.test("argmax (extra): first maximum, negative axis, keepDims, NaN counts as maximum", () => {
  check(interpret((x) => argmax(x), f32([[1, 3, 3], [5, 2, 5]])), [2], "i32", [1, 0]);
  check(interpret((x) => argmax(x, 0), f32([[1, 3, 3], [5, 2, 5]])), [3], "i32", [1, 0, 1]);
  check(interpret((x) => argmax(x, -1, { keepDims: true }), f32([[1, NaN, 9]])), [1, 1], "i32", [[
    1,
  ]]);
});

// ---------------------------------------------------------------------------------------------
// matmul (numpy semantics)

Deno.test("matmul 2-D × 2-D", () => {
  const r = interpret(
    (a, b) => matmul(a, b),
    f32([[1, 2, 3], [4, 5, 6]]),
    f32([[1, 0], [0, 1], [
      2,
      -1,
    ]]),
  );
  check(r, [2, 2], "f32", [[7, -1], [16, -1]]);
});

Deno.test("matmul 1-D × 1-D is the dot product (scalar)", () => {
  check(interpret((a, b) => matmul(a, b), f32([1, 2, 3]), f32([4, 5, 6])), [], "f32", 32);
});

Deno.test("matmul 1-D × 2-D promotes the left operand to a row and drops it", () => {
  const r = interpret((a, b) => matmul(a, b), f32([1, 2]), f32([[1, 2, 3], [4, 5, 6]]));
  check(r, [3], "f32", [9, 12, 15]);
});

Deno.test("matmul 2-D × 1-D promotes the right operand to a column and drops it", () => {
  const r = interpret((a, b) => matmul(a, b), f32([[1, 2, 3], [4, 5, 6]]), f32([1, 0, -1]));
  check(r, [2], "f32", [-2, -2]);
});

Deno.test("matmul 1-D × batched 3-D and batched 3-D × 1-D", () => {
  const e = f32([[[0, 1], [2, 3], [4, 5]], [[6, 7], [8, 9], [10, 11]]]); // arange(12) [2,3,2]
  check(interpret((v, m) => matmul(v, m), f32([1, 2, 3]), e), [2, 2], "f32", [[16, 22], [52, 58]]);
  const m2 = f32([[[0, 1, 2], [3, 4, 5]], [[6, 7, 8], [9, 10, 11]]]); // arange(12) [2,2,3]
  check(interpret((m, v) => matmul(m, v), m2, f32([1, 2, 3])), [2, 2], "f32", [[8, 26], [44, 62]]);
});

Deno.test("matmul batched [2,2,3] × unbatched [3,2] broadcasts the batch", () => {
  const a = f32([[[1, 2, 3], [4, 5, 6]], [[7, 8, 9], [10, 11, 12]]]);
  const b = f32([[1, 0], [0, 1], [1, -1]]);
  check(interpret((x, y) => matmul(x, y), a, b), [2, 2, 2], "f32", [
    [[4, -1], [10, -1]],
    [[16, -1], [22, -1]],
  ]);
});

Deno.test("matmul batch dims broadcast: [1,2,2] × [3,2,2] → [3,2,2]", () => {
  const a = f32([[[1, 2], [3, 4]]]);
  const b = f32([[[1, 0], [0, 1]], [[0, 1], [1, 0]], [[2, 0], [0, 2]]]);
  check(interpret((x, y) => matmul(x, y), a, b), [3, 2, 2], "f32", [
    [[1, 2], [3, 4]],
    [[2, 1], [4, 3]],
    [[2, 4], [6, 8]],
  ]);
});

Deno.test("matmul batch dims broadcast across ranks: [2,1,1,2] × [3,2,1] → [2,3,1,1]", () => {
  const a = f32([[[[1, 2]]], [[[-1, 1]]]]);
  const b = f32([[[1], [0]], [[0], [1]], [[1], [1]]]);
  check(interpret((x, y) => matmul(x, y), a, b), [2, 3, 1, 1], "f32", [
    [[[1]], [[2]], [[3]]],
    [[[-1]], [[1]], [[0]]],
  ]);
});

Deno.test("matmul i32 × i32 stays i32; i32 × f32 promotes to f32", () => {
  check(interpret((a, b) => matmul(a, b), i32([[1, 2]]), i32([[3], [4]])), [1, 1], "i32", [[11]]);
  check(interpret((a, b) => matmul(a, b), i32([1, 2]), f32([0.5, 0.25])), [], "f32", 1);
});

Deno.test("matmul rejects a contraction mismatch", () => {
  assert.throws(() => interpret((a, b) => matmul(a, b), f32([1, 2]), f32([1, 2, 3])), /matmul/);
});

// ---------------------------------------------------------------------------------------------
// Shape ops

const M23 = f32([[1, 2, 3], [4, 5, 6]]);

Deno.test("reshape with explicit shape and with an inferred −1", () => {
  check(interpret((x) => reshape(x, [3, 2]), M23), [3, 2], "f32", [[1, 2], [3, 4], [5, 6]]);
  check(interpret((x) => reshape(x, [-1]), M23), [6], "f32", [1, 2, 3, 4, 5, 6]);
  check(interpret((x) => reshape(x, [1, -1, 2]), M23), [1, 3, 2], "f32", [[[1, 2], [3, 4], [
    5,
    6,
  ]]]);
  assert.throws(() => interpret((x) => reshape(x, [4, -1]), M23), /reshape/);
});

Deno.test("transpose: default reverses axes; explicit and negative permutations", () => {
  check(interpret((x) => transpose(x), M23), [3, 2], "f32", [[1, 4], [2, 5], [3, 6]]);
  const t = f32([[[0, 1], [2, 3], [4, 5]]]); // [1,3,2]
  check(interpret((x) => transpose(x, [2, 0, 1]), t), [2, 1, 3], "f32", [[[0, 2, 4]], [[
    1,
    3,
    5,
  ]]]);
  check(interpret((x) => transpose(x, [0, -1, -2]), t), [1, 2, 3], "f32", [[[0, 2, 4], [
    1,
    3,
    5,
  ]]]);
});

Deno.test("broadcastTo adds leading axes and expands size-1 axes", () => {
  check(interpret((x) => broadcastTo(x, [2, 2, 3]), f32([[1], [2]])), [2, 2, 3], "f32", [
    [[1, 1, 1], [2, 2, 2]],
    [[1, 1, 1], [2, 2, 2]],
  ]);
  assert.throws(() => interpret((x) => broadcastTo(x, [3]), f32([1, 2])), /broadcastTo/);
});

Deno.test("expandDims at front, back (−1) and several positions", () => {
  check(interpret((x) => expandDims(x, 0), f32([1, 2])), [1, 2], "f32", [[1, 2]]);
  check(interpret((x) => expandDims(x, -1), f32([1, 2])), [2, 1], "f32", [[1], [2]]);
  check(interpret((x) => expandDims(x, [0, 2]), f32([1, 2])), [1, 2, 1], "f32", [[[1], [2]]]);
});

Deno.test("squeeze all size-1 axes, or a chosen (negative) axis; rejects a non-1 axis", () => {
  const x = f32([[[1], [2]]]); // [1,2,1]
  check(interpret((t) => squeeze(t), x), [2], "f32", [1, 2]);
  check(interpret((t) => squeeze(t, -1), x), [1, 2], "f32", [[1, 2]]);
  assert.throws(() => interpret((t) => squeeze(t, 1), x), /squeeze/);
});

Deno.test("slice with positive, negative and clamped bounds; missing axes taken whole", () => {
  const x = f32([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]);
  check(interpret((t) => slice(t, [1, 1], [3, 3]), x), [2, 2], "f32", [[5, 6], [9, 10]]);
  check(interpret((t) => slice(t, [-2, -3], [-1, -1]), x), [1, 2], "f32", [[5, 6]]);
  check(interpret((t) => slice(t, [-10, 2], [10, 100]), x), [3, 2], "f32", [[2, 3], [6, 7], [
    10,
    11,
  ]]);
  check(interpret((t) => slice(t, [2]), x), [1, 4], "f32", [[8, 9, 10, 11]]);
  check(interpret((t) => slice(t, [0, 3], [null, 1]), x), [3, 0], "f32", []);
});

Deno.test("concat along axis 0, axis 1 and a negative axis; promotes dtypes", () => {
  const a = f32([[1, 2]]);
  const b = f32([[3, 4], [5, 6]]);
  check(interpret((x, y) => concat([x, y], 0), a, b), [3, 2], "f32", [[1, 2], [3, 4], [5, 6]]);
  check(interpret((x, y) => concat([x, y], -1), f32([[1], [2]]), b), [2, 3], "f32", [[1, 3, 4], [
    2,
    5,
    6,
  ]]);
  check(interpret((x, y) => concat([x, y], 1), f32([[1], [2]]), i32([[7], [8]])), [2, 2], "f32", [
    [1, 7],
    [2, 8],
  ]);
});

Deno.test("take along axis 0 with negative and out-of-range (clamped) indices", () => {
  const table = f32([[1, 2], [3, 4], [5, 6]]);
  check(interpret((t, i) => take(t, i), table, i32([2, -1, 0, -3, 7, -9])), [6, 2], "f32", [
    [5, 6],
    [5, 6],
    [1, 2],
    [1, 2],
    [5, 6],
    [1, 2],
  ]);
  check(interpret((t) => take(t, [1]), table), [1, 2], "f32", [[3, 4]]);
});

Deno.test("take along axis 1 and −1", () => {
  const table = f32([[1, 2, 3], [4, 5, 6]]);
  check(interpret((t, i) => take(t, i, 1), table, i32([2, 0])), [2, 2], "f32", [[3, 1], [6, 4]]);
  check(interpret((t, i) => take(t, i, -1), table, i32([-1])), [2, 1], "f32", [[3], [6]]);
});

Deno.test("take with a 2-D index array puts the index shape in place of the axis", () => {
  const table = f32([[1, 2, 3], [4, 5, 6]]);
  check(interpret((t, i) => take(t, i), table, i32([[1, 0], [1, 1]])), [2, 2, 3], "f32", [
    [[4, 5, 6], [1, 2, 3]],
    [[4, 5, 6], [4, 5, 6]],
  ]);
  check(interpret((t, i) => take(t, i, 1), table, i32([[0, 2]])), [2, 1, 2], "f32", [
    [[1, 3]],
    [[4, 6]],
  ]);
});

Deno.test("oneHot: f32 by default, 2-D indices, out-of-range and negative give zero rows", () => {
  check(interpret((i) => oneHot(i, 3), i32([0, 2, 3, -1])), [4, 3], "f32", [
    [1, 0, 0],
    [0, 0, 1],
    [0, 0, 0],
    [0, 0, 0],
  ]);
  check(interpret((i) => oneHot(i, 2, { dtype: "i32" }), i32([[1], [0]])), [2, 1, 2], "i32", [
    [[0, 1]],
    [[1, 0]],
  ]);
});

Deno.test("arange: stop only, start/stop/step, negative step, fractional step (f32), empty", () => {
  check(interpret(() => arange(4)), [4], "i32", [0, 1, 2, 3]);
  check(interpret(() => arange(1, 8, 3)), [3], "i32", [1, 4, 7]);
  check(interpret(() => arange(5, 0, -2)), [3], "i32", [5, 3, 1]);
  check(interpret(() => arange(0, 1, 0.25)), [4], "f32", [0, 0.25, 0.5, 0.75]);
  check(interpret(() => arange(3, 3)), [0], "i32", []);
  check(interpret(() => arange(3, undefined, 1, "f32")), [3], "f32", [0, 1, 2]);
});

Deno.test("full / zeros / ones with default f32 and explicit dtypes", () => {
  check(interpret(() => full([2, 2], 2.5)), [2, 2], "f32", [[2.5, 2.5], [2.5, 2.5]]);
  check(interpret(() => full([3], 7, "i32")), [3], "i32", [7, 7, 7]);
  check(interpret(() => zeros([1, 2])), [1, 2], "f32", [[0, 0]]);
  check(interpret(() => ones([2], "i32")), [2], "i32", [1, 1]);
  check(interpret(() => full([], -1)), [], "f32", -1);
});

Deno.test("stack (extra) along a new axis 0 and −1", () => {
  const a = f32([1, 2]);
  const b = f32([3, 4]);
  check(interpret((x, y) => stack([x, y]), a, b), [2, 2], "f32", [[1, 2], [3, 4]]);
  check(interpret((x, y) => stack([x, y], -1), a, b), [2, 2], "f32", [[1, 3], [2, 4]]);
});

Deno.test("pad (extra) with zeros and with a constant on leading axes only", () => {
  check(interpret((x) => pad(x, [[1, 0], [0, 2]]), f32([[1, 2]])), [2, 4], "f32", [
    [0, 0, 0, 0],
    [1, 2, 0, 0],
  ]);
  check(interpret((x) => pad(x, [[1, 1]], -1), f32([[1, 2]])), [3, 2], "f32", [
    [-1, -1],
    [1, 2],
    [-1, -1],
  ]);
});

Deno.test("scatterAdd (extra): duplicate indices accumulate; negative indices count from end", () => {
  const r = interpret(
    (o, i, u) => scatterAdd(o, i, u),
    f32([[0, 0], [1, 1], [2, 2]]),
    i32([0, 2, 0, -1]),
    f32([[1, 2], [10, 20], [100, 200], [1000, 2000]]),
  );
  check(r, [3, 2], "f32", [[101, 202], [1, 1], [1012, 2022]]);
  const r1 = interpret(
    (o, i, u) => scatterAdd(o, i, u, 1),
    zeros_([2, 3]),
    i32([1, 1]),
    f32([[1, 2], [3, 4]]),
  );
  check(r1, [2, 3], "f32", [[0, 3, 0], [0, 7, 0]]);
});

function zeros_(shape: number[]): HostArray {
  return f32(new Array(shape.reduce((a, b) => a * b, 1)).fill(0), shape);
}

// ---------------------------------------------------------------------------------------------
// NN ops

Deno.test("softmax over the last axis; large logits are stable", () => {
  check(interpret((x) => softmax(x), f32([[1, 2, 3], [1000, 1000, 1001]])), [2, 3], "f32", [
    [0.09003057, 0.24472847, 0.66524096],
    [0.21194156, 0.21194156, 0.57611688],
  ]);
});

Deno.test("softmax over axis 0; −Inf logits get probability 0", () => {
  check(interpret((x) => softmax(x, 0), f32([[1, 2], [3, 5]])), [2, 2], "f32", [
    [0.11920292, 0.047425873],
    [0.88079708, 0.95257413],
  ]);
  check(interpret((x) => softmax(x), f32([[-Infinity, 0, 0]])), [1, 3], "f32", [[0, 0.5, 0.5]]);
});

Deno.test("logSoftmax: stable for large logits, −Inf logit gives −Inf", () => {
  check(interpret((x) => logSoftmax(x), f32([[1, 2, 3], [1000, 1000, 1001]])), [2, 3], "f32", [
    [-2.407606, -1.407606, -0.40760596],
    [-1.5514447, -1.5514447, -0.55144471],
    // atol 1e-4: x − logsumexp(x) rounds logsumexp ≈ 1001.55 to f32, whose ulp there is 6.1e-5.
  ], { rtol: 1e-5, atol: 1e-4 });
  check(interpret((x) => logSoftmax(x, 0), f32([-Infinity, 0])), [2], "f32", [-Infinity, 0]);
});

const LOGITS = f32([[2, 1, 0], [0, 0, 0], [1, 3, -1]]);

Deno.test("crossEntropy with i32 index labels: mean, sum and per-position", () => {
  const labels = i32([0, 2, 1]);
  check(interpret((z, y) => crossEntropy(z, y), LOGITS, labels), [], "f32", 0.54971663);
  check(
    interpret((z, y) => crossEntropy(z, y, { reduction: "sum" }), LOGITS, labels),
    [],
    "f32",
    1.6491499,
  );
  check(
    interpret((z, y) => crossEntropy(z, y, { reduction: "none" }), LOGITS, labels),
    [3],
    "f32",
    [0.40760596, 1.0986123, 0.14293163],
  );
});

Deno.test("crossEntropy with a mask averages over the unmasked positions only", () => {
  const labels = i32([0, 2, 1]);
  const r = interpret(
    (z, y, m) => crossEntropy(z, y, { mask: m }),
    LOGITS,
    labels,
    array([true, false, true]),
  );
  check(r, [], "f32", 0.2752688);
  // An all-zero mask gives 0 (the denominator is max(Σ mask, 1)), not NaN.
  const r0 = interpret(
    (z, y, m) => crossEntropy(z, y, { mask: m }),
    LOGITS,
    labels,
    f32([0, 0, 0]),
  );
  check(r0, [], "f32", 0);
});

Deno.test("crossEntropy with f32 probability labels", () => {
  const probs = f32([[0.5, 0.5, 0], [0.2, 0.3, 0.5], [0, 0, 1]]);
  check(interpret((z, p) => crossEntropy(z, p), LOGITS, probs), [], "f32", 2.0497166);
  check(
    interpret((z, p) => crossEntropy(z, p, { reduction: "none" }), LOGITS, probs),
    [3],
    "f32",
    [0.90760596, 1.0986123, 4.1429316],
  );
});

Deno.test("crossEntropy rejects labels of the wrong dtype/shape", () => {
  assert.throws(() => interpret((z, y) => crossEntropy(z, y), LOGITS, f32([0, 1, 2])), /labels/);
});

const LN_X = f32([[1, 2, 3, 4], [-1, 0, 0, 1]]);

Deno.test("layerNorm over the last axis without and with gamma/beta", () => {
  check(interpret((x) => layerNorm(x), LN_X), [2, 4], "f32", [
    [-1.3416354, -0.44721181, 0.44721181, 1.3416354],
    [-1.4141994, 0, 0, 1.4141994],
  ], { rtol: 1e-5 });
  check(
    interpret((x, g, b) => layerNorm(x, g, b), LN_X, f32([1, 2, 0.5, -1]), f32([0, 1, 0, 0.5])),
    [2, 4],
    "f32",
    [[-1.3416354, 0.10557639, 0.2236059, -0.84163542], [-1.4141994, 1, 0, -0.91419942]],
    { rtol: 1e-5 },
  );
});

Deno.test("layerNorm of a constant row is 0 (eps keeps it finite)", () => {
  check(interpret((x) => layerNorm(x), f32([[3, 3, 3]])), [1, 3], "f32", [[0, 0, 0]]);
});

Deno.test("rmsNorm over the last axis with gamma, and of a zero row", () => {
  check(interpret((x, g) => rmsNorm(x, g), LN_X, f32([1, 2, 0.5, -1])), [2, 4], "f32", [
    [0.36514835, 1.4605934, 0.54772252, -1.4605934],
    [-1.4142122, 0, 0, -1.4142122],
  ], { rtol: 1e-5 });
  check(interpret((x) => rmsNorm(x), f32([[0, 0]])), [1, 2], "f32", [[0, 0]]);
});

// ---------------------------------------------------------------------------------------------
// Extras exported from mod.ts

Deno.test("erf (extra) of [-2, -0.5, 0, 1, 3] and ±Inf", () => {
  check(interpret((x) => erf(x), X), [5], "f32", [
    -0.99532227,
    -0.52049988,
    0,
    0.84270079,
    0.99997791,
  ]);
  check(interpret((x) => erf(x), f32([-Infinity, Infinity])), [2], "f32", [-1, 1]);
});

Deno.test("sin / cos (extra) of [-2, -0.5, 0, 1, 3]", () => {
  check(interpret((x) => sin(x), X), [5], "f32", [
    -0.90929743,
    -0.47942554,
    0,
    0.84147098,
    0.14112001,
  ]);
  check(interpret((x) => cos(x), X), [5], "f32", [
    -0.41614684,
    0.87758256,
    1,
    0.54030231,
    -0.9899925,
  ]);
});

Deno.test("reciprocal (extra): 1/x, ±0 → ±Inf, i32 gives f32", () => {
  check(interpret((x) => reciprocal(x), f32([4, -0.5, 0, -0])), [4], "f32", [
    0.25,
    -2,
    Infinity,
    -Infinity,
  ]);
  check(interpret((x) => reciprocal(x), i32([2])), [1], "f32", [0.5]);
});

Deno.test("sign (extra) of f32 and i32 keeps the dtype", () => {
  check(interpret((x) => sign(x), f32([-2.5, 0, 3, -Infinity])), [4], "f32", [-1, 0, 1, -1]);
  check(interpret((x) => sign(x), i32([-2, 0, 3])), [3], "i32", [-1, 0, 1]);
});

Deno.test("clip (extra) clamps to [lo, hi] with broadcast bounds", () => {
  check(interpret((x) => clip(x, -1, 2), f32([-3, -1, 0.5, 2, 9])), [5], "f32", [
    -1,
    -1,
    0.5,
    2,
    2,
  ]);
  check(
    interpret((x, lo) => clip(x, lo, 5), f32([[0, 0], [9, 9]]), f32([1, -1])),
    [2, 2],
    "f32",
    [[1, 0], [5, 5]],
  );
});

Deno.test("lessEqual / greaterEqual / notEqual (extra), NaN compares false except ≠", () => {
  const a = f32([1, 2, 3, NaN]);
  const b = f32([2, 2, 2, NaN]);
  check(interpret((x, y) => lessEqual(x, y), a, b), [4], "bool", [true, true, false, false]);
  check(interpret((x, y) => greaterEqual(x, y), a, b), [4], "bool", [false, true, true, false]);
  check(interpret((x, y) => notEqual(x, y), a, b), [4], "bool", [true, false, true, true]);
});

Deno.test("logicalAnd / logicalOr / logicalNot (extra) on bool and numeric operands", () => {
  const p = array([true, true, false, false]);
  const q = array([true, false, true, false]);
  check(interpret((x, y) => logicalAnd(x, y), p, q), [4], "bool", [true, false, false, false]);
  check(interpret((x, y) => logicalOr(x, y), p, q), [4], "bool", [true, true, true, false]);
  check(interpret((x) => logicalNot(x), p), [4], "bool", [false, false, true, true]);
  check(interpret((x) => logicalNot(x), f32([0, 2, -1])), [3], "bool", [true, false, false]);
  check(interpret((x) => logicalAnd(x, true), i32([[0], [5]])), [2, 1], "bool", [[false], [true]]);
});

Deno.test("isFinite (extra): false for ±Inf and NaN", () => {
  check(interpret((x) => isFinite(x), f32([0, -3e38, Infinity, -Infinity, NaN])), [5], "bool", [
    true,
    true,
    false,
    false,
    false,
  ]);
});

Deno.test("stopGradient (extra) is the identity forward and blocks the gradient", () => {
  check(interpret((x) => stopGradient(x), f32([1, -2])), [2], "f32", [1, -2]);
  // d/dx Σ (x·sg(x)) = sg(x) (the stopped factor is a constant).
  const g = grad((x) => sum(mul(x, stopGradient(x))))(f32([3, -2]));
  check(g, [2], "f32", [3, -2]);
});

// ---------------------------------------------------------------------------------------------
// Gradient conventions documented by the ops

Deno.test("grad conventions: relu'(0) = 0, |x|'(0) = 0", () => {
  check(grad((x) => sum(relu(x)))(f32([-1, 0, 2])), [3], "f32", [0, 0, 1]);
  check(grad((x) => sum(abs(x)))(f32([-1, 0, 2])), [3], "f32", [-1, 0, 1]);
});

Deno.test("grad conventions: maximum/minimum ties split ½, max reduction ties share equally", () => {
  check(grad((x) => sum(maximum(x, 1)))(f32([0, 1, 2])), [3], "f32", [0, 0.5, 1]);
  check(grad((x) => sum(minimum(x, 1)))(f32([0, 1, 2])), [3], "f32", [1, 0.5, 0]);
  check(grad((x) => max(x))(f32([3, 1, 3, 3])), [4], "f32", [1 / 3, 0, 1 / 3, 1 / 3]);
});

Deno.test("grad of logsumexp is softmax; grad of mean is 1/n", () => {
  check(grad((x) => logsumexp(x))(f32([1, 2, 3])), [3], "f32", [
    0.09003057,
    0.24472847,
    0.66524096,
  ]);
  check(grad((x) => mean(x))(f32([[1, 2], [3, 4]])), [2, 2], "f32", [[0.25, 0.25], [0.25, 0.25]]);
});

Deno.test("grad of pow w.r.t. base and exponent; d/dy at x = 0 is 0", () => {
  const [gx, gy] = grad((x, y) => sum(pow(x, y)), { argnums: [0, 1] })(f32([2, 0]), f32([3, 2]));
  check(gx, [2], "f32", [12, 0]);
  check(gy, [2], "f32", [5.5451774, 0]); // 8·ln 2, and the x = 0 convention
});

Deno.test("grad of take scatters back, accumulating duplicate indices", () => {
  const g = grad((t) => sum(take(t, [0, 2, 0, -1])))(f32([[1, 1], [1, 1], [1, 1]]));
  check(g, [3, 2], "f32", [[2, 2], [0, 0], [2, 2]]);
});

Deno.test("grad of matmul with 1-D promotion: ∂(v·M·w) = (M·w, vᵀ·M)", () => {
  const m = f32([[1, 2], [3, 4]]);
  const [gv, gw] = grad((v, w) => matmul(matmul(v, m), w), { argnums: [0, 1] })(
    f32([1, -1]),
    f32([2, 1]),
  );
  check(gv, [2], "f32", [4, 10]);
  check(gw, [2], "f32", [-2, -2]);
});
