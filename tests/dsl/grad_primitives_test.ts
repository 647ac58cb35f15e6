/**
 * Reverse-mode gradients of every differentiable primitive, reached through the public ops of
 * mod.ts, against central differences evaluated in f64.
 *
 * Each check differentiates a scalar loss `sum(op(x…) · W)` where W is a fixed random weight of
 * the output's shape (so the cotangent fed into the VJP rule is not all ones), with `grad`
 * evaluated by `interpretF64`, and compares it with `(L(x + h·eᵢ) − L(x − h·eᵢ)) / 2h` for every
 * element i of every differentiated argument (the loss graph is traced once and re-evaluated with
 * `evaluateGraph` in f64).
 *
 * Tolerances: with h = 1e-6 in f64 the truncation error of a central difference is h²·|L'''|/6
 * ≈ 1e-13·|L'''| and the rounding error ε·|L|/h ≈ 2.2e-10·|L|; the losses here stay below ~10³
 * and their third derivatives below ~10³ on the sampled domains, so both terms are < 1e-6.
 * rtol 1e-5 / atol 1e-6 therefore only fails on a wrong rule, while any real mistake (a missing
 * factor, a transposed axis, a dropped broadcast reduction) is off by O(1). The few constants that
 * ops embed as f32 literals (e.g. 2/√π in erf's VJP) perturb the gradient by ~1e-8 relative.
 */

import {
  abs,
  add,
  broadcastTo,
  cast,
  concat,
  cos,
  div,
  erf,
  exp,
  type HostArray,
  log,
  matmul,
  max,
  maximum,
  minimum,
  mul,
  neg,
  pad,
  pow,
  reciprocal,
  reshape,
  scatterAdd,
  sigmoid,
  sin,
  slice,
  sqrt,
  sub,
  sum,
  take,
  tanh,
  type Tensor,
  trace,
  transpose,
  where,
} from "../../mod.ts";
import { bind } from "../../dsl/trace.ts";
import { checkProperty, fc } from "../helpers/property.ts";
import { arbArray, arbBroadcastPair, arbNumber, arbShape } from "../helpers/arrays.ts";

import {
  arbAwayFromZero,
  arbAxes,
  arbDistinct,
  arbLattice,
  arbSeed,
  checkGrad,
  range,
  sizeOf,
  weighted,
} from "../helpers/gradcheck.ts";

const RUNS = 30;

const SHAPE = { maxRank: 3, maxDim: 3 } as const;

// ---------------------------------------------------------------------------------------------
// Unary elementwise
// ---------------------------------------------------------------------------------------------

interface UnaryCase {
  name: string;
  op: (x: Tensor) => Tensor;
  arb: (shape: number[]) => fc.Arbitrary<HostArray>;
}

const dense = (min: number, max: number) => (shape: number[]) =>
  arbArray(shape, { min, max, f64: true });

const UNARY: UnaryCase[] = [
  { name: "neg", op: neg, arb: dense(-2, 2) },
  { name: "abs", op: abs, arb: (s) => arbAwayFromZero(s) }, // |x|' jumps at 0
  { name: "exp", op: exp, arb: dense(-2, 2) },
  { name: "log", op: log, arb: dense(0.2, 3) },
  { name: "sqrt", op: sqrt, arb: dense(0.2, 3) },
  { name: "recip (reciprocal)", op: reciprocal, arb: (s) => arbAwayFromZero(s, 0.3, 2) },
  { name: "tanh", op: tanh, arb: dense(-2, 2) },
  { name: "sigmoid", op: sigmoid, arb: dense(-3, 3) },
  // The erf reference switches formula at |x| = 2 (a ~1e-10 seam): stay inside.
  { name: "erf", op: erf, arb: dense(-1.9, 1.9) },
  { name: "sin", op: sin, arb: dense(-3, 3) },
  { name: "cos", op: cos, arb: dense(-3, 3) },
];

for (const c of UNARY) {
  Deno.test(`grad of ${c.name} matches central differences for random shapes`, () => {
    checkProperty(
      fc.property(arbShape(SHAPE).chain(c.arb), arbSeed, (x, seed) => {
        checkGrad(weighted(c.op, seed), [x], { label: c.name });
      }),
      { numRuns: RUNS },
    );
  });
}

Deno.test("grad of cast f32→f32 matches central differences (public op and cast primitive)", () => {
  // The public `cast` elides a same-dtype cast, so the primitive is also bound directly.
  const castPrim = (x: Tensor) => bind("cast", [x], { dtype: "f32" });
  if (!String(trace(castPrim, { shape: [2] })).includes("cast")) throw new Error("no cast node");
  checkProperty(
    fc.property(arbShape(SHAPE).chain(dense(-2, 2)), arbSeed, (x, seed) => {
      checkGrad(weighted((t) => mul(cast(t, "f32"), t), seed), [x], { label: "cast" });
      checkGrad(weighted((t) => mul(castPrim(t), sin(t)), seed), [x], { label: "cast primitive" });
    }),
    { numRuns: 10 },
  );
});

// ---------------------------------------------------------------------------------------------
// Binary elementwise, with numpy broadcasting between the operands
// ---------------------------------------------------------------------------------------------

interface BinaryCase {
  name: string;
  op: (a: Tensor, b: Tensor) => Tensor;
  arbA: (shape: number[]) => fc.Arbitrary<HostArray>;
  arbB: (shape: number[]) => fc.Arbitrary<HostArray>;
}

const BINARY: BinaryCase[] = [
  { name: "add", op: add, arbA: dense(-2, 2), arbB: dense(-2, 2) },
  { name: "sub", op: sub, arbA: dense(-2, 2), arbB: dense(-2, 2) },
  { name: "mul", op: mul, arbA: dense(-2, 2), arbB: dense(-2, 2) },
  { name: "div", op: div, arbA: dense(-2, 2), arbB: (s) => arbAwayFromZero(s, 0.3, 2) },
  // Positive bases (log x in d/dy xʸ); exponents of both signs.
  { name: "pow", op: pow, arbA: dense(0.3, 2), arbB: dense(-2, 2) },
  // Operands on offset lattices never tie (ties split ½/½: see grad_laws_test.ts).
  {
    name: "maximum",
    op: maximum,
    arbA: (s) => arbLattice(s, 0),
    arbB: (s) => arbLattice(s, 0.125),
  },
  {
    name: "minimum",
    op: minimum,
    arbA: (s) => arbLattice(s, 0),
    arbB: (s) => arbLattice(s, 0.125),
  },
];

for (const c of BINARY) {
  Deno.test(
    `grad of ${c.name} matches central differences for random broadcast shapes`,
    () => {
      checkProperty(
        fc.property(
          arbBroadcastPair(3).chain(([sa, sb]) => fc.tuple(c.arbA(sa), c.arbB(sb))),
          arbSeed,
          ([a, b], seed) => {
            checkGrad(weighted(c.op, seed), [a, b], { label: c.name });
          },
        ),
        { numRuns: RUNS },
      );
    },
  );
}

function broadcastResult(a: readonly number[], b: readonly number[]): number[] {
  const r = Math.max(a.length, b.length);
  return range(r).map((i) => {
    const da = a[a.length - r + i] ?? 1, db = b[b.length - r + i] ?? 1;
    return da === 1 ? db : da;
  });
}

Deno.test("grad of where matches central differences for random broadcast shapes", () => {
  const arb = arbBroadcastPair(3).chain(([sa, sb]) => {
    const out = broadcastResult(sa, sb);
    // The condition broadcasts too: some of its dims are 1.
    return fc.tuple(
      arbArray(sa, { f64: true }),
      arbArray(sb, { f64: true }),
      fc.array(fc.boolean(), { minLength: out.length, maxLength: out.length }).chain((ones) => {
        const cs = out.map((d, i) => (ones[i] ? 1 : d));
        return fc.array(fc.boolean(), { minLength: sizeOf(cs), maxLength: sizeOf(cs) }).map(
          (bits): HostArray => ({ shape: cs, dtype: "bool", data: Int32Array.from(bits, Number) }),
        );
      }),
    );
  });
  checkProperty(
    fc.property(arb, arbSeed, ([a, b, cond], seed) => {
      checkGrad(weighted((x, y) => where(cond, x, y), seed), [a, b], { label: "where" });
    }),
    { numRuns: RUNS },
  );
});

// ---------------------------------------------------------------------------------------------
// Reductions and matmul
// ---------------------------------------------------------------------------------------------

Deno.test("grad of sum matches central differences for random axes and keepDims", () => {
  const arb = arbShape(SHAPE).chain((s) =>
    fc.tuple(arbArray(s, { f64: true }), fc.option(arbAxes(s.length)), fc.boolean())
  );
  checkProperty(
    fc.property(arb, arbSeed, ([x, axes, keepDims], seed) => {
      const op = (t: Tensor) => sum(mul(t, t), axes ?? undefined, { keepDims });
      checkGrad(weighted(op, seed), [x], { label: `sum ${JSON.stringify(axes)}` });
    }),
    { numRuns: RUNS },
  );
});

Deno.test("grad of max reduction matches central differences for distinct values", () => {
  const arb = arbShape(SHAPE).chain((s) =>
    fc.tuple(arbDistinct(s), fc.option(arbAxes(s.length)), fc.boolean())
  );
  checkProperty(
    fc.property(arb, arbSeed, ([x, axes, keepDims], seed) => {
      const op = (t: Tensor) => max(t, axes ?? undefined, { keepDims });
      checkGrad(weighted(op, seed), [x], { label: `max ${JSON.stringify(axes)}` });
    }),
    { numRuns: RUNS },
  );
});

Deno.test("grad of batched matmul matches central differences (broadcast batch, 1-D operands)", () => {
  const dim = fc.integer({ min: 1, max: 3 });
  const arb = fc.tuple(arbBroadcastPair(2), dim, dim, dim, fc.boolean(), fc.boolean()).chain(
    ([[ba, bb], m, k, n, aVec, bVec]) =>
      fc.tuple(
        arbArray(aVec ? [k] : [...ba, m, k], { f64: true }),
        arbArray(bVec ? [k] : [...bb, k, n], { f64: true }),
      ),
  );
  checkProperty(
    fc.property(arb, arbSeed, ([a, b], seed) => {
      checkGrad(weighted((x, y) => matmul(x, y), seed), [a, b], {
        label: `matmul [${a.shape}]×[${b.shape}]`,
      });
    }),
    { numRuns: RUNS },
  );
});

// ---------------------------------------------------------------------------------------------
// Shape primitives
// ---------------------------------------------------------------------------------------------

Deno.test("grad of reshape matches central differences for random target shapes", () => {
  // Target: the dims permuted, an extra 1 inserted, and possibly one dim written as −1.
  const arb = arbShape(SHAPE).chain((s) =>
    fc.tuple(
      arbArray(s, { f64: true }),
      fc.shuffledSubarray([...s, 1], { minLength: s.length + 1, maxLength: s.length + 1 }),
      fc.integer({ min: -1, max: s.length }),
    )
  );
  checkProperty(
    fc.property(arb, arbSeed, ([x, target, inferred], seed) => {
      const shape = target.map((d, i) => (i === inferred ? -1 : d));
      const op = (t: Tensor) => mul(reshape(t, shape), reshape(t, shape));
      checkGrad(weighted(op, seed), [x], { label: `reshape to [${shape}]` });
    }),
    { numRuns: RUNS },
  );
});

Deno.test("grad of transpose matches central differences for random permutations", () => {
  const arb = arbShape({ maxRank: 4, maxDim: 3 }).chain((s) =>
    fc.tuple(
      arbArray(s, { f64: true }),
      fc.shuffledSubarray(range(s.length), { minLength: s.length, maxLength: s.length }),
    )
  );
  checkProperty(
    fc.property(arb, arbSeed, ([x, perm], seed) => {
      checkGrad(weighted((t) => sin(transpose(t, perm)), seed), [x], {
        label: `transpose [${perm}]`,
      });
    }),
    { numRuns: RUNS },
  );
});

Deno.test("grad of broadcastTo matches central differences for random broadcast shapes", () => {
  const arb = arbBroadcastPair(3).chain(([sa, sb]) =>
    fc.tuple(arbArray(sa, { f64: true }), fc.constant(broadcastResult(sa, sb)))
  );
  checkProperty(
    fc.property(arb, arbSeed, ([x, target], seed) => {
      checkGrad(weighted((t) => broadcastTo(tanh(t), target), seed), [x], {
        label: `broadcastTo [${x.shape}] → [${target}]`,
      });
    }),
    { numRuns: RUNS },
  );
});

Deno.test("grad of slice matches central differences for random (negative, open) bounds", () => {
  const arb = arbShape({ minRank: 1, maxRank: 3, maxDim: 4 }).chain((s) =>
    fc.tuple(
      arbArray(s, { f64: true }),
      fc.tuple(...s.map((d) => fc.integer({ min: -d, max: d }))),
      fc.tuple(...s.map((d) => fc.option(fc.integer({ min: -d, max: d })))),
    )
  );
  checkProperty(
    fc.property(arb, arbSeed, ([x, starts, ends], seed) => {
      checkGrad(weighted((t) => exp(slice(t, starts, ends)), seed), [x], {
        label: `slice ${JSON.stringify([starts, ends])}`,
      });
    }),
    { numRuns: RUNS },
  );
});

Deno.test("grad of pad matches central differences for random widths and fill value", () => {
  const width = fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 }));
  const arb = arbShape(SHAPE).chain((s) =>
    fc.tuple(
      arbArray(s, { f64: true }),
      fc.tuple(...s.map(() => width)),
      arbNumber(-2, 2),
    )
  );
  checkProperty(
    fc.property(arb, arbSeed, ([x, widths, value], seed) => {
      checkGrad(weighted((t) => sin(pad(t, widths, value)), seed), [x], {
        label: `pad ${JSON.stringify(widths)}`,
      });
    }),
    { numRuns: RUNS },
  );
});

Deno.test("grad of concat matches central differences for 1–3 operands along a random axis", () => {
  const arb = arbShape({ minRank: 1, maxRank: 3, maxDim: 3 }).chain((s) =>
    fc.integer({ min: 0, max: s.length - 1 }).chain((axis) =>
      fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 3 }).chain((sizes) =>
        fc.tuple(
          fc.tuple(
            ...sizes.map((d) => arbArray(s.map((e, i) => (i === axis ? d : e)), { f64: true })),
          ),
          fc.constant(axis),
          fc.boolean(),
        )
      )
    )
  );
  checkProperty(
    fc.property(arb, arbSeed, ([parts, axis, negative], seed) => {
      const a = negative ? axis - parts[0].shape.length : axis;
      const op = (...ts: Tensor[]) => {
        const c = concat(ts, a);
        return mul(c, c);
      };
      checkGrad(weighted(op, seed), parts, { label: `concat axis ${a}` });
    }),
    { numRuns: RUNS },
  );
});

/** An i32 index array of `shape` with values in [min, max]. */
function arbIndices(shape: readonly number[], min: number, max: number): fc.Arbitrary<HostArray> {
  return fc.array(fc.integer({ min, max }), {
    minLength: sizeOf(shape),
    maxLength: sizeOf(shape),
  }).map((v) => ({ shape: [...shape], dtype: "i32" as const, data: Int32Array.from(v) }));
}

Deno.test(
  "grad of gather (take) matches central differences, incl. repeated, negative and clamped indices",
  () => {
    const arb = arbShape({ minRank: 1, maxRank: 3, maxDim: 3 }).chain((s) =>
      fc.integer({ min: 0, max: s.length - 1 }).chain((axis) =>
        fc.tuple(
          arbArray(s, { f64: true }),
          arbShape({ maxRank: 2, maxDim: 3 }).chain((is) =>
            arbIndices(is, -s[axis] - 1, s[axis] + 1)
          ),
          fc.constant(axis),
        )
      )
    );
    checkProperty(
      fc.property(arb, arbSeed, ([table, indices, axis], seed) => {
        const op = (t: Tensor, i: Tensor) => tanh(take(t, i, axis));
        checkGrad(weighted(op, seed), [table, indices], {
          argnums: [0],
          label: `take axis ${axis} [${Array.from(indices.data)}]`,
        });
      }),
      { numRuns: RUNS },
    );
  },
);

Deno.test(
  "grad of scatterAdd matches central differences w.r.t. operand and updates (duplicate indices)",
  () => {
    const arb = arbShape({ minRank: 1, maxRank: 3, maxDim: 3 }).chain((s) =>
      fc.integer({ min: 0, max: s.length - 1 }).chain((axis) =>
        arbShape({ maxRank: 2, maxDim: 3 }).chain((is) =>
          fc.tuple(
            arbArray(s, { f64: true }),
            arbIndices(is, -s[axis], s[axis] - 1),
            arbArray([...s.slice(0, axis), ...is, ...s.slice(axis + 1)], { f64: true }),
            fc.constant(axis),
          )
        )
      )
    );
    checkProperty(
      fc.property(arb, arbSeed, ([operand, indices, updates, axis], seed) => {
        const op = (o: Tensor, i: Tensor, u: Tensor) => sin(scatterAdd(o, i, mul(u, u), axis));
        checkGrad(weighted(op, seed), [operand, indices, updates], {
          argnums: [0, 2],
          label: `scatterAdd axis ${axis}`,
        });
      }),
      { numRuns: RUNS },
    );
  },
);
