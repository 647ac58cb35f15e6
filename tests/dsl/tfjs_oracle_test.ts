/**
 * An independent oracle: TF.js's CPU backend, run in-process, against our CPU reference
 * (`interpret` / `grad`) on random inputs (fast-check, the suite's fixed seed), for forward values
 * and for gradients of a weighted-sum loss Σ op(x…)·W (tf.grads vs our grad).
 *
 * Tolerances: both sides compute in f32 but in different orders and with different kernels (TF
 * sums in its own order, uses its own exp/tanh/erf approximations — erf has ~1.5e-7 absolute
 * error — and its own composite gradients), so values agree to a few f32 ulps times the
 * accumulation length, not bit for bit: rtol 1e-4 covers ~1e3 ulps of relative drift and atol
 * 1e-5 covers results that cancel to near zero (sums of O(1) terms, gradients of weighted sums).
 *
 * Known TF.js differences that the inputs avoid (documented where they matter):
 * - the gradient of `maximum`/`minimum` with broadcasting is wrong in TF.js 4.22 (it returns the
 *   un-reduced gradient and fails its own shape check), so those gradients use equal shapes, or
 *   broadcast explicitly with tf.broadcastTo on the TF side;
 * - TF gives ties (maximum/minimum/max) the whole gradient and |x|'(0) = −1, where we split ties
 *   and use 0: tie-sensitive inputs are drawn distinct and away from 0;
 * - tf.matMul's batch broadcasting is wrong (gradient, and values across ranks): same remedy;
 * - tf.gather rejects out-of-range indices (we clamp) and tf.softmax works on the last axis only.
 */

import * as tf from "@tensorflow/tfjs";
import {
  abs,
  add,
  concat,
  cos,
  crossEntropy,
  div,
  erf,
  exp,
  grad,
  type HostArray,
  interpret,
  layerNorm,
  log,
  logSoftmax,
  logsumexp,
  matmul,
  max,
  maximum,
  mean,
  minimum,
  mul,
  neg,
  oneHot,
  pow,
  reciprocal,
  sigmoid,
  sin,
  slice,
  softmax,
  sqrt,
  square,
  sub,
  sum,
  take,
  tanh,
  type Tensor,
  transpose,
} from "../../mod.ts";
import {
  arbArray,
  arbBroadcastPair,
  arbIntArray,
  arbShape,
  assertClose,
} from "../helpers/arrays.ts";
import { checkProperty, fc } from "../helpers/property.ts";

tf.enableProdMode(); // silences the "running TensorFlow.js in Node.js" console warning
await tf.setBackend("cpu");
await tf.ready();

const TOL = { rtol: 1e-4, atol: 1e-5 };
/** Pure data movement (transpose, concat, slice, gather) must agree bit for bit. */
const EXACT = { rtol: 0, atol: 0 };
const RUNS = 15;

// ---------------------------------------------------------------------------------------------
// Conversions and helpers

function toTf(x: HostArray): tf.Tensor {
  return tf.tensor(
    Array.from(x.data),
    x.shape,
    x.dtype === "f32" ? "float32" : x.dtype === "i32" ? "int32" : "bool",
  );
}

function fromTf(t: tf.Tensor): HostArray {
  const data = t.dataSync();
  return t.dtype === "float32"
    ? { shape: [...t.shape], dtype: "f32", data: Float32Array.from(data as Float32Array) }
    : { shape: [...t.shape], dtype: "i32", data: Int32Array.from(data as Int32Array) };
}

/** Runs `fn` in a TF.js scope: every tf.Tensor made inside is disposed afterwards. */
function tfScope<T>(fn: () => T): T {
  tf.engine().startScope();
  try {
    return fn();
  } finally {
    tf.engine().endScope();
  }
}

/** Our `grad` over all of `f`'s arguments, called on host arrays. */
function ourGrads(f: (...xs: Tensor[]) => Tensor, inputs: HostArray[]): HostArray[] {
  const argnums = inputs.map((_, i) => i);
  const g = grad(f, { argnums }) as unknown as (...xs: HostArray[]) => HostArray[];
  return g(...inputs);
}

function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Deterministic weights in [−1, 1] of `shape` from an integer seed (an LCG). */
function weights(shape: readonly number[], seed: number): HostArray {
  const data = new Float32Array(sizeOf(shape));
  let s = (seed >>> 0) || 1;
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = (s / 2 ** 32) * 2 - 1;
  }
  return { shape: [...shape], dtype: "f32", data };
}

/** f32 values of `shape` in ±[lo, hi] (never in (−lo, lo): avoids 0 and ties at 0). */
function arbAwayFromZero(shape: readonly number[], lo: number, hi: number) {
  const n = sizeOf(shape);
  return fc.array(fc.tuple(fc.double({ min: lo, max: hi, noNaN: true }), fc.boolean()), {
    minLength: n,
    maxLength: n,
  }).map((vs): HostArray => ({
    shape: [...shape],
    dtype: "f32",
    data: Float32Array.from(vs.map(([v, s]) => (s ? -v : v))),
  }));
}

/** Pairwise distinct f32 values of `shape` in [min, max] (no ties for max and maximum). */
function arbDistinct(shape: readonly number[], min = -2, max = 2) {
  const n = sizeOf(shape);
  return fc.uniqueArray(
    fc.float({ min: Math.fround(min), max: Math.fround(max), noNaN: true }),
    { minLength: n, maxLength: n, comparator: "SameValueZero" },
  ).map((vs): HostArray => ({ shape: [...shape], dtype: "f32", data: Float32Array.from(vs) }));
}

/** Compares forward values of `ours` (DSL) and `theirs` (TF.js) on the same host inputs. */
function compareForward(
  label: string,
  ours: (...xs: Tensor[]) => Tensor,
  theirs: (...xs: tf.Tensor[]) => tf.Tensor,
  inputs: HostArray[],
  tol = TOL,
): void {
  const actual = interpret(ours, ...inputs) as HostArray;
  const expected = tfScope(() => fromTf(theirs(...inputs.map(toTf))));
  assertClose(actual, expected, { ...tol, label });
}

/**
 * Compares gradients of L = Σ op(x…)·W with respect to every input, W a fixed pseudo-random
 * weight of the output's shape (so each output element gets a distinct cotangent).
 */
function compareGrads(
  label: string,
  ours: (...xs: Tensor[]) => Tensor,
  theirs: (...xs: tf.Tensor[]) => tf.Tensor,
  inputs: HostArray[],
  seed: number,
  tol = TOL,
): void {
  const outShape = (interpret(ours, ...inputs) as HostArray).shape;
  const w = weights(outShape, seed);
  const ours_ = ourGrads((...xs) => sum(mul(ours(...xs), w)), inputs);
  const tfGrads = tfScope(() => {
    const tw = toTf(w);
    const f = (...xs: tf.Tensor[]) => tf.sum(tf.mul(theirs(...xs), tw));
    return tf.grads(f)(inputs.map(toTf)).map(fromTf);
  });
  if (ours_.length !== tfGrads.length) throw new Error(`${label}: gradient counts differ`);
  ours_.forEach((g, i) => assertClose(g, tfGrads[i], { ...tol, label: `${label} ∂x${i}` }));
}

// ---------------------------------------------------------------------------------------------
// Elementwise unary

interface UnaryCase {
  name: string;
  ours: (x: Tensor) => Tensor;
  theirs: (x: tf.Tensor) => tf.Tensor;
  /** Input values: [min, max], or "awayFromZero" for ops whose gradient kinks at 0. */
  domain: [number, number] | "awayFromZero";
}

const UNARY: UnaryCase[] = [
  { name: "exp", ours: exp, theirs: tf.exp, domain: [-3, 3] },
  { name: "log", ours: log, theirs: tf.log, domain: [0.1, 5] },
  { name: "sqrt", ours: sqrt, theirs: tf.sqrt, domain: [0.1, 5] },
  { name: "tanh", ours: tanh, theirs: tf.tanh, domain: [-3, 3] },
  { name: "sigmoid", ours: sigmoid, theirs: tf.sigmoid, domain: [-5, 5] },
  { name: "abs", ours: abs, theirs: tf.abs, domain: "awayFromZero" },
  { name: "neg", ours: neg, theirs: tf.neg, domain: [-3, 3] },
  { name: "square", ours: square, theirs: tf.square, domain: [-3, 3] },
  { name: "reciprocal", ours: reciprocal, theirs: tf.reciprocal, domain: [0.2, 5] },
  { name: "sin", ours: sin, theirs: tf.sin, domain: [-4, 4] },
  { name: "cos", ours: cos, theirs: tf.cos, domain: [-4, 4] },
  { name: "erf", ours: erf, theirs: tf.erf, domain: [-3, 3] },
];

for (const op of UNARY) {
  Deno.test(`${op.name}: forward values and gradient match TF.js on random shapes`, () => {
    const arb = arbShape({ maxRank: 3 }).chain((shape) =>
      fc.tuple(
        op.domain === "awayFromZero"
          ? arbAwayFromZero(shape, 0.05, 3)
          : arbArray(shape, { min: op.domain[0], max: op.domain[1] }),
        fc.integer(),
      )
    );
    checkProperty(
      fc.property(arb, ([x, seed]) => {
        compareForward(op.name, op.ours, op.theirs, [x]);
        compareGrads(op.name, op.ours, op.theirs, [x], seed);
      }),
      { numRuns: RUNS },
    );
  });
}

// ---------------------------------------------------------------------------------------------
// Elementwise binary with broadcasting

interface BinaryCase {
  name: string;
  ours: (a: Tensor, b: Tensor) => Tensor;
  theirs: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor;
  arbA: (shape: number[]) => fc.Arbitrary<HostArray>;
  arbB: (shape: number[]) => fc.Arbitrary<HostArray>;
}

const BINARY: BinaryCase[] = [
  { name: "add", ours: add, theirs: tf.add, arbA: (s) => arbArray(s), arbB: (s) => arbArray(s) },
  { name: "sub", ours: sub, theirs: tf.sub, arbA: (s) => arbArray(s), arbB: (s) => arbArray(s) },
  { name: "mul", ours: mul, theirs: tf.mul, arbA: (s) => arbArray(s), arbB: (s) => arbArray(s) },
  {
    name: "div",
    ours: div,
    theirs: tf.div,
    arbA: (s) => arbArray(s),
    arbB: (s) => arbAwayFromZero(s, 0.5, 3),
  },
  {
    // Positive bases: the exponent's gradient log(a)·aᵇ is real.
    name: "pow",
    ours: pow,
    theirs: tf.pow,
    arbA: (s) => arbArray(s, { min: 0.3, max: 2 }),
    arbB: (s) => arbArray(s, { min: -2, max: 2 }),
  },
];

for (const op of BINARY) {
  Deno.test(`${op.name}: broadcast forward values and gradients match TF.js`, () => {
    const arb = arbBroadcastPair(3).chain(([sa, sb]) =>
      fc.tuple(op.arbA(sa), op.arbB(sb), fc.integer())
    );
    checkProperty(
      fc.property(arb, ([a, b, seed]) => {
        compareForward(op.name, op.ours, op.theirs, [a, b]);
        compareGrads(op.name, op.ours, op.theirs, [a, b], seed);
      }),
      { numRuns: RUNS },
    );
  });
}

const MINMAX = [
  { name: "maximum", ours: maximum, theirs: tf.maximum },
  { name: "minimum", ours: minimum, theirs: tf.minimum },
] as const;

for (const op of MINMAX) {
  Deno.test(`${op.name}: broadcast forward values match TF.js`, () => {
    const arb = arbBroadcastPair(3).chain(([sa, sb]) => fc.tuple(arbArray(sa), arbArray(sb)));
    checkProperty(
      fc.property(arb, ([a, b]) => compareForward(op.name, op.ours, op.theirs, [a, b])),
      { numRuns: RUNS },
    );
  });

  // Equal shapes, as the TF.js op gets them (its broadcast gradient is broken), and no ties
  // between a and b (TF gives a tie's whole gradient to one side, we split it).
  Deno.test(`${op.name}: gradient matches TF.js for equal shapes without ties`, () => {
    const arb = arbShape({ minRank: 1, maxRank: 3 }).chain((s) =>
      fc.tuple(arbDistinct([2, ...s]), fc.integer())
    );
    checkProperty(
      fc.property(arb, ([ab, seed]) => {
        const [a, b] = splitDistinct(ab, ab.shape.slice(1), ab.shape.slice(1));
        compareGrads(op.name, op.ours, op.theirs, [a, b], seed);
      }),
      { numRuns: RUNS },
    );
  });

  // Broadcast shapes: TF.js broadcasts explicitly with tf.broadcastTo (whose gradient reduces
  // correctly) before its op, so our implicit broadcasting's gradient is still checked.
  Deno.test(`${op.name}: broadcast gradient matches TF.js with explicit tf.broadcastTo`, () => {
    const arb = arbBroadcastPair(3).chain(([sa, sb]) =>
      fc.tuple(arbDistinct([sizeOf(sa) + sizeOf(sb)]), fc.constant([sa, sb]), fc.integer())
    );
    checkProperty(
      fc.property(arb, ([ab, [sa, sb], seed]) => {
        const [a, b] = splitDistinct(ab, sa, sb);
        const shape = broadcastShape(sa, sb);
        const theirs = (x: tf.Tensor, y: tf.Tensor) =>
          op.theirs(tf.broadcastTo(x, shape), tf.broadcastTo(y, shape));
        compareGrads(`${op.name} ${sa}|${sb}`, op.ours, theirs, [a, b], seed);
      }),
      { numRuns: RUNS },
    );
  });
}

/** Splits distinct values into two arrays of the given shapes. */
function splitDistinct(ab: HostArray, sa: number[], sb: number[]): [HostArray, HostArray] {
  const n = sizeOf(sa);
  return [
    { shape: sa, dtype: "f32", data: ab.data.slice(0, n) },
    { shape: sb, dtype: "f32", data: ab.data.slice(n, n + sizeOf(sb)) },
  ];
}

/** numpy's broadcast shape of two compatible shapes. */
function broadcastShape(a: readonly number[], b: readonly number[]): number[] {
  const r = Math.max(a.length, b.length);
  return Array.from({ length: r }, (_, i) => {
    const da = a[a.length - r + i] ?? 1;
    const db = b[b.length - r + i] ?? 1;
    return da === 1 ? db : da;
  });
}

// ---------------------------------------------------------------------------------------------
// Reductions over random axes

/** A rank ≥ 1 shape, a non-empty subset of its axes (some written negative), and keepDims. */
const arbReduction = arbShape({ minRank: 1, maxRank: 4, maxDim: 3 }).chain((shape) =>
  fc.tuple(
    fc.constant(shape),
    fc.subarray(shape.map((_, i) => i), { minLength: 1 }),
    fc.array(fc.boolean(), { minLength: shape.length, maxLength: shape.length }),
    fc.boolean(),
    fc.integer(),
  )
);

const REDUCTIONS = [
  { name: "sum", ours: sum, theirs: tf.sum },
  { name: "mean", ours: mean, theirs: tf.mean },
  { name: "max", ours: max, theirs: tf.max },
  { name: "logsumexp", ours: logsumexp, theirs: tf.logSumExp },
] as const;

for (const op of REDUCTIONS) {
  Deno.test(`${op.name}: values and gradient over random (negative) axes, keepDims, vs TF.js`, () => {
    // Distinct values: TF gives every tied maximum the whole gradient, we share it.
    const arb = arbReduction.chain(([shape, axes, negative, keepDims, seed]) =>
      fc.tuple(arbDistinct(shape, -3, 3), fc.constant({ axes, negative, keepDims, seed }))
    );
    checkProperty(
      fc.property(arb, ([x, { axes, negative, keepDims, seed }]) => {
        const ourAxes = axes.map((a) => (negative[a] ? a - x.shape.length : a));
        const label = `${op.name}(axes ${JSON.stringify(ourAxes)}, keepDims ${keepDims})`;
        const ours = (t: Tensor) => op.ours(t, ourAxes, { keepDims });
        const theirs = (t: tf.Tensor) => op.theirs(t, axes, keepDims);
        compareForward(label, ours, theirs, [x]);
        compareGrads(label, ours, theirs, [x], seed);
      }),
      { numRuns: RUNS },
    );
  });
}

// ---------------------------------------------------------------------------------------------
// matmul

Deno.test("matmul 2-D: values and gradients of both operands match TF.js", () => {
  const arb = fc.tuple(
    fc.integer({ min: 1, max: 5 }),
    fc.integer({ min: 1, max: 5 }),
    fc.integer({ min: 1, max: 5 }),
  ).chain(([m, k, n]) => fc.tuple(arbArray([m, k]), arbArray([k, n]), fc.integer()));
  checkProperty(
    fc.property(arb, ([a, b, seed]) => {
      compareForward("matmul", matmul, (x, y) => tf.matMul(x, y), [a, b]);
      compareGrads("matmul", matmul, (x, y) => tf.matMul(x, y), [a, b], seed);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("matmul batched [B,M,K]×[B,K,N]: values and gradients match TF.js", () => {
  const arb = fc.tuple(
    fc.integer({ min: 1, max: 3 }),
    fc.integer({ min: 1, max: 4 }),
    fc.integer({ min: 1, max: 4 }),
    fc.integer({ min: 1, max: 4 }),
  ).chain(([batch, m, k, n]) =>
    fc.tuple(arbArray([batch, m, k]), arbArray([batch, k, n]), fc.integer())
  );
  checkProperty(
    fc.property(arb, ([a, b, seed]) => {
      compareForward("batched matmul", matmul, (x, y) => tf.matMul(x, y), [a, b]);
      compareGrads("batched matmul", matmul, (x, y) => tf.matMul(x, y), [a, b], seed);
    }),
    { numRuns: RUNS },
  );
});

// TF.js 4.22 gets batch broadcasting in matMul wrong: the gradient is un-reduced (it fails its own
// shape check) and [2,1,1,2]×[2,2,2] even computes 4 values for a [2,2,1,2] result. So the TF side
// broadcasts the batch explicitly with tf.broadcastTo (whose gradient reduces) before tf.matMul.
Deno.test("matmul with broadcast batch dims ([1,M,K]×[B,K,N], [B,M,K]×[K,N], [B,1,M,K]×[C,K,N]) vs TF.js", () => {
  const arb = fc.tuple(
    fc.integer({ min: 1, max: 3 }),
    fc.integer({ min: 1, max: 3 }),
    fc.integer({ min: 1, max: 4 }),
    fc.integer({ min: 1, max: 4 }),
    fc.integer({ min: 1, max: 4 }),
    fc.constantFrom("leftOne", "rightUnbatched", "outer"),
  ).map(([b, c, m, k, n, mode]) =>
    mode === "leftOne"
      ? [[1, m, k], [b, k, n]]
      : mode === "rightUnbatched"
      ? [[b, m, k], [k, n]]
      : [[b, 1, m, k], [c, k, n]]
  ).chain(([sa, sb]) => fc.tuple(arbArray(sa), arbArray(sb), fc.integer()));
  checkProperty(
    fc.property(arb, ([a, b, seed]) => {
      const batch = broadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
      const theirs = (x: tf.Tensor, y: tf.Tensor) =>
        tf.matMul(
          tf.broadcastTo(x, [...batch, ...a.shape.slice(-2)]),
          tf.broadcastTo(y, [...batch, ...b.shape.slice(-2)]),
        );
      const label = `matmul ${a.shape}×${b.shape}`;
      compareForward(label, matmul, theirs, [a, b]);
      compareGrads(label, matmul, theirs, [a, b], seed);
    }),
    { numRuns: RUNS },
  );
});

// ---------------------------------------------------------------------------------------------
// NN ops

const arbLogits = arbShape({ minRank: 1, maxRank: 3 }).chain((shape) =>
  fc.tuple(arbArray(shape, { min: -5, max: 5 }), fc.integer())
);

Deno.test("softmax over the last axis: values and gradient match TF.js", () => {
  checkProperty(
    fc.property(arbLogits, ([x, seed]) => {
      compareForward("softmax", (t) => softmax(t), (t) => tf.softmax(t), [x]);
      compareGrads("softmax", (t) => softmax(t), (t) => tf.softmax(t), [x], seed);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("logSoftmax over the last axis: values and gradient match TF.js", () => {
  checkProperty(
    fc.property(arbLogits, ([x, seed]) => {
      compareForward("logSoftmax", (t) => logSoftmax(t), (t) => tf.logSoftmax(t), [x]);
      compareGrads("logSoftmax", (t) => logSoftmax(t), (t) => tf.logSoftmax(t), [x], seed);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("crossEntropy with index labels matches TF.js −mean(Σ oneHot·logSoftmax), and its grad", () => {
  const arb = fc.tuple(
    fc.integer({ min: 1, max: 4 }),
    fc.integer({ min: 2, max: 5 }),
  ).chain(([n, c]) =>
    fc.tuple(arbArray([n, c], { min: -4, max: 4 }), arbIntArray([n], 0, c - 1), fc.constant(c))
  );
  checkProperty(
    fc.property(arb, ([z, labels, c]) => {
      const ours = (t: Tensor) => crossEntropy(t, labels);
      const theirs = (t: tf.Tensor) =>
        tf.neg(tf.mean(tf.sum(tf.mul(tf.oneHot(toTf(labels), c), tf.logSoftmax(t)), -1)));
      compareForward("crossEntropy", ours, theirs, [z]);
      const [ourGrad] = ourGrads(ours, [z]);
      const tfGrad = tfScope(() => fromTf(tf.grad(theirs)(toTf(z))));
      assertClose(ourGrad, tfGrad, { ...TOL, label: "crossEntropy grad" });
    }),
    { numRuns: RUNS },
  );
});

Deno.test("layerNorm matches a TF.js composite (mean, variance, rsqrt) in values and gradients", () => {
  const eps = 1e-5;
  const arb = arbShape({ minRank: 1, maxRank: 2, maxDim: 3 }).chain((lead) =>
    fc.integer({ min: 2, max: 6 }).chain((d) =>
      fc.tuple(
        arbArray([...lead, d], { min: -3, max: 3 }),
        arbArray([d]),
        arbArray([d]),
        fc.integer(),
      )
    )
  );
  const theirs = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
    const mu = tf.mean(x, -1, true);
    const centered = tf.sub(x, mu);
    const variance = tf.mean(tf.square(centered), -1, true);
    return tf.add(tf.mul(tf.mul(centered, tf.rsqrt(tf.add(variance, eps))), g), b);
  };
  const ours = (x: Tensor, g: Tensor, b: Tensor) => layerNorm(x, g, b, eps);
  checkProperty(
    fc.property(arb, ([x, g, b, seed]) => {
      // Rows whose values nearly coincide make 1/σ large and amplify f32 rounding: skip them.
      fc.pre(rowSpreads(x).every((s) => s > 0.1));
      compareForward("layerNorm", ours, theirs, [x, g, b]);
      compareGrads("layerNorm", ours, theirs, [x, g, b], seed);
    }),
    { numRuns: RUNS },
  );
});

/** max − min of each row of the last axis. */
function rowSpreads(x: HostArray): number[] {
  const d = x.shape[x.shape.length - 1];
  const out: number[] = [];
  for (let i = 0; i < x.data.length; i += d) {
    const row = Array.from(x.data.subarray(i, i + d));
    out.push(Math.max(...row) - Math.min(...row));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Shape ops

Deno.test("transpose with a random permutation: values and gradient match TF.js", () => {
  const arb = arbShape({ minRank: 1, maxRank: 4, maxDim: 3 }).chain((shape) =>
    fc.tuple(
      arbArray(shape),
      fc.shuffledSubarray(shape.map((_, i) => i), {
        minLength: shape.length,
        maxLength: shape.length,
      }),
      fc.integer(),
    )
  );
  checkProperty(
    fc.property(arb, ([x, perm, seed]) => {
      const ours = (t: Tensor) => transpose(t, perm);
      const theirs = (t: tf.Tensor) => tf.transpose(t, perm);
      compareForward(`transpose ${perm}`, ours, theirs, [x], EXACT);
      compareGrads(`transpose ${perm}`, ours, theirs, [x], seed, EXACT);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("concat of 2–3 tensors along a random axis: values and gradients match TF.js", () => {
  const arb = arbShape({ minRank: 1, maxRank: 3, maxDim: 3 }).chain((shape) =>
    fc.tuple(
      fc.integer({ min: 0, max: shape.length - 1 }),
      fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 2, maxLength: 3 }),
    ).chain(([axis, sizes]) =>
      fc.tuple(
        fc.tuple(...sizes.map((s) => arbArray(shape.map((d, i) => (i === axis ? s : d))))),
        fc.constant(axis),
        fc.integer(),
      )
    )
  );
  checkProperty(
    fc.property(arb, ([xs, axis, seed]) => {
      const ours = (...ts: Tensor[]) => concat(ts, axis);
      const theirs = (...ts: tf.Tensor[]) => tf.concat(ts, axis);
      compareForward(`concat axis ${axis}`, ours, theirs, xs, EXACT);
      compareGrads(`concat axis ${axis}`, ours, theirs, xs, seed, EXACT);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("slice with random in-range bounds: values and gradient match TF.js", () => {
  const arb = arbShape({ minRank: 1, maxRank: 3, maxDim: 5 }).chain((shape) =>
    fc.tuple(
      arbArray(shape),
      fc.tuple(...shape.map((d) =>
        fc.tuple(fc.integer({ min: 0, max: d }), fc.integer({ min: 0, max: d }))
          .map(([p, q]) => [Math.min(p, q), Math.max(p, q)] as const)
      )),
      fc.integer(),
    )
  );
  checkProperty(
    fc.property(arb, ([x, bounds, seed]) => {
      const starts = bounds.map(([s]) => s);
      const ends = bounds.map(([, e]) => e);
      const ours = (t: Tensor) => slice(t, starts, ends);
      const theirs = (t: tf.Tensor) => tf.slice(t, starts, ends.map((e, i) => e - starts[i]));
      compareForward(`slice ${starts}:${ends}`, ours, theirs, [x], EXACT);
      compareGrads(`slice ${starts}:${ends}`, ours, theirs, [x], seed, EXACT);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("take matches tf.gather on random axes and index shapes, with the table gradient", () => {
  const arb = arbShape({ minRank: 1, maxRank: 3, maxDim: 4 }).chain((shape) =>
    fc.integer({ min: 0, max: shape.length - 1 }).chain((axis) =>
      fc.tuple(
        arbArray(shape),
        arbShape({ minRank: 0, maxRank: 2, maxDim: 4 }).chain((ishape) =>
          arbIntArray(ishape, 0, shape[axis] - 1)
        ),
        fc.constant(axis),
        fc.integer(),
      )
    )
  );
  checkProperty(
    fc.property(arb, ([table, indices, axis, seed]) => {
      const ours = (t: Tensor) => take(t, indices, axis);
      const theirs = (t: tf.Tensor) => tf.gather(t, toTf(indices), axis);
      compareForward(`take axis ${axis}`, ours, theirs, [table], EXACT);
      compareGrads(`take axis ${axis}`, ours, theirs, [table], seed);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("oneHot matches tf.oneHot, including out-of-range indices (zero rows)", () => {
  const arb = fc.integer({ min: 2, max: 5 }).chain((depth) =>
    // TF.js needs depth ≥ 2
    fc.tuple(
      arbShape({ minRank: 1, maxRank: 1, maxDim: 6 }).chain((s) => arbIntArray(s, -1, depth)),
      fc.constant(depth),
    )
  );
  checkProperty(
    fc.property(arb, ([indices, depth]) => {
      const actual = interpret((i: Tensor) => oneHot(i, depth), indices) as HostArray;
      const expected = tfScope(() => fromTf(tf.cast(tf.oneHot(toTf(indices), depth), "float32")));
      assertClose(actual, expected, { ...EXACT, label: "oneHot" });
    }),
    { numRuns: RUNS },
  );
});
