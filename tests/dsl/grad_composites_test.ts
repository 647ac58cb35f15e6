/**
 * Reverse-mode gradients of composite ops (built from primitives in dsl/ops) and of the `grad` /
 * `valueAndGrad` options (pytree arguments, several argnums, hasAux), against central differences
 * evaluated in f64.
 *
 * Tolerances (as in grad_primitives_test.ts): h = 1e-6 in f64 gives a central-difference error of
 * about h²·|L'''|/6 + ε·|L|/h < 1e-6 for the losses and input domains used here, so rtol 1e-5 /
 * atol 1e-6 only fails on a genuinely wrong gradient. Inputs stay away from kinks (relu at 0,
 * clip at its bounds, min-reduction ties) and from near-singular normalisations (layerNorm rows
 * with tiny variance), where a finite difference is not a derivative.
 */

import {
  add,
  clip,
  crossEntropy,
  gelu,
  grad,
  type HostArray,
  interpretF64,
  layerNorm,
  logSoftmax,
  logsumexp,
  matmul,
  mean,
  min,
  mul,
  relu,
  rmsNorm,
  rsqrt,
  silu,
  softmax,
  square,
  sub,
  tanh,
  type Tensor,
  valueAndGrad,
} from "../../mod.ts";
import { checkProperty, fc } from "../helpers/property.ts";
import { arbArray, arbBroadcastPair, arbShape, assertClose } from "../helpers/arrays.ts";

import {
  arbAwayFromZero,
  arbAxes,
  arbLattice,
  arbSeed,
  assertGradsClose,
  checkGrad,
  leavesOf,
  numericGrads,
  range,
  sizeOf,
  weighted,
} from "../helpers/gradcheck.ts";

const RUNS = 20;

const f64 = (shape: readonly number[], min = -2, max = 2) =>
  arbArray(shape, { min, max, f64: true });

/** Pairwise distinct values (gaps ≥ 0.15) in random order. */
function arbDistinct(shape: readonly number[]): fc.Arbitrary<HostArray> {
  const n = sizeOf(shape);
  return fc.tuple(
    fc.shuffledSubarray(range(n), { minLength: n, maxLength: n }),
    fc.array(fc.double({ min: 0, max: 0.1, noNaN: true }), { minLength: n, maxLength: n }),
  ).map(([perm, jitter]) => ({
    shape: [...shape],
    dtype: "f32" as const,
    data: Float64Array.from(perm, (p, i) => (p - n / 2) * 0.25 + jitter[i]),
  }));
}

function arbIndices(shape: readonly number[], min: number, max: number): fc.Arbitrary<HostArray> {
  return fc.array(fc.integer({ min, max }), {
    minLength: sizeOf(shape),
    maxLength: sizeOf(shape),
  }).map((v) => ({ shape: [...shape], dtype: "i32" as const, data: Int32Array.from(v) }));
}

const SHAPE = { maxRank: 3, maxDim: 3 } as const;
/** A shape of rank ≥ 1 and an axis of it (possibly negative). */
const arbShapeAxis = arbShape({ minRank: 1, maxRank: 3, maxDim: 3 }).chain((s) =>
  fc.tuple(fc.constant(s), fc.integer({ min: -s.length, max: s.length - 1 }))
);

// ---------------------------------------------------------------------------------------------
// Softmax family
// ---------------------------------------------------------------------------------------------

Deno.test("grad of softmax matches central differences along a random axis", () => {
  checkProperty(
    fc.property(
      arbShapeAxis.chain(([s, axis]) => fc.tuple(f64(s, -3, 3), fc.constant(axis))),
      arbSeed,
      ([x, axis], seed) => checkGrad(weighted((t) => softmax(t, axis), seed), [x]),
    ),
    { numRuns: RUNS },
  );
});

Deno.test("grad of logSoftmax matches central differences along a random axis", () => {
  checkProperty(
    fc.property(
      arbShapeAxis.chain(([s, axis]) => fc.tuple(f64(s, -3, 3), fc.constant(axis))),
      arbSeed,
      ([x, axis], seed) => checkGrad(weighted((t) => logSoftmax(t, axis), seed), [x]),
    ),
    { numRuns: RUNS },
  );
});

Deno.test("grad of logsumexp matches central differences over random (multi-)axes", () => {
  const arb = arbShape(SHAPE).chain((s) =>
    fc.tuple(f64(s, -3, 3), fc.option(arbAxes(s.length)), fc.boolean())
  );
  checkProperty(
    fc.property(arb, arbSeed, ([x, axes, keepDims], seed) => {
      const op = (t: Tensor) => logsumexp(t, axes ?? undefined, { keepDims });
      checkGrad(weighted(op, seed), [x], { label: `logsumexp ${JSON.stringify(axes)}` });
    }),
    { numRuns: RUNS },
  );
});

// ---------------------------------------------------------------------------------------------
// Cross-entropy
// ---------------------------------------------------------------------------------------------

/** Logits [...positions, C] with C ≥ 2. */
const arbLogitsShape = fc.tuple(
  arbShape({ maxRank: 2, maxDim: 3 }),
  fc.integer({ min: 2, max: 4 }),
).map(([p, c]) => [...p, c]);

Deno.test("grad of crossEntropy with class-index labels matches central differences", () => {
  const arb = arbLogitsShape.chain((s) =>
    fc.tuple(
      f64(s, -3, 3),
      arbIndices(s.slice(0, -1), 0, s[s.length - 1] - 1),
      fc.constantFrom("mean" as const, "sum" as const),
    )
  );
  checkProperty(
    fc.property(arb, ([logits, labels, reduction]) => {
      // Labels are an i32 argument outside argnums.
      const f = (z: Tensor, y: Tensor) => crossEntropy(z, y, { reduction });
      checkGrad(f, [logits, labels], { argnums: [0], label: `crossEntropy ${reduction}` });
    }),
    { numRuns: RUNS },
  );
});

Deno.test(
  "grad of crossEntropy with probability labels matches central differences (logits and labels)",
  () => {
    const arb = arbLogitsShape.chain((s) => fc.tuple(f64(s, -3, 3), f64(s, 0, 1)));
    checkProperty(
      fc.property(arb, ([logits, rawLabels]) => {
        // Any non-negative labels: crossEntropy is linear in them, so both gradients are defined.
        checkGrad((z: Tensor, y: Tensor) => crossEntropy(z, y), [logits, rawLabels], {
          argnums: [0, 1],
        });
      }),
      { numRuns: RUNS },
    );
  },
);

Deno.test("grad of masked crossEntropy matches central differences (f32 and bool masks)", () => {
  const arb = arbLogitsShape.chain((s) =>
    fc.tuple(
      f64(s, -3, 3),
      arbIndices(s.slice(0, -1), 0, s[s.length - 1] - 1),
      fc.array(fc.boolean(), {
        minLength: sizeOf(s.slice(0, -1)),
        maxLength: sizeOf(s.slice(0, -1)),
      }),
      fc.boolean(),
    )
  );
  checkProperty(
    fc.property(arb, ([logits, labels, bits, asBool]) => {
      const positions = labels.shape;
      const mask: HostArray = asBool
        ? { shape: positions, dtype: "bool", data: Int32Array.from(bits, Number) }
        : { shape: positions, dtype: "f32", data: Float64Array.from(bits, Number) };
      const f = (z: Tensor, y: Tensor) => crossEntropy(z, y, { mask });
      checkGrad(f, [logits, labels], { argnums: [0], label: `masked [${bits}]` });
      // Masked-out positions get exactly zero gradient.
      const g = interpretF64(grad(f), logits, labels) as HostArray;
      const c = logits.shape[logits.shape.length - 1];
      bits.forEach((b, p) => {
        if (!b) { for (let k = 0; k < c; k++) assertClose(scalarAt(g, p * c + k), 0, { atol: 0 }); }
      });
    }),
    { numRuns: RUNS },
  );
});

function scalarAt(x: HostArray, i: number): HostArray {
  return { shape: [], dtype: "f32", data: Float64Array.of(x.data[i]) };
}

// ---------------------------------------------------------------------------------------------
// Normalisations
// ---------------------------------------------------------------------------------------------

/** [...rows, D] with D ≥ 2. */
const arbRowsShape = fc.tuple(
  arbShape({ maxRank: 2, maxDim: 3 }),
  fc.integer({ min: 2, max: 4 }),
).map(([r, d]) => [...r, d]);

Deno.test("grad of layerNorm matches central differences w.r.t. x, gamma and beta", () => {
  // Distinct values keep every row's variance ≥ ~0.005, far from the eps-dominated regime.
  const arb = arbRowsShape.chain((s) => {
    const d = s[s.length - 1];
    return fc.tuple(arbDistinct(s), f64([d]), f64([d]), fc.boolean());
  });
  checkProperty(
    fc.property(arb, arbSeed, ([x, gamma, beta, affine], seed) => {
      if (affine) {
        checkGrad(weighted((t, g, b) => layerNorm(t, g, b), seed), [x, gamma, beta]);
      } else {
        checkGrad(weighted((t) => layerNorm(t), seed), [x], { label: "layerNorm plain" });
      }
    }),
    { numRuns: RUNS },
  );
});

Deno.test("grad of rmsNorm matches central differences w.r.t. x and gamma", () => {
  const arb = arbRowsShape.chain((s) =>
    fc.tuple(arbAwayFromZero(s, 0.3, 2), f64([s[s.length - 1]]))
  );
  checkProperty(
    fc.property(arb, arbSeed, ([x, gamma], seed) => {
      checkGrad(weighted((t, g) => rmsNorm(t, g), seed), [x, gamma]);
    }),
    { numRuns: RUNS },
  );
});

// ---------------------------------------------------------------------------------------------
// Activations and simple composites
// ---------------------------------------------------------------------------------------------

interface UnaryCase {
  name: string;
  op: (x: Tensor) => Tensor;
  arb: (shape: number[]) => fc.Arbitrary<HostArray>;
}

const UNARY: UnaryCase[] = [
  { name: "gelu (tanh approximation)", op: (x) => gelu(x), arb: (s) => f64(s, -3, 3) },
  {
    name: "gelu (exact, erf)",
    op: (x) => gelu(x, { approximate: false }),
    arb: (s) => f64(s, -2.8, 2.8), // erf(x/√2) stays in the reference's |·| < 2 branch
  },
  { name: "silu", op: silu, arb: (s) => f64(s, -3, 3) },
  { name: "relu (away from 0)", op: relu, arb: (s) => arbAwayFromZero(s, 0.05, 2) },
  { name: "square", op: square, arb: (s) => f64(s) },
  { name: "rsqrt", op: rsqrt, arb: (s) => f64(s, 0.3, 3) },
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

Deno.test("grad of mean matches central differences over random axes and keepDims", () => {
  const arb = arbShape(SHAPE).chain((s) =>
    fc.tuple(f64(s), fc.option(arbAxes(s.length)), fc.boolean())
  );
  checkProperty(
    fc.property(arb, arbSeed, ([x, axes, keepDims], seed) => {
      const op = (t: Tensor) => mean(mul(t, t), axes ?? undefined, { keepDims });
      checkGrad(weighted(op, seed), [x], { label: `mean ${JSON.stringify(axes)}` });
    }),
    { numRuns: RUNS },
  );
});

Deno.test("grad of min reduction matches central differences for distinct values", () => {
  const arb = arbShape(SHAPE).chain((s) =>
    fc.tuple(arbDistinct(s), fc.option(arbAxes(s.length)), fc.boolean())
  );
  checkProperty(
    fc.property(arb, arbSeed, ([x, axes, keepDims], seed) => {
      const op = (t: Tensor) => min(t, axes ?? undefined, { keepDims });
      checkGrad(weighted(op, seed), [x], { label: `min ${JSON.stringify(axes)}` });
    }),
    { numRuns: RUNS },
  );
});

Deno.test(
  "grad of clip matches central differences w.r.t. x and broadcast bounds (away from the bounds)",
  () => {
    // x on the lattice k/4 + 1/8, bounds on k/4 with hi = lo + a positive multiple of 1/4: no ties.
    const arb = arbBroadcastPair(3).chain(([sx, sb]) =>
      fc.tuple(
        arbLattice(sx, 0.125),
        arbLattice(sb, 0),
        fc.array(fc.integer({ min: 1, max: 6 }), {
          minLength: sizeOf(sb),
          maxLength: sizeOf(sb),
        }),
      ).map(([x, lo, steps]) => {
        const hi: HostArray = {
          shape: lo.shape,
          dtype: "f32",
          data: Float64Array.from(lo.data, (v, i) => v + 0.25 * steps[i]),
        };
        return [x, lo, hi] as const;
      })
    );
    checkProperty(
      fc.property(arb, arbSeed, ([x, lo, hi], seed) => {
        checkGrad(weighted((t, l, h) => clip(t, l, h), seed), [x, lo, hi], { label: "clip" });
      }),
      { numRuns: RUNS },
    );
  },
);

// ---------------------------------------------------------------------------------------------
// A 2-layer MLP with pytree parameters; argnums, valueAndGrad, hasAux
// ---------------------------------------------------------------------------------------------

interface Params {
  w1: Tensor;
  b1: Tensor;
  w2: Tensor;
  b2: Tensor;
}

/** Mean squared error of tanh(x·w1 + b1)·w2 + b2 against y. */
function mlpLoss(p: Params, x: Tensor, y: Tensor): Tensor {
  const hidden = tanh(add(matmul(x, p.w1), p.b1));
  return mean(square(sub(add(matmul(hidden, p.w2), p.b2), y)));
}

const dim = fc.integer({ min: 1, max: 4 });
const arbMlp = fc.tuple(dim, dim, dim, dim).chain(([b, din, h, dout]) =>
  fc.tuple(
    fc.record({ w1: f64([din, h]), b1: f64([h]), w2: f64([h, dout]), b2: f64([dout]) }),
    f64([b, din]),
    f64([b, dout]),
  )
);

Deno.test(
  "grad of a 2-layer MLP loss matches central differences for pytree params and several argnums",
  () => {
    checkProperty(
      fc.property(arbMlp, fc.constantFrom([0], [0, 1], [2, 0], [0, 1, 2]), ([p, x, y], argnums) => {
        checkGrad(mlpLoss, [p, x, y], { argnums, label: `mlp argnums ${argnums}` });
        // The params gradient is a record with the params' keys and shapes.
        const g = interpretF64(grad(mlpLoss, { argnums }), p, x, y) as unknown[];
        const gp = g[argnums.indexOf(0)] as Record<string, HostArray>;
        if (Object.keys(gp).sort().join() !== "b1,b2,w1,w2") {
          throw new Error(`params gradient keys ${Object.keys(gp)}`);
        }
        for (const k of ["w1", "b1", "w2", "b2"] as const) {
          if (gp[k].shape.join() !== p[k].shape.join()) throw new Error(`shape of ${k}`);
        }
      }),
      { numRuns: RUNS },
    );
  },
);

Deno.test("valueAndGrad returns the loss value and the same gradients as grad", () => {
  checkProperty(
    fc.property(arbMlp, ([p, x, y]) => {
      const [value, grads] = interpretF64(
        valueAndGrad(mlpLoss, { argnums: [0, 1] }),
        p,
        x,
        y,
      ) as [HostArray, unknown[]];
      assertClose(value, interpretF64(mlpLoss, p, x, y) as HostArray, { rtol: 1e-12, atol: 0 });
      const expected = interpretF64(grad(mlpLoss, { argnums: [0, 1] }), p, x, y) as unknown[];
      assertGradsClose(grads, [leavesOf(expected[0]), leavesOf(expected[1])], [0, 1], "vag");
      // The default argnums (0) gives the params pytree itself, not a list.
      const [, g0] = interpretF64(valueAndGrad(mlpLoss), p, x, y) as [HostArray, unknown];
      assertGradsClose([g0], [leavesOf(expected[0])], [0], "vag default argnums");
    }),
    { numRuns: 10 },
  );
});

Deno.test(
  "hasAux: the aux pytree passes through undifferentiated and the gradient is the loss's",
  () => {
    const withAux = (p: Params, x: Tensor, y: Tensor) => {
      const loss = mlpLoss(p, x, y);
      // The aux depends on the params too; it must not contribute to the gradient.
      return [loss, { hidden: tanh(matmul(x, p.w1)), twice: mul(loss, 2) }];
    };
    checkProperty(
      fc.property(arbMlp, ([p, x, y]) => {
        const [[value, aux], grads] = interpretF64(
          valueAndGrad(withAux, { argnums: [0, 1], hasAux: true }),
          p,
          x,
          y,
        ) as [[HostArray, { hidden: HostArray; twice: HostArray }], unknown[]];
        const expectedValue = interpretF64(mlpLoss, p, x, y) as HostArray;
        assertClose(value, expectedValue, { rtol: 1e-12, atol: 0 });
        assertClose(aux.twice, 2 * expectedValue.data[0], { rtol: 1e-12, atol: 0 });
        assertClose(
          aux.hidden,
          interpretF64((w: Tensor, xx: Tensor) => tanh(matmul(xx, w)), p.w1, x) as HostArray,
          { rtol: 1e-12, atol: 0 },
        );
        const numeric = numericGrads(mlpLoss, [p, x, y], [0, 1]);
        assertGradsClose(grads, numeric, [0, 1], "valueAndGrad hasAux");
        const g = interpretF64(grad(withAux, { argnums: [0, 1], hasAux: true }), p, x, y);
        assertGradsClose(g as unknown[], numeric, [0, 1], "grad hasAux");
      }),
      { numRuns: 10 },
    );
  },
);
