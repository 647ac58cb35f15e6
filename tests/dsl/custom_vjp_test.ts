/**
 * `customVjp`: the backward pass hands a custom-gradient function's cotangent to its rule (and
 * nothing else), the rule composes with the rest of autodiff (other paths to the same inputs,
 * gradients of gradients), and the composites that use one (softmax, layerNorm, rmsNorm) give
 * the gradient the primitives' own rules give, evaluated in f64.
 */

import assert from "node:assert/strict";
import {
  add,
  customVjp,
  div,
  DslError,
  exp,
  grad,
  type HostArray,
  interpretF64,
  layerNorm,
  max,
  mean,
  mul,
  rmsNorm,
  rsqrt,
  softmax,
  square,
  stopGradient,
  sub,
  sum,
  type Tensor,
  vmap,
} from "../../mod.ts";
import * as lax from "../../dsl/lax.ts";

import { checkProperty, fc } from "../helpers/property.ts";
import { arbArray, assertClose } from "../helpers/arrays.ts";
import { arbSeed, checkGrad, weighted } from "../helpers/gradcheck.ts";

const vector = (...v: number[]): HostArray => ({
  shape: [v.length],
  dtype: "f32",
  data: Float64Array.from(v),
});

Deno.test("customVjp: grad uses the rule, not the primitives inside forward", () => {
  // x² with a rule that claims 3·g: only a used rule can produce 3.
  const f = customVjp((x: Tensor) => mul(x, x), (g) => [mul(g, 3)]);
  const dx = interpretF64(grad((x: Tensor) => sum(f(x))), vector(1, 2, -5)) as HostArray;
  assertClose(dx, [3, 3, 3]);
  // Forward values are forward's own.
  assertClose(interpretF64(f, vector(1, 2, -5)) as HostArray, [1, 4, 25]);
});

Deno.test("customVjp: an intermediate read outside forward still carries its own gradient", () => {
  let leaked: Tensor | undefined;
  const f = customVjp((x: Tensor) => {
    leaked = exp(x);
    return mul(leaked, 2);
  }, (g, [x]) => [mul(g, mul(exp(x), 2))]);
  // L = Σ 2eˣ + Σ eˣ: the rule gives 2eˣ, the leaked exp's own path eˣ.
  const loss = (x: Tensor) => add(sum(f(x)), sum(leaked ?? x));
  const x = vector(0.5, -1, 2);
  const dx = interpretF64(grad((t: Tensor) => loss(t)), x) as HostArray;
  assertClose(dx, Array.from(x.data, (v) => 3 * Math.exp(v)), { rtol: 1e-12 });
});

Deno.test("customVjp: its rule can be differentiated again (a Hessian-vector product)", () => {
  // f(x) = Σ x³ through a rule g·3x²: d/dx Σ v·∇f = 6·v·x.
  const cube = customVjp((x: Tensor) => mul(mul(x, x), x), (g, [x]) => [mul(g, mul(square(x), 3))]);
  const v = vector(1, -2, 0.5);
  const hvp = (x: Tensor) => {
    const gradient = grad((t: Tensor) => sum(cube(t)))(x);
    return sum(mul(gradient, v));
  };
  const x = vector(2, 1, -3);
  const got = interpretF64(grad(hvp), x) as HostArray;
  assertClose(got, Array.from(x.data, (xi, i) => 6 * xi * (v.data[i] as number)), { rtol: 1e-12 });
});

Deno.test("customVjp: a rule returning the wrong shape is reported, naming customVjp", () => {
  const f = customVjp((x: Tensor) => mul(x, 2), (g) => [sum(g)]);
  assert.throws(
    () => interpretF64(grad((x: Tensor) => sum(f(x))), vector(1, 2)),
    (e: unknown) =>
      e instanceof DslError && /customVjp/.test(e.message) && /f32\[\]/.test(e.message),
  );
});

/** The composites as the primitives' rules differentiate them (the formulas before customVjp). */
const plain = {
  softmax: (t: Tensor, axis: number) => {
    const e = exp(sub(t, stopGradient(max(t, axis, { keepDims: true }))));
    return div(e, sum(e, axis, { keepDims: true }));
  },
  rmsNorm: (t: Tensor, g: Tensor) =>
    mul(mul(t, rsqrt(add(mean(square(t), -1, { keepDims: true }), 1e-6))), g),
  layerNorm: (t: Tensor, g: Tensor, b: Tensor) => {
    const centered = sub(t, mean(t, -1, { keepDims: true }));
    const r = rsqrt(add(mean(square(centered), -1, { keepDims: true }), 1e-5));
    return add(mul(mul(centered, r), g), b);
  },
};

/** grad of a weighted loss of `ours` equals grad of the same loss of `reference`, in f64. */
function sameGradient(
  ours: (...xs: Tensor[]) => Tensor,
  reference: (...xs: Tensor[]) => Tensor,
  args: HostArray[],
  seed: number,
) {
  const argnums = args.map((_, i) => i);
  const got = interpretF64(grad(weighted(ours, seed), { argnums }), ...args) as HostArray[];
  const want = interpretF64(grad(weighted(reference, seed), { argnums }), ...args) as HostArray[];
  got.forEach((g, i) => assertClose(g, want[i], { rtol: 1e-9, atol: 1e-12, label: `arg ${i}` }));
}

const rows = (n: number, d: number) => arbArray([n, d], { min: -3, max: 3, f64: true });

Deno.test("softmax's custom gradient equals the primitives' gradient, on any axis", () => {
  checkProperty(
    fc.property(rows(3, 5), fc.integer({ min: 0, max: 1 }), arbSeed, (x, axis, seed) => {
      sameGradient((t) => softmax(t, axis), (t) => plain.softmax(t, axis), [x], seed);
    }),
    { numRuns: 25 },
  );
});

Deno.test("rmsNorm's and layerNorm's custom gradients equal the primitives' gradients", () => {
  checkProperty(
    fc.property(
      rows(4, 6),
      arbArray([6], { min: -2, max: 2, f64: true }),
      arbArray([6], { min: -2, max: 2, f64: true }),
      arbSeed,
      (x, g, b, seed) => {
        sameGradient((t, gamma) => rmsNorm(t, gamma), plain.rmsNorm, [x, g], seed);
        sameGradient(
          (t, gamma, beta) => layerNorm(t, gamma, beta),
          plain.layerNorm,
          [x, g, b],
          seed,
        );
        // And against central differences (the f64 reference both sides could share a bug with).
        checkGrad(weighted((t, gamma) => rmsNorm(t, gamma), seed), [x, g]);
      },
    ),
    { numRuns: 25 },
  );
});

Deno.test("customVjp under vmap: the rule is batched, and a shared argument's cotangent summed", () => {
  // f(x, w) = x·w elementwise with a rule claiming (3g, 5g): only a carried rule gives 3 and Σ 5.
  const f = customVjp((x: Tensor, w: Tensor) => mul(x, w), (g) => [mul(g, 3), mul(g, 5)]);
  const loss = (xs: Tensor, w: Tensor) => sum(vmap(f, { inAxes: [0, null] })(xs, w) as Tensor);
  const xs: HostArray = { shape: [4, 3], dtype: "f32", data: new Float64Array(12).fill(0.5) };
  const [dx, dw] = interpretF64(
    grad(loss, { argnums: [0, 1] }),
    xs,
    vector(1, 2, 3),
  ) as HostArray[];
  assertClose(dx, Array(12).fill(3));
  assertClose(dw, [20, 20, 20]); // 5 per example, 4 examples
});

Deno.test("softmax and rmsNorm under vmap: gradients equal the primitives' (the rules batched)", () => {
  checkProperty(
    fc.property(arbArray([3, 2, 5], { min: -3, max: 3, f64: true }), arbSeed, (x, seed) => {
      // vmap outside grad: the batched replay carries the rule (its values must still be right).
      const batched = (t: Tensor) => vmap((row: Tensor) => rmsNorm(softmax(row, -1)))(t) as Tensor;
      const reference = (t: Tensor) => plain.rmsNorm(plain.softmax(t, -1), lax.scalar(1));
      sameGradient(batched, reference, [x], seed);
    }),
    { numRuns: 10 },
  );
});
