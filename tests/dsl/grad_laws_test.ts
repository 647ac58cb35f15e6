/**
 * Laws of the autodiff transformations rather than of single ops: the VJP is the transpose of the
 * JVP, higher-order gradients agree with finite differences of lower-order ones, unused and
 * integer arguments, stopGradient, the documented tie conventions, and closures over outer traced
 * values (no perturbation confusion).
 *
 * Finite differences use h = 1e-6 in f64 (error ≈ h²·|f'''|/6 + ε·|f|/h < 1e-6 for the small,
 * smooth functions used here), compared with rtol 1e-5 / atol 1e-6. Identities that hold exactly
 * in real arithmetic (⟨v, J·u⟩ = ⟨Jᵀ·v, u⟩, both computed in f64 by the same graph machinery) are
 * compared with rtol 1e-9: they differ only by f64 rounding of a few dozen operations.
 */

import {
  abs,
  add,
  argmax,
  cast,
  concat,
  cos,
  DslError,
  evaluateGraph,
  exp,
  grad,
  greater,
  type HostArray,
  interpret,
  interpretF64,
  jvp,
  matmul,
  max,
  maximum,
  min,
  minimum,
  mul,
  relu,
  reshape,
  sigmoid,
  sin,
  slice,
  softmax,
  stopGradient,
  sum,
  take,
  tanh,
  type Tensor,
  trace,
  vjp,
  where,
} from "../../mod.ts";
import { checkProperty, fc } from "../helpers/property.ts";
import { arbArray, arbShape, assertClose } from "../helpers/arrays.ts";

// ---------------------------------------------------------------------------------------------
// Helpers (as in grad_primitives_test.ts)
// ---------------------------------------------------------------------------------------------

const H = 1e-6;
const RTOL = 1e-5;
const ATOL = 1e-6;
const RUNS = 20;

// deno-lint-ignore no-explicit-any
type Fn = (...args: any[]) => Tensor;

const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

function f64Array(shape: readonly number[], values: ArrayLike<number>): HostArray {
  return { shape: [...shape], dtype: "f32", data: Float64Array.from(values) };
}

/** A fixed pseudo-random array in [-1.5, 1.5] (mulberry32 of `seed`), f64-backed. */
function weights(shape: readonly number[], seed: number): HostArray {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return f64Array(shape, Array.from({ length: sizeOf(shape) }, () => 3 * next() - 1.5));
}

/**
 * Central differences of the (array-valued) `f` at `args` along `direction` for argument `a`:
 * (f(…, x + h·d, …) − f(…, x − h·d, …)) / 2h.
 */
function directionalDiff(f: Fn, args: HostArray[], a: number, direction: HostArray): HostArray {
  const graph = trace(f, ...args);
  const at = (sign: number) => {
    const shifted = [...args];
    shifted[a] = f64Array(
      args[a].shape,
      Array.from(args[a].data, (v, i) => v + sign * H * direction.data[i]),
    );
    return evaluateGraph(graph, shifted, { precision: "f64" })[0];
  };
  const [p, m] = [at(1), at(-1)];
  return f64Array(p.shape, Array.from(p.data, (v, i) => (v - m.data[i]) / (2 * H)));
}

/** `grad(f, { argnums: [a] })` in f64 matches central differences along every basis vector. */
function checkGrad(f: Fn, args: HostArray[], a = 0, label = "grad"): void {
  const [analytic] = interpretF64(grad(f, { argnums: [a] }), ...args) as HostArray[];
  const n = args[a].data.length;
  const numeric = f64Array(
    args[a].shape,
    range(n).map((i) => {
      const e = f64Array(args[a].shape, range(n).map((j) => (i === j ? 1 : 0)));
      return directionalDiff(f, args, a, e).data[0];
    }),
  );
  assertClose(analytic, numeric, { rtol: RTOL, atol: ATOL, label });
}

/** Asserts that `fn` throws an instance of `cls` whose message includes `includes`. */
function assertThrows(fn: () => unknown, cls: new (...a: never[]) => Error, includes: string) {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof cls) || !e.message.includes(includes)) {
      throw new Error(`expected a ${cls.name} mentioning "${includes}", got ${e}`);
    }
    return;
  }
  throw new Error(`expected a ${cls.name} mentioning "${includes}", nothing was thrown`);
}

const arbSeed = fc.integer({ min: 0, max: 0x7fffffff });
const SHAPE = { maxRank: 3, maxDim: 3 } as const;

// ---------------------------------------------------------------------------------------------
// (a) VJP is the transpose of the JVP
// ---------------------------------------------------------------------------------------------

/** Steps of a random vector-valued function on a flat vector of length n. */
type Step = (t: Tensor, n: number, seed: number) => Tensor;
const STEPS: Record<string, Step> = {
  tanh: (t) => tanh(t),
  sin: (t) => sin(t),
  sigmoid: (t) => sigmoid(t),
  scale: (t, n, seed) => mul(t, weights([n], seed)),
  shift: (t, n, seed) => add(t, weights([n], seed + 1)),
  square: (t) => mul(t, t),
  dense: (t, n, seed) => matmul(weights([n, n], seed + 2), t),
  softmax: (t) => softmax(t),
  roll: (t, n) => (n > 1 ? concat([slice(t, [1]), slice(t, [0], [1])]) : t),
  couple: (t) => mul(t, sum(t)), // every output depends on every input
  expQuarter: (t) => exp(mul(t, 0.25)),
};

interface FnSpec {
  inShape: number[];
  outDim: number;
  steps: string[];
  seed: number;
}

const arbVectorFunction: fc.Arbitrary<FnSpec> = fc.record({
  inShape: arbShape({ minRank: 1, maxRank: 2, maxDim: 3 }),
  outDim: fc.integer({ min: 1, max: 4 }),
  steps: fc.array(fc.constantFrom(...Object.keys(STEPS)), { minLength: 1, maxLength: 4 }),
  seed: arbSeed,
});

/** x (any shape) → flatten → steps → a dense map to outDim outputs. */
function buildFunction(spec: FnSpec): (x: Tensor) => Tensor {
  const n = sizeOf(spec.inShape);
  return (x: Tensor) => {
    let t = reshape(x, [n]);
    spec.steps.forEach((s, i) => (t = STEPS[s](t, n, spec.seed + 7 * i)));
    return matmul(weights([spec.outDim, n], spec.seed + 99), t);
  };
}

Deno.test(
  "⟨v, J·u⟩ = ⟨Jᵀ·v, u⟩ with jvp and vjp for random vector-valued functions, and J·u matches central differences",
  () => {
    const arb = arbVectorFunction.chain((spec) =>
      fc.tuple(
        fc.constant(spec),
        arbArray(spec.inShape, { f64: true }),
        arbArray(spec.inShape, { f64: true }),
        arbArray([spec.outDim], { f64: true }),
      )
    );
    checkProperty(
      fc.property(arb, ([spec, x, u, v]) => {
        const f = buildFunction(spec);
        const [vJu, jtvU, ju, y, jtv] = interpretF64(
          (xt: Tensor, ut: Tensor, vt: Tensor) => {
            const [yt, jut] = jvp(f, xt, ut);
            const [, pullback] = vjp(f, xt);
            const [jtvt] = pullback(vt) as Tensor[];
            return [sum(mul(vt, jut)), sum(mul(jtvt, ut)), jut, yt, jtvt];
          },
          x,
          u,
          v,
        ) as HostArray[];
        const label = spec.steps.join("∘");
        assertClose(vJu, jtvU, { rtol: 1e-9, atol: 1e-12, label: `⟨v,Ju⟩ vs ⟨Jᵀv,u⟩ ${label}` });
        assertClose(y, interpretF64(f, x) as HostArray, { rtol: 0, atol: 0, label: "jvp primal" });
        assertClose(ju, directionalDiff(f, [x], 0, u), {
          rtol: RTOL,
          atol: ATOL,
          label: `Ju ${label}`,
        });
        if (jtv.shape.join() !== x.shape.join()) throw new Error("Jᵀv has the input's shape");
      }),
      { numRuns: RUNS },
    );
  },
);

Deno.test("vjp of a pytree function returns cotangents for every argument (zeros for unused)", () => {
  const f = (p: { a: Tensor; b: Tensor }, c: Tensor) => [mul(p.a, c), tanh(p.a)];
  const a = f64Array([3], [0.5, -1, 2]), b = f64Array([2], [1, 2]), c = f64Array([3], [3, 4, 5]);
  const [ga, gb, gc] = interpretF64(
    (pa: Tensor, pb: Tensor, pc: Tensor) => {
      const [, pullback] = vjp(f as (...xs: never[]) => unknown, { a: pa, b: pb }, pc);
      const [gp, g] = pullback([f64Array([3], [1, 1, 1]), f64Array([3], [2, 0, 1])]) as [
        { a: Tensor; b: Tensor },
        Tensor,
      ];
      return [gp.a, gp.b, g];
    },
    a,
    b,
    c,
  ) as HostArray[];
  const sech2 = Array.from(a.data, (v) => 1 - Math.tanh(v) ** 2);
  assertClose(ga, [3 + 2 * sech2[0], 4, 5 + sech2[2]], { rtol: 1e-12 });
  assertClose(gb, [0, 0], { atol: 0 });
  assertClose(gc, [0.5, -1, 2], { atol: 0 });
});

// ---------------------------------------------------------------------------------------------
// (b) Higher order
// ---------------------------------------------------------------------------------------------

const tanhCube = (x: Tensor) => sum(mul(tanh(x), mul(x, mul(x, x))));

Deno.test(
  "grad of grad of sum(tanh(x)·x³) matches central differences of the first gradient and the closed form",
  () => {
    checkProperty(
      fc.property(arbShape(SHAPE).chain((s) => arbArray(s, { f64: true })), arbSeed, (x, seed) => {
        // Hessian·w = ∇⟨∇f, w⟩, checked against finite differences of ⟨∇f, w⟩.
        const hvp = (t: Tensor) => sum(mul(grad(tanhCube)(t) as Tensor, weights(t.shape, seed)));
        checkGrad(hvp, [x], 0, "Hessian·w");
        // The Hessian is diagonal: (t·x³)'' = t''x³ + 6t'x² + 6tx with t = tanh x.
        const d2 = interpretF64(grad((t: Tensor) => sum(grad(tanhCube)(t) as Tensor)), x);
        const expected = Array.from(x.data, (v) => {
          const t = Math.tanh(v), t1 = 1 - t * t, t2 = -2 * t * t1;
          return t2 * v ** 3 + 6 * t1 * v * v + 6 * t * v;
        });
        assertClose(d2 as HostArray, f64Array(x.shape, expected), { rtol: 1e-10, atol: 1e-12 });
      }),
      { numRuns: RUNS },
    );
  },
);

Deno.test("mixed second derivatives of a matmul loss match central differences", () => {
  const arb = fc.tuple(
    fc.integer({ min: 1, max: 3 }),
    fc.integer({ min: 1, max: 3 }),
    fc.integer({ min: 1, max: 3 }),
  ).chain(([m, k, n]) =>
    fc.tuple(arbArray([m, k], { f64: true }), arbArray([k, n], { f64: true }), arbSeed)
  );
  checkProperty(
    fc.property(arb, ([a, b, seed]) => {
      const f = (x: Tensor, y: Tensor) => sum(tanh(matmul(x, y)));
      // ∂/∂b ⟨∂f/∂a, W⟩ — a mixed partial: the inner grad's other argument is the outer variable.
      const inner = (x: Tensor, y: Tensor) =>
        sum(mul(grad(f, { argnums: 0 })(x, y) as Tensor, weights(x.shape, seed)));
      checkGrad(inner, [a, b], 1, "∂b⟨∂a f, W⟩");
      checkGrad(inner, [a, b], 0, "∂a⟨∂a f, W⟩");
    }),
    { numRuns: RUNS },
  );
});

Deno.test("third derivative of sin is −cos (grad of grad of grad)", () => {
  checkProperty(
    fc.property(arbArray([4], { f64: true, min: -3, max: 3 }), (x) => {
      const d1 = (t: Tensor) => sum(grad((s: Tensor) => sum(sin(s)))(t) as Tensor);
      const d2 = (t: Tensor) => sum(grad(d1)(t) as Tensor);
      const d3 = interpretF64(grad(d2), x) as HostArray;
      assertClose(d3, f64Array([4], Array.from(x.data, (v) => -Math.cos(v))), {
        rtol: 1e-12,
        atol: 1e-14,
      });
    }),
    { numRuns: 10 },
  );
});

// ---------------------------------------------------------------------------------------------
// (c) Unused, integer and non-differentiable arguments
// ---------------------------------------------------------------------------------------------

Deno.test("the gradient w.r.t. an unused argument is zero of that argument's shape", () => {
  checkProperty(
    fc.property(
      arbShape(SHAPE).chain((s) => arbArray(s, { f64: true })),
      arbShape(SHAPE).chain((s) => arbArray(s, { f64: true })),
      (x, y) => {
        const [gx, gy] = interpretF64(
          grad((a: Tensor, _b: Tensor) => sum(mul(a, a)), { argnums: [0, 1] }),
          x,
          y,
        ) as HostArray[];
        assertClose(gx, f64Array(x.shape, Array.from(x.data, (v) => 2 * v)), { atol: 0 });
        assertClose(gy, f64Array(y.shape, new Float64Array(y.data.length)), { atol: 0 });
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("integer arguments outside argnums are allowed; inside argnums they are rejected", () => {
  const table = f64Array([3, 2], [1, 2, 3, 4, 5, 6]);
  const idx: HostArray = { shape: [4], dtype: "i32", data: Int32Array.from([2, 0, 2, -1]) };
  const f = (t: Tensor, i: Tensor) => sum(take(t, i));
  // Row 2 is taken three times (the −1 counts from the end), row 0 once, row 1 never.
  assertClose(interpretF64(grad(f), table, idx) as HostArray, [[1, 1], [0, 0], [3, 3]], {
    atol: 0,
  });
  const [g] = interpretF64(grad(f, { argnums: [0] }), table, idx) as HostArray[];
  assertClose(g, [[1, 1], [0, 0], [3, 3]], { atol: 0 });
  assertThrows(() => interpret(grad(f, { argnums: 1 }), table, idx), DslError, "only f32");
  assertThrows(() => interpret(grad(f, { argnums: [0, 1] }), table, idx), DslError, "only f32");
  assertThrows(() => interpret(grad(f, { argnums: 2 }), table, idx), DslError, "out of range");
  const b: HostArray = { shape: [2], dtype: "bool", data: Int32Array.from([1, 0]) };
  const fb = (t: Tensor, m: Tensor) => sum(where(m, t, 0));
  assertClose(interpret(grad(fb), f64Array([2], [5, 6]), b) as HostArray, [1, 0], { atol: 0 });
});

Deno.test("paths through comparisons, argmax and integer casts carry no gradient", () => {
  checkProperty(
    fc.property(arbArray([5], { f64: true }), (x) => {
      const f = (t: Tensor) =>
        add(
          add(sum(where(greater(t, 0), 2, -1)), sum(cast(cast(mul(t, 10), "i32"), "f32"))),
          cast(argmax(t), "f32"),
        );
      assertClose(interpretF64(grad(f), x) as HostArray, [0, 0, 0, 0, 0], { atol: 0 });
    }),
    { numRuns: 10 },
  );
});

// ---------------------------------------------------------------------------------------------
// (d) stopGradient
// ---------------------------------------------------------------------------------------------

Deno.test("stopGradient blocks the flow: ∇ Σ x·sg(x) = x and ∇ Σ sg(x²) = 0, values unchanged", () => {
  checkProperty(
    fc.property(arbShape(SHAPE).chain((s) => arbArray(s, { f64: true })), (x) => {
      const zeros = f64Array(x.shape, new Float64Array(x.data.length));
      assertClose(interpretF64(grad((t: Tensor) => sum(mul(t, stopGradient(t)))), x), x, {
        atol: 0,
      });
      assertClose(interpretF64(grad((t: Tensor) => sum(stopGradient(mul(t, t)))), x), zeros, {
        atol: 0,
      });
      assertClose(interpretF64((t: Tensor) => stopGradient(t), x), x, { atol: 0 });
      // Inside a second-order gradient too: ∇(∇ Σ x²·sg(x)) = ∇(2x·sg(x)) = 2·sg(x) = 2x.
      const inner = (t: Tensor) => sum(mul(mul(t, t), stopGradient(t)));
      const d2 = interpretF64(grad((t: Tensor) => sum(grad(inner)(t) as Tensor)), x) as HostArray;
      assertClose(d2, f64Array(x.shape, Array.from(x.data, (v) => 2 * v)), {
        rtol: 1e-14,
        atol: 0,
      });
    }),
    { numRuns: RUNS },
  );
});

// ---------------------------------------------------------------------------------------------
// (e) Documented conventions at ties and kinks
// ---------------------------------------------------------------------------------------------

Deno.test("maximum and minimum split the gradient ½/½ on ties (incl. broadcast operands)", () => {
  const a = f64Array([4], [1, 2, 3, 5]), b = f64Array([4], [1, 3, 2, 5]);
  for (const op of [maximum, minimum]) {
    const [ga, gb] = interpretF64(
      grad((x: Tensor, y: Tensor) => sum(mul(op(x, y), f64Array([4], [1, 2, 3, 4]))), {
        argnums: [0, 1],
      }),
      a,
      b,
    ) as HostArray[];
    const aWins = op === maximum ? [0.5, 0, 3, 2] : [0.5, 2, 0, 2];
    const bWins = op === maximum ? [0.5, 2, 0, 2] : [0.5, 0, 3, 2];
    assertClose(ga, aWins, { atol: 0, label: op.name });
    assertClose(gb, bWins, { atol: 0, label: op.name });
  }
  // A scalar tied with every element collects ½ from each.
  const [gx, gs] = interpretF64(
    grad((x: Tensor, s: Tensor) => sum(maximum(x, s)), { argnums: [0, 1] }),
    f64Array([3], [2, 2, 1]),
    f64Array([], [2]),
  ) as HostArray[];
  assertClose(gx, [0.5, 0.5, 0], { atol: 0 });
  assertClose(gs, 2, { atol: 0 });
});

Deno.test("max and min reductions share the gradient equally among tied extrema", () => {
  const x = f64Array([2, 4], [5, 5, 1, 5, 1, 4, 4, 0]);
  const w = f64Array([2], [3, 6]);
  const gMax = interpretF64(grad((t: Tensor) => sum(mul(max(t, 1), w))), x);
  assertClose(gMax as HostArray, [[1, 1, 0, 1], [0, 3, 3, 0]], { rtol: 1e-15, atol: 0 });
  const gMin = interpretF64(grad((t: Tensor) => sum(mul(min(t, -1), w))), x);
  assertClose(gMin as HostArray, [[0, 0, 3, 0], [0, 0, 0, 6]], { rtol: 1e-15, atol: 0 });
  // All elements tied over every axis: each gets 1/n.
  const flat = interpretF64(grad((t: Tensor) => max(t)), f64Array([2, 3], [7, 7, 7, 7, 7, 7]));
  assertClose(flat as HostArray, [[1, 1, 1], [1, 1, 1]].map((r) => r.map((v) => v / 6)), {
    rtol: 1e-15,
    atol: 0,
  });
  // Tied maxima in several reduced axes at once.
  const multi = interpretF64(
    grad((t: Tensor) => sum(max(t, [0, 2]))),
    f64Array([2, 2, 2], [1, 4, 2, 2, 4, 0, 2, 1]),
  );
  // Kept axis 1: j = 0 sees {1, 4, 4, 0} (two maxima), j = 1 sees {2, 2, 2, 1} (three).
  const third = 1 / 3;
  assertClose(multi as HostArray, [[[0, 0.5], [third, third]], [[0.5, 0], [third, 0]]], {
    rtol: 1e-15,
    atol: 0,
  });
});

Deno.test("relu and abs have gradient 0 at 0", () => {
  const x = f64Array([3], [-1, 0, 2]);
  assertClose(interpretF64(grad((t: Tensor) => sum(relu(t))), x) as HostArray, [0, 0, 1], {
    atol: 0,
  });
  assertClose(interpretF64(grad((t: Tensor) => sum(abs(t))), x) as HostArray, [-1, 0, 1], {
    atol: 0,
  });
});

// ---------------------------------------------------------------------------------------------
// (f) Closures over outer traced values
// ---------------------------------------------------------------------------------------------

Deno.test(
  "grad of a function closing over an outer traced tensor treats it as a constant (y, not y + 2x²)",
  () => {
    checkProperty(
      fc.property(arbShape(SHAPE).chain((s) => arbArray(s, { f64: true })), (x) => {
        const got = interpretF64((t: Tensor) => {
          const y = mul(t, t); // computed in the outer trace
          return grad((z: Tensor) => sum(mul(z, y)))(t);
        }, x) as HostArray;
        assertClose(got, f64Array(x.shape, Array.from(x.data, (v) => v * v)), { atol: 0 });
      }),
      { numRuns: RUNS },
    );
  },
);

Deno.test(
  "no perturbation confusion: d/dx [x · d/dy (x + y)] = 1 and outer grads flow through closures",
  () => {
    checkProperty(
      fc.property(arbArray([], { f64: true }), arbArray([3], { f64: true }), (x, v) => {
        // Siskind & Pearlmutter's example: the inner derivative is 1 whatever x is.
        const f = (t: Tensor) => mul(t, grad((y: Tensor) => add(t, y))(t) as Tensor);
        assertClose(interpretF64(grad(f), x) as HostArray, 1, { atol: 0 });
        // ∇ₓ Σ ∇_z[Σ z·x·x](x) = ∇ₓ Σ x² = 2x: the closed-over x is differentiated by the outer grad.
        const g = (t: Tensor) => sum(grad((z: Tensor) => sum(mul(z, mul(t, t))))(t) as Tensor);
        assertClose(
          interpretF64(grad(g), v) as HostArray,
          f64Array([3], Array.from(v.data, (e) => 2 * e)),
          {
            atol: 0,
          },
        );
        // Both levels see the same argument: ∇ₓ Σ ∇_z[Σ z²·x](x) = ∇ₓ Σ 2x·x = 4x.
        const k = (t: Tensor) => sum(grad((z: Tensor) => sum(mul(mul(z, z), t)))(t) as Tensor);
        assertClose(
          interpretF64(grad(k), v) as HostArray,
          f64Array([3], Array.from(v.data, (e) => 4 * e)),
          {
            rtol: 1e-15,
            atol: 0,
          },
        );
      }),
      { numRuns: 10 },
    );
  },
);

Deno.test("grad works under interpret with a closed-over host constant and under cos∘grad", () => {
  // A HostArray closed over is a graph constant; its gradient is not requested and nothing leaks.
  const c = f64Array([3], [1, -2, 0.5]);
  const x = f64Array([3], [0.3, 0.1, -0.7]);
  const g = interpretF64(grad((t: Tensor) => sum(mul(cos(t), c))), x) as HostArray;
  assertClose(g, f64Array([3], Array.from(x.data, (v, i) => -Math.sin(v) * c.data[i])), {
    rtol: 1e-15,
    atol: 0,
  });
});
