/**
 * Gradients compiled with `jit(grad(f, { argnums }))` against `interpret(grad(f, { argnums }))`:
 * every differentiable op (through the public ops), the NN composites, and an MLP loss whose
 * parameters are a pytree. Each loss is Σ op(x…)·W for a fixed pseudo-random W of the output's
 * shape (a graph constant), so the cotangent reaching the VJP rule is not all ones.
 *
 * Tolerance: rtol 1e-4 / atol 1e-5 everywhere (`GRAD`). A backward pass mixes transcendentals
 * (not correctly rounded on the GPU) with sums whose kernels may be fused differently from the
 * reference's op-by-op evaluation; any wrong rule, transposed axis or dropped broadcast
 * reduction is off by O(1).
 */

import {
  abs,
  add,
  broadcastTo,
  cast,
  clip,
  concat,
  cos,
  crossEntropy,
  div,
  erf,
  exp,
  expandDims,
  gelu,
  grad,
  type HostArray,
  interpret,
  jit,
  layerNorm,
  log,
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
  pad,
  pow,
  reciprocal,
  relu,
  reshape,
  rmsNorm,
  rsqrt,
  scatterAdd,
  sigmoid,
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
  type Tensor,
  transpose,
  valueAndGrad,
  where,
} from "../../mod.ts";
import { bind } from "../../dsl/trace.ts";
import { arbBroadcastPair, arbShape } from "../helpers/arrays.ts";
import {
  arbAxes,
  arbBool,
  arbF32,
  arbI32,
  assertTreeMatches,
  checkAsyncProperty,
  fc,
  recordPrimitives,
  seeded,
  type Tol,
} from "./jit_helpers.ts";

const GRAD: Tol = { rtol: 1e-4, atol: 1e-5 };
const RUNS = 6;
const SHAPE = arbShape({ maxRank: 3, maxDim: 3 });
const arbSeed = fc.integer({ min: 1, max: 1_000_000 });

// deno-lint-ignore no-explicit-any
type Loss = (...args: any[]) => Tensor;

/** Σ op(x…)·W with a fixed W of op's output shape. */
function weighted(op: (...xs: Tensor[]) => Tensor, seed: number): Loss {
  return (...xs: Tensor[]) => {
    const y = op(...xs);
    return sum(mul(y, seeded(y.shape, seed, -1.5, 1.5)));
  };
}

/** jit(grad(f, { argnums })) vs interpret(grad(f, { argnums })). */
async function expectGradMatches(
  f: Loss,
  args: unknown[],
  argnums: number | number[],
  label: string,
  tol: Tol = GRAD,
): Promise<void> {
  const g = grad(f, { argnums });
  recordPrimitives(g, args);
  const expected = interpret(g, ...args);
  const actual = await jit(g)(...args);
  try {
    assertTreeMatches(actual, expected, tol, `grad ${label}`);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${String(await jit(g).lower(...args))}`);
  }
}

/** Values k/4 + offset, |k| ≤ 8: ties within one array, none across two offsets. */
function arbLattice(shape: readonly number[], offset = 0): fc.Arbitrary<HostArray> {
  const n = shape.reduce((a, b) => a * b, 1);
  return fc.array(fc.integer({ min: -8, max: 8 }), { minLength: n, maxLength: n }).map((ks) => ({
    shape: [...shape],
    dtype: "f32" as const,
    data: Float32Array.from(ks, (k) => k / 4 + offset),
  }));
}

/** |x| in [lo, hi] with a random sign. */
function arbAwayFromZero(shape: readonly number[], lo = 0.3, hi = 2): fc.Arbitrary<HostArray> {
  return fc.tuple(arbF32(shape, lo, hi), arbBool(shape)).map(([x, s]) => ({
    ...x,
    data: x.data.map((v, i) => (s.data[i] ? v : -v)),
  }));
}

// ---------------------------------------------------------------------------------------------
// Unary ops

interface UnaryCase {
  name: string;
  op: (x: Tensor) => Tensor;
  arb: (shape: number[]) => fc.Arbitrary<HostArray>;
}

const dense = (min: number, max: number) => (s: number[]) => arbF32(s, min, max);

const UNARY: UnaryCase[] = [
  { name: "neg", op: neg, arb: dense(-2, 2) },
  { name: "abs", op: abs, arb: (s) => fc.oneof(arbAwayFromZero(s), arbLattice(s)) },
  { name: "square", op: square, arb: dense(-2, 2) },
  { name: "relu", op: relu, arb: (s) => fc.oneof(dense(-2, 2)(s), arbLattice(s)) },
  { name: "exp", op: exp, arb: dense(-3, 3) },
  { name: "log", op: log, arb: dense(0.2, 3) },
  { name: "sqrt", op: sqrt, arb: dense(0.2, 3) },
  { name: "rsqrt", op: rsqrt, arb: dense(0.2, 3) },
  { name: "reciprocal", op: reciprocal, arb: (s) => arbAwayFromZero(s) },
  { name: "tanh", op: tanh, arb: dense(-3, 3) },
  { name: "sigmoid", op: sigmoid, arb: dense(-4, 4) },
  { name: "erf", op: erf, arb: dense(-2.5, 2.5) },
  { name: "sin", op: sin, arb: dense(-3, 3) },
  { name: "cos", op: cos, arb: dense(-3, 3) },
  { name: "gelu (tanh)", op: (x) => gelu(x), arb: dense(-3, 3) },
  { name: "gelu (erf)", op: (x) => gelu(x, { approximate: false }), arb: dense(-3, 3) },
  { name: "silu", op: silu, arb: dense(-3, 3) },
  { name: "stopGradient", op: (x) => mul(stopGradient(x), x), arb: dense(-2, 2) },
  {
    name: "cast f32→f32",
    op: (x) => mul(bind("cast", [x], { dtype: "f32" }), x),
    arb: dense(-2, 2),
  },
  { name: "pow (scalar exponent)", op: (x) => pow(x, 3), arb: dense(-2, 2) },
];

for (const c of UNARY) {
  Deno.test(`jit grad of ${c.name} matches interpret`, async () => {
    await checkAsyncProperty(
      fc.asyncProperty(SHAPE.chain(c.arb), arbSeed, async (x, seed) => {
        await expectGradMatches(weighted(c.op, seed), [x], 0, c.name);
      }),
      { numRuns: RUNS },
    );
  });
}

// ---------------------------------------------------------------------------------------------
// Binary ops with broadcasting (the gradient sums over broadcast axes)

interface BinaryCase {
  name: string;
  op: (a: Tensor, b: Tensor) => Tensor;
  arb: (sa: number[], sb: number[]) => fc.Arbitrary<[HostArray, HostArray]>;
}

const denseAB = (sa: number[], sb: number[]) => fc.tuple(arbF32(sa), arbF32(sb));

const BINARY: BinaryCase[] = [
  { name: "add", op: add, arb: denseAB },
  { name: "sub", op: sub, arb: denseAB },
  { name: "mul", op: mul, arb: denseAB },
  { name: "div", op: div, arb: (sa, sb) => fc.tuple(arbF32(sa), arbAwayFromZero(sb)) },
  { name: "pow", op: pow, arb: (sa, sb) => fc.tuple(arbF32(sa, 0.2, 2.5), arbF32(sb, -2, 2)) },
  // Ties split the gradient ½/½: lattice values tie often.
  { name: "maximum", op: maximum, arb: (sa, sb) => fc.tuple(arbLattice(sa), arbLattice(sb)) },
  { name: "minimum", op: minimum, arb: (sa, sb) => fc.tuple(arbLattice(sa), arbLattice(sb)) },
  {
    name: "where(a − b ≠ 0)",
    op: (a, b) => where(sub(a, b), mul(a, b), sub(a, 1)),
    arb: (sa, sb) => fc.tuple(arbLattice(sa), arbLattice(sb)),
  },
  { name: "clip", op: (a, b) => clip(a, b, add(b, 1)), arb: denseAB },
];

for (const c of BINARY) {
  Deno.test(`jit grad of ${c.name} w.r.t. both broadcast operands matches interpret`, async () => {
    await checkAsyncProperty(
      fc.asyncProperty(
        arbBroadcastPair(3).chain(([sa, sb]) => c.arb(sa, sb)),
        arbSeed,
        async ([a, b], seed) => {
          await expectGradMatches(weighted(c.op, seed), [a, b], [0, 1], c.name);
          await expectGradMatches(weighted(c.op, seed), [a, b], 1, `${c.name} (argnums 1)`);
        },
      ),
      { numRuns: RUNS },
    );
  });
}

Deno.test("jit grad of where with a bool input condition", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      arbBroadcastPair(3).chain(([sa, sb]) => fc.tuple(arbBool(sa), arbF32(sa), arbF32(sb))),
      arbSeed,
      async ([c, a, b], seed) => {
        await expectGradMatches(
          weighted((c, a, b) => where(c, a, b), seed),
          [c, a, b],
          [1, 2],
          "where",
        );
      },
    ),
    { numRuns: RUNS },
  );
});

// ---------------------------------------------------------------------------------------------
// Reductions

Deno.test("jit grad of sum / mean / max / min / logsumexp over random axes with keepDims", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      arbShape({ minRank: 1, maxRank: 3, maxDim: 4 }).chain((s) =>
        fc.tuple(fc.oneof(arbF32(s), arbLattice(s)), arbAxes(s.length), fc.boolean())
      ),
      arbSeed,
      async ([x, axes, keepDims], seed) => {
        const o = { keepDims };
        await expectGradMatches(weighted((t) => sum(t, axes, o), seed), [x], 0, "sum");
        await expectGradMatches(weighted((t) => mean(t, axes, o), seed), [x], 0, "mean");
        // Ties (lattice values) share the cotangent equally.
        await expectGradMatches(weighted((t) => max(t, axes, o), seed), [x], 0, "max");
        await expectGradMatches(weighted((t) => min(t, axes, o), seed), [x], 0, "min");
        await expectGradMatches(weighted((t) => logsumexp(t, axes, o), seed), [x], 0, "lse");
      },
    ),
    { numRuns: RUNS },
  );
});

// ---------------------------------------------------------------------------------------------
// matmul

Deno.test("jit grad of matmul: batched broadcast, 1-D operands, transposed views", async () => {
  const cases: [number[], number[]][] = [
    [[3, 4], [4, 5]],
    [[2, 3, 4], [4, 2]],
    [[1, 3, 2], [2, 2, 3]],
    [[4], [4, 3]],
    [[2, 3, 4], [4]],
    [[5], [5]],
  ];
  for (const [sa, sb] of cases) {
    const a = seeded(sa, 11), b = seeded(sb, 12);
    await expectGradMatches(weighted(matmul, 5), [a, b], [0, 1], `matmul ${sa}×${sb}`);
  }
  const a = seeded([4, 3], 13), b = seeded([5, 3], 14);
  await expectGradMatches(
    weighted((a, b) => tanh(matmul(a, transpose(b))), 6),
    [a, b],
    [0, 1],
    "tanh(a·bᵀ)",
  );
});

// ---------------------------------------------------------------------------------------------
// Views and indexing

Deno.test("jit grad of reshape / transpose / broadcastTo / expandDims / squeeze / slice / pad", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      arbShape({ minRank: 1, maxRank: 3, maxDim: 4 }).chain((s) =>
        fc.tuple(
          arbF32(s),
          fc.shuffledSubarray(s.map((_, i) => i), { minLength: s.length }),
          fc.array(fc.integer({ min: -5, max: 5 }), { minLength: s.length, maxLength: s.length }),
          fc.array(fc.tuple(fc.nat(2), fc.nat(2)), { minLength: 1, maxLength: s.length }),
        )
      ),
      arbSeed,
      async ([x, perm, starts, widths], seed) => {
        const f = (t: Tensor) =>
          add(
            add(
              sum(mul(reshape(t, [-1]), reshape(t, [-1]))),
              sum(mul(transpose(t, perm), seeded([...perm.map((p) => x.shape[p])], seed))),
            ),
            add(
              sum(mul(square(broadcastTo(t, [2, ...x.shape])), 0.5)),
              add(
                sum(squeeze(expandDims(exp(slice(t, starts)), 0))),
                sum(mul(pad(t, widths, 1.5), pad(t, widths, -2))),
              ),
            ),
          );
        await expectGradMatches(f, [x], 0, "views");
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("jit grad of concat / stack over 1–3 operands along a random axis", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      arbShape({ minRank: 1, maxRank: 3, maxDim: 3 }).chain((s) =>
        fc.tuple(
          fc.integer({ min: 0, max: s.length - 1 }),
          fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 3 }),
        ).chain(([axis, sizes]) =>
          fc.tuple(
            fc.constant(axis),
            fc.tuple(...sizes.map((d) => arbF32(s.map((x, i) => (i === axis ? d : x))))),
          )
        )
      ),
      arbSeed,
      async ([axis, xs], seed) => {
        const argnums = xs.map((_, i) => i);
        await expectGradMatches(
          weighted((...ts: Tensor[]) => tanh(concat(ts, axis)), seed),
          xs,
          argnums,
          "concat",
        );
        await expectGradMatches(
          weighted((a: Tensor) => stack([a, mul(a, a)], axis), seed),
          [xs[0]],
          0,
          "stack",
        );
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("jit grad of take (duplicates accumulate) and scatterAdd, any axis", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      arbShape({ minRank: 1, maxRank: 3, maxDim: 4 }).chain((s) =>
        fc.tuple(
          fc.integer({ min: 0, max: s.length - 1 }),
          arbShape({ minRank: 0, maxRank: 2, maxDim: 4 }),
        ).chain(([axis, is]) =>
          fc.tuple(
            arbF32(s),
            fc.constant(axis),
            arbI32(is, -s[axis] - 1, s[axis]),
            arbF32([...s.slice(0, axis), ...is, ...s.slice(axis + 1)]),
          )
        )
      ),
      arbSeed,
      async ([table, axis, idx, upd], seed) => {
        await expectGradMatches(
          weighted((t, i) => exp(take(t, i, axis)), seed),
          [table, idx],
          0,
          "take",
        );
        await expectGradMatches(
          weighted((o, i, u) => tanh(scatterAdd(o, i, mul(u, u), axis)), seed),
          [table, idx, upd],
          [0, 2],
          "scatterAdd",
        );
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("jit grad of cast (i32 → f32 is constant; f32 → i32 → f32 blocks the gradient)", async () => {
  const x = seeded([3, 4], 21, -3, 3);
  const k = {
    shape: [3, 4],
    dtype: "i32" as const,
    data: Int32Array.from({ length: 12 }, (_, i) => i - 5),
  };
  await expectGradMatches(
    (x, k) => sum(add(mul(x, cast(k, "f32")), cast(cast(x, "i32"), "f32"))),
    [x, k],
    0,
    "casts",
  );
});

// ---------------------------------------------------------------------------------------------
// NN composites

Deno.test("jit grad of softmax / logSoftmax / logsumexp along a random axis", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      arbShape({ minRank: 1, maxRank: 3, maxDim: 5 }).chain((s) =>
        fc.tuple(arbF32(s, -4, 4), fc.integer({ min: -s.length, max: s.length - 1 }))
      ),
      arbSeed,
      async ([x, axis], seed) => {
        await expectGradMatches(weighted((t) => softmax(t, axis), seed), [x], 0, "softmax");
        await expectGradMatches(weighted((t) => logSoftmax(t, axis), seed), [x], 0, "logSoftmax");
        await expectGradMatches(weighted((t) => logsumexp(t, axis), seed), [x], 0, "logsumexp");
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("jit grad of crossEntropy (index / probability labels, bool and f32 masks)", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      fc.tuple(
        arbShape({ minRank: 1, maxRank: 2, maxDim: 4 }),
        fc.integer({ min: 2, max: 6 }),
      ).chain(([pos, c]) =>
        fc.tuple(
          arbF32([...pos, c], -4, 4),
          arbI32(pos, 0, c - 1),
          arbBool(pos),
          arbF32([...pos, c], 0, 1),
        )
      ),
      async ([z, y, m, p]) => {
        await expectGradMatches((z, y) => crossEntropy(z, y), [z, y], 0, "ce");
        await expectGradMatches(
          (z, y, m) => crossEntropy(z, y, { mask: m }),
          [z, y, m],
          0,
          "ce mask",
        );
        await expectGradMatches(
          (z, y, m) => crossEntropy(z, y, { mask: cast(m, "f32"), reduction: "sum" }),
          [z, y, m],
          0,
          "ce f32 mask sum",
        );
        await expectGradMatches((z, p) => crossEntropy(z, p), [z, p], [0, 1], "ce probs");
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("jit grad of layerNorm / rmsNorm w.r.t. x, gamma and beta", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      fc.tuple(arbShape({ maxRank: 2, maxDim: 3 }), fc.integer({ min: 2, max: 8 })).chain((
        [lead, d],
      ) => fc.tuple(arbF32([...lead, d], -3, 3), arbF32([d]), arbF32([d]))),
      arbSeed,
      async ([x, g, b], seed) => {
        await expectGradMatches(
          weighted((x, g, b) => layerNorm(x, g, b), seed),
          [x, g, b],
          [0, 1, 2],
          "layerNorm",
        );
        await expectGradMatches(
          weighted((x, g) => rmsNorm(x, g), seed),
          [x, g],
          [0, 1],
          "rmsNorm",
        );
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("jit grad of gelu (both modes) and silu composites inside a small network", async () => {
  const x = seeded([4, 6], 31, -3, 3);
  const w = seeded([6, 5], 32);
  const f = (x: Tensor, w: Tensor) => {
    const h = matmul(x, w);
    return add(
      sum(mul(gelu(h), gelu(h, { approximate: false }))),
      mean(silu(mul(h, 2))),
    );
  };
  await expectGradMatches(f, [x, w], [0, 1], "gelu/silu net");
});

// ---------------------------------------------------------------------------------------------
// An MLP loss with parameters as a pytree

interface Params {
  w1: HostArray;
  b1: HostArray;
  w2: HostArray;
  b2: HostArray;
}

function mlpLoss(p: Record<keyof Params, Tensor>, x: Tensor, y: Tensor): Tensor {
  const h = gelu(add(matmul(x, p.w1), p.b1));
  const logits = add(matmul(layerNorm(h), p.w2), p.b2);
  return crossEntropy(logits, y);
}

Deno.test("jit grad of an MLP loss with params as a pytree; valueAndGrad", async () => {
  const params: Params = {
    w1: seeded([6, 16], 41, -0.5, 0.5),
    b1: seeded([16], 42, -0.1, 0.1),
    w2: seeded([16, 5], 43, -0.5, 0.5),
    b2: seeded([5], 44, -0.1, 0.1),
  };
  const x = seeded([8, 6], 45, -2, 2);
  const y = { shape: [8], dtype: "i32" as const, data: Int32Array.from([0, 1, 2, 3, 4, 0, 1, 2]) };
  await expectGradMatches(mlpLoss, [params, x, y], 0, "mlp params");
  await expectGradMatches(mlpLoss, [params, x, y], [0, 1], "mlp params and x");
  const vg = valueAndGrad(mlpLoss);
  const [value, grads] = await jit(vg)(params, x, y);
  const [v0, g0] = interpret(vg, params, x, y);
  assertTreeMatches([value, grads], [v0, g0], GRAD, "valueAndGrad");
  if (Object.keys(grads).sort().join() !== "b1,b2,w1,w2") throw new Error("pytree keys differ");
});

Deno.test("jit grad at edge values: log(0), sqrt(0), pow(0, y), relu(0), abs(0), max ties", async () => {
  const x = { shape: [6], dtype: "f32" as const, data: Float32Array.from([0, 1, -0, 2, 0, 3]) };
  await expectGradMatches((t) => sum(log(t)), [x], 0, "log at 0");
  await expectGradMatches((t) => sum(sqrt(t)), [x], 0, "sqrt at 0");
  await expectGradMatches((t) => sum(add(relu(t), abs(t))), [x], 0, "relu/abs at 0");
  await expectGradMatches((t) => sum(pow(t, 0.5)), [x], 0, "pow(x, ½) at 0");
  await expectGradMatches((t, y) => sum(pow(t, y)), [x, seeded([6], 3)], [0, 1], "pow(0, y)");
  await expectGradMatches((t) => max(t), [x], 0, "max ties at 0");
});
