/**
 * Every public op and every primitive, compiled with `jit` and run on WebGPU, against the CPU
 * reference `interpret` on random inputs (fast-check, fixed seed; few runs, since every new shape
 * compiles new kernels), with broadcasting, IEEE edge values (NaN, ±Inf, ±0, huge) where the
 * reference defines them, every dtype conversion and 32-bit integer wrap-around.
 *
 * Tolerances, by op family (see jit_helpers.ts):
 * - bit-exact: add sub mul neg abs square maximum minimum relu sign clip where, comparisons,
 *   logical ops, casts, views (reshape transpose broadcast slice pad concat stack), gather/take,
 *   scatterAdd (same accumulation order as the reference), oneHot, arange/iota, full, max/min/
 *   argmax reductions, and every i32/bool result. Exceptions: a subnormal f32 result may be
 *   flushed to ±0 (WGSL permits it; inputs hold no subnormals), and a fused x·y + z may be
 *   contracted into one FMA by a GPU driver (checked to ULPs).
 * - few ULPs (rtol 1e-6): div, reciprocal, sqrt, rsqrt.
 * - transcendental (rtol 1e-4, atol 1e-5): exp log tanh sigmoid erf sin cos pow gelu silu and the
 *   NN composites built on them.
 * - accumulation (rtol 1e-5, atol 1e-5): sum, mean, matmul in f32.
 *
 * The op functions are called through a recording proxy of mod.ts, and the traced programs' nodes
 * are recorded, so the last tests check that every op of the API and every primitive ran here.
 */

import assert from "node:assert/strict";
import * as dsl from "../../mod.ts";
import { array, type HostArray, jit, type Tensor } from "../../mod.ts";
import { bind } from "../../dsl/trace.ts";
import * as lax from "../../dsl/lax.ts";
import * as creationOps from "../../dsl/ops/creation.ts";
import * as elementwiseOps from "../../dsl/ops/elementwise.ts";
import * as linalgOps from "../../dsl/ops/linalg.ts";
import * as nnOps from "../../dsl/ops/nn.ts";
import * as reduceOps from "../../dsl/ops/reduce.ts";
import * as shapeOps from "../../dsl/ops/shape.ts";

/** The numpy-style op modules: every function they export must be tested below. */
const OP_MODULES = [creationOps, elementwiseOps, linalgOps, nnOps, reduceOps, shapeOps];
import { arbBroadcastPair, arbShape } from "../helpers/arrays.ts";
import {
  ACCUMULATE,
  arbAxes,
  arbBool,
  arbF32,
  arbF32Special,
  arbI32,
  assertTreeMatches,
  checkAsyncProperty,
  EXACT,
  expectJitMatches,
  fc,
  seeded,
  seenPrimitives,
  type Tol,
  TRANSCENDENTAL,
  ULPS,
} from "./jit_helpers.ts";

/** mod.ts, recording which names the tests call. */
const used = new Set<string>();
const ops = new Proxy(dsl, {
  get(target, key) {
    if (typeof key === "string") used.add(key);
    return Reflect.get(target, key);
  },
}) as typeof dsl;

const RUNS = 8;
const SHAPE = arbShape({ maxRank: 3, maxDim: 4 });
const f32 = (data: Parameters<typeof array>[0], shape?: number[]) =>
  array(data, { dtype: "f32", shape });
const i32 = (data: Parameters<typeof array>[0], shape?: number[]) =>
  array(data, { dtype: "i32", shape });

/** Every IEEE edge value (and some ordinary ones) in one f32 vector. */
const EDGES = f32([
  NaN,
  Infinity,
  -Infinity,
  0,
  -0,
  1,
  -1,
  0.5,
  -2.5,
  3,
  15.5,
  -16,
  88,
  -88,
  100,
  -100,
  1e30,
  -1e30,
  1e-30,
]);

// ---------------------------------------------------------------------------------------------
// Unary elementwise ops (f32), on random shapes with edge values mixed in, and on EDGES

interface UnaryCase {
  name: string;
  op: (x: Tensor) => Tensor;
  tol: Tol;
  /** Input values; defaults to arbF32Special. */
  arb?: (shape: number[]) => fc.Arbitrary<HostArray>;
}

/** sin/cos: Vulkan bounds only the absolute error within [−π, π]; stay in a moderate range. */
const moderate = (shape: number[]) => arbF32Special(shape, -10, 10).map(noHuge);

function noHuge(x: HostArray): HostArray {
  return { ...x, data: x.data.map((v) => (Math.abs(v) > 100 ? Math.sign(v) * 3 : v)) };
}

const UNARY: UnaryCase[] = [
  { name: "neg", op: (x) => ops.neg(x), tol: EXACT },
  { name: "abs", op: (x) => ops.abs(x), tol: EXACT },
  { name: "square", op: (x) => ops.square(x), tol: EXACT },
  { name: "relu", op: (x) => ops.relu(x), tol: EXACT },
  { name: "sign", op: (x) => ops.sign(x), tol: EXACT },
  { name: "stopGradient", op: (x) => ops.stopGradient(x), tol: EXACT },
  // The primitive under `checkpoint` (no op of its own): an identity the compiler keeps.
  { name: "checkpointBarrier", op: (x) => bind("checkpointBarrier", [x]), tol: EXACT },
  { name: "isFinite", op: (x) => ops.isFinite(x), tol: EXACT },
  { name: "logicalNot", op: (x) => ops.logicalNot(x), tol: EXACT },
  { name: "exp", op: (x) => ops.exp(x), tol: TRANSCENDENTAL },
  { name: "log", op: (x) => ops.log(x), tol: TRANSCENDENTAL },
  { name: "sqrt", op: (x) => ops.sqrt(x), tol: ULPS },
  { name: "rsqrt", op: (x) => ops.rsqrt(x), tol: ULPS },
  { name: "reciprocal", op: (x) => ops.reciprocal(x), tol: ULPS },
  { name: "tanh", op: (x) => ops.tanh(x), tol: TRANSCENDENTAL },
  { name: "sigmoid", op: (x) => ops.sigmoid(x), tol: TRANSCENDENTAL },
  { name: "erf", op: (x) => ops.erf(x), tol: TRANSCENDENTAL },
  { name: "sin", op: (x) => ops.sin(x), tol: TRANSCENDENTAL, arb: moderate },
  { name: "cos", op: (x) => ops.cos(x), tol: TRANSCENDENTAL, arb: moderate },
  { name: "gelu (tanh)", op: (x) => ops.gelu(x), tol: TRANSCENDENTAL },
  { name: "gelu (erf)", op: (x) => ops.gelu(x, { approximate: false }), tol: TRANSCENDENTAL },
  { name: "silu", op: (x) => ops.silu(x), tol: TRANSCENDENTAL },
];

for (const c of UNARY) {
  Deno.test(`jit ${c.name} matches interpret on random shapes with edge values`, async () => {
    const arb = c.arb ?? ((s: number[]) => arbF32Special(s));
    await checkAsyncProperty(
      fc.asyncProperty(SHAPE.chain(arb), async (x) => {
        await expectJitMatches(c.op, [x], c.tol, c.name);
      }),
      { numRuns: RUNS },
    );
    const edges = c.arb === moderate ? noHuge(EDGES) : EDGES;
    await expectJitMatches(c.op, [edges], c.tol, `${c.name} of edge values`);
  });
}

Deno.test("jit edge cases the reference pins: log(0), sqrt(−1), 1/0, tanh(±100), sigmoid(±100)", async () => {
  const x = f32([0, -1, 100, -100, -0]);
  const f = (t: Tensor) => [
    ops.log(t),
    ops.sqrt(t),
    ops.div(1, t),
    ops.tanh(t),
    ops.sigmoid(t),
    ops.maximum(t, f32([NaN, 0, NaN, 1, 0])),
  ];
  const out = await expectJitMatches(
    f,
    [x],
    (i) => (i === 0 || i === 3 || i === 4 ? TRANSCENDENTAL : i === 5 ? EXACT : ULPS),
    "edges",
  ) as HostArray[];
  // Spelled out, so a reference regression cannot hide a device one.
  const [lg, sq, inv, th, sg, mx] = out.map((a) => Array.from(a.data));
  if (lg[0] !== -Infinity || !Number.isNaN(lg[1])) throw new Error(`log: ${lg}`);
  if (!Number.isNaN(sq[1]) || sq[0] !== 0) throw new Error(`sqrt: ${sq}`);
  if (inv[0] !== Infinity || inv[4] !== -Infinity) throw new Error(`1/x: ${inv}`);
  if (th[2] !== 1 || th[3] !== -1) throw new Error(`tanh: ${th}`);
  if (sg[2] !== 1 || !(sg[3] >= 0 && sg[3] < 1e-30)) throw new Error(`sigmoid: ${sg}`);
  if (!Number.isNaN(mx[0]) || !Number.isNaN(mx[2]) || mx[3] !== 1) throw new Error(`max: ${mx}`);
});

Deno.test("jit tanh keeps its relative precision near zero (and gelu, which is built on it)", async () => {
  // The driver's tanh, (e²ˣ − 1)/(e²ˣ + 1), read tanh(−3.9e-35) as −3e-8: within TRANSCENDENTAL's
  // atol, but a branch on it (maximum(x, tanh(x)·c)) then took the other side and a gradient
  // differed by 0.1 (random-DAG fuzzer, FC_SEED=777).
  const tiny = [1e-35, 1e-20, 1e-10, 1e-6, 1e-4, 1e-3, 0.01, 0.1, 0.124, 0.126, 0.3];
  const x = f32([...tiny, ...tiny.map((v) => -v)]);
  const out = await expectJitMatches(
    (t: Tensor) => [ops.tanh(t), ops.gelu(t)],
    [x],
    { rtol: 2e-6, atol: 0 },
    "tanh near 0",
  ) as HostArray[];
  const th = Array.from(out[0].data);
  if (th[0] !== Math.fround(1e-35) || th[tiny.length] !== -Math.fround(1e-35)) {
    throw new Error(`tanh(±1e-35): ${th[0]}, ${th[tiny.length]}`);
  }
});

// ---------------------------------------------------------------------------------------------
// Binary elementwise ops with broadcasting

interface BinaryCase {
  name: string;
  op: (a: Tensor, b: Tensor) => Tensor;
  tol: Tol;
  arb?: (shape: number[]) => fc.Arbitrary<HostArray>;
}

const BINARY: BinaryCase[] = [
  { name: "add", op: (a, b) => ops.add(a, b), tol: EXACT },
  { name: "sub", op: (a, b) => ops.sub(a, b), tol: EXACT },
  { name: "mul", op: (a, b) => ops.mul(a, b), tol: EXACT },
  { name: "div", op: (a, b) => ops.div(a, b), tol: ULPS },
  { name: "pow", op: (a, b) => ops.pow(a, b), tol: TRANSCENDENTAL },
  { name: "maximum", op: (a, b) => ops.maximum(a, b), tol: EXACT },
  { name: "minimum", op: (a, b) => ops.minimum(a, b), tol: EXACT },
  { name: "less", op: (a, b) => ops.less(a, b), tol: EXACT },
  { name: "greater", op: (a, b) => ops.greater(a, b), tol: EXACT },
  { name: "equal", op: (a, b) => ops.equal(a, b), tol: EXACT },
  { name: "notEqual", op: (a, b) => ops.notEqual(a, b), tol: EXACT },
  { name: "lessEqual", op: (a, b) => ops.lessEqual(a, b), tol: EXACT },
  { name: "greaterEqual", op: (a, b) => ops.greaterEqual(a, b), tol: EXACT },
  { name: "logicalAnd", op: (a, b) => ops.logicalAnd(a, b), tol: EXACT },
  { name: "logicalOr", op: (a, b) => ops.logicalOr(a, b), tol: EXACT },
];

/** Small values on a coarse grid (so equal/less see ties), with edge values mixed in. */
const tiesAndEdges = (shape: number[]) => {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = fc.oneof(
    fc.integer({ min: -4, max: 4 }).map((k) => k / 2),
    fc.constantFrom(NaN, Infinity, -Infinity, -0, 1e30),
  );
  return fc.array(v, { minLength: n, maxLength: n }).map((d) => f32(d, shape));
};

for (const c of BINARY) {
  Deno.test(`jit ${c.name} matches interpret with broadcasting and edge values`, async () => {
    await checkAsyncProperty(
      fc.asyncProperty(
        arbBroadcastPair(3).chain(([sa, sb]) =>
          fc.tuple(
            fc.oneof(arbF32Special(sa), tiesAndEdges(sa)),
            fc.oneof(arbF32Special(sb), tiesAndEdges(sb)),
          )
        ),
        async ([a, b]) => {
          await expectJitMatches(c.op, [a, b], c.tol, c.name);
        },
      ),
      { numRuns: RUNS },
    );
  });
}

Deno.test("jit binary ops over every pair of edge values", async () => {
  // a: EDGES as a column, b: EDGES as a row → every combination once.
  const n = EDGES.data.length;
  const a = { ...EDGES, shape: [n, 1] };
  const b = { ...EDGES, shape: [1, n] };
  for (const c of BINARY) await expectJitMatches(c.op, [a, b], c.tol, `${c.name} of edges`);
});

Deno.test("jit where / clip broadcast condition, branches and bounds", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      arbBroadcastPair(3).chain(([sa, sb]) =>
        fc.tuple(
          fc.oneof(arbBool(sa), arbF32Special(sa)),
          arbF32Special(sb),
          arbF32Special(sa),
          arbF32(sb),
        )
      ),
      async ([c, x, y, lo]) => {
        await expectJitMatches((c, x, y) => ops.where(c, x, y), [c, x, y], EXACT, "where");
        await expectJitMatches((x, y) => ops.where(ops.less(x, 0), x, y), [x, y], EXACT, "where<");
        await expectJitMatches(
          (x, lo) => ops.clip(x, lo, ops.add(lo, 1)),
          [x, lo],
          EXACT,
          "clip",
        );
        await expectJitMatches((x) => ops.clip(x, -0.5, 0.5), [x], EXACT, "clip literals");
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("jit with plain-number and boolean arguments and literal operands", async () => {
  const x = f32([[1, -2, NaN], [0.5, Infinity, -0]]);
  await expectJitMatches((t, s) => ops.add(ops.mul(t, s), 0.25), [x, 2.5], EXACT, "number arg");
  await expectJitMatches((t, b) => ops.where(b, t, -1), [x, true], EXACT, "bool arg true");
  await expectJitMatches((t, b) => ops.where(b, t, -1), [x, false], EXACT, "bool arg false");
  await expectJitMatches((t) => ops.sub(1, t), [x], EXACT, "literal on the left");
  await expectJitMatches((t) => ops.pow(t, 2), [x], TRANSCENDENTAL, "pow literal");
});

// ---------------------------------------------------------------------------------------------
// Integer and bool arithmetic: 32-bit wrap-around, promotion, bool outputs

Deno.test("jit i32 arithmetic wraps around like 32-bit integers", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      arbBroadcastPair(2).chain(([sa, sb]) => fc.tuple(arbI32(sa), arbI32(sb))),
      async ([a, b]) => {
        const f = (a: Tensor, b: Tensor) => [
          ops.add(a, b),
          ops.sub(a, b),
          ops.mul(a, b),
          ops.neg(a),
          ops.abs(a),
          ops.square(b),
          ops.maximum(a, b),
          ops.minimum(a, b),
          ops.sign(a),
          ops.relu(b),
          ops.add(a, 7),
          ops.mul(b, -3),
          ops.clip(a, -5, 1000),
        ];
        await expectJitMatches(f, [a, b], EXACT, "i32 arithmetic");
        // Comparisons, logical ops and where on i32; bool outputs.
        const g = (a: Tensor, b: Tensor) => [
          ops.less(a, b),
          ops.greater(a, b),
          ops.equal(a, b),
          ops.notEqual(a, b),
          ops.lessEqual(a, b),
          ops.greaterEqual(a, b),
          ops.logicalAnd(a, b),
          ops.logicalOr(a, b),
          ops.logicalNot(a),
          ops.where(a, a, b),
        ];
        await expectJitMatches(g, [a, b], EXACT, "i32 comparisons");
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("jit i32 edge values: INT_MIN negation, overflow of +, −, ×", async () => {
  const edges = [-(2 ** 31), 2 ** 31 - 1, -1, 0, 1, 65536, -65537, 46341];
  const n = edges.length;
  const a = i32(edges, [n, 1]);
  const b = i32(edges, [1, n]);
  await expectJitMatches(
    (a, b) => [ops.add(a, b), ops.sub(a, b), ops.mul(a, b), ops.neg(b), ops.abs(b)],
    [a, b],
    EXACT,
    "i32 edges",
  );
  // i32 ÷ i32 is true division in f32; i32 pow gives f32.
  await expectJitMatches((a, b) => ops.div(a, b), [a, b], ULPS, "i32 div");
  await expectJitMatches((a) => ops.pow(a, 2), [a], TRANSCENDENTAL, "i32 pow");
});

Deno.test("jit bool operands: arithmetic promotes to i32, logic stays bool", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      arbBroadcastPair(3).chain(([sa, sb]) => fc.tuple(arbBool(sa), arbBool(sb))),
      async ([a, b]) => {
        const f = (a: Tensor, b: Tensor) => [
          ops.add(a, b),
          ops.mul(a, b),
          ops.sub(a, b),
          ops.logicalAnd(a, b),
          ops.logicalOr(a, b),
          ops.logicalNot(a),
          ops.equal(a, b),
          ops.less(a, b),
          ops.greaterEqual(a, b),
          ops.where(a, b, false),
          ops.sum(a),
        ];
        await expectJitMatches(f, [a, b], EXACT, "bool");
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("jit promotion: i32 + f32, i32 + fractional literal, mixed comparisons", async () => {
  const a = i32([[3, -7, 2 ** 24 + 1], [0, 1, -(2 ** 31)]]);
  const b = f32([0.5, NaN, -Infinity]);
  await expectJitMatches(
    (a, b) => [ops.add(a, b), ops.add(a, 0.5), ops.less(a, b), ops.maximum(a, b), ops.mul(a, b)],
    [a, b],
    EXACT,
    "promotion",
  );
});

// ---------------------------------------------------------------------------------------------
// Casts between every pair of dtypes

const CAST_F32 = f32([
  NaN,
  Infinity,
  -Infinity,
  0,
  -0,
  0.4,
  -0.6,
  1.7,
  -1.7,
  2.5,
  -2.5,
  1e10,
  -1e10,
  2147483520,
  2147483648,
  -2147483648,
  -2147483904,
  16777217,
  1e-30,
  3e38,
]);
const CAST_I32 = i32([0, 1, -1, 2 ** 31 - 1, -(2 ** 31), 16777217, -16777217, 123456789]);
const CAST_BOOL = array([true, false, true, true, false]);

Deno.test("jit cast between f32, i32 and bool (saturation, NaN → 0, rounding, truthiness)", async () => {
  const castPrim = (dtype: "f32" | "i32" | "bool") => (x: Tensor) => bind("cast", [x], { dtype });
  for (const x of [CAST_F32, CAST_I32, CAST_BOOL]) {
    for (const dtype of ["f32", "i32", "bool"] as const) {
      await expectJitMatches((t) => ops.cast(t, dtype), [x], EXACT, `cast ${x.dtype}→${dtype}`);
      // The primitive itself, also for the identity casts the public op elides.
      await expectJitMatches(castPrim(dtype), [x], EXACT, `cast prim ${x.dtype}→${dtype}`);
    }
  }
  const out = await jit((t: Tensor) => ops.cast(t, "i32"))(CAST_F32) as HostArray;
  const want = [
    0,
    2147483647,
    -2147483648,
    0,
    0,
    0,
    0,
    1,
    -1,
    2,
    -2,
    2147483647,
    -2147483648,
    2147483520,
    2147483647,
    -2147483648,
    -2147483648,
    16777216,
    0,
    2147483647,
  ];
  assertTreeMatches(out, i32(want), EXACT, "f32→i32 spelled out");
});

Deno.test("jit cast on random values, fused into arithmetic", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      SHAPE.chain((s) => fc.tuple(arbF32Special(s, -1e4, 1e4), arbI32(s))),
      async ([x, k]) => {
        const f = (x: Tensor, k: Tensor) => [
          ops.cast(x, "i32"),
          ops.add(ops.cast(x, "i32"), k),
          ops.mul(ops.cast(k, "f32"), x),
          ops.cast(ops.cast(x, "bool"), "f32"),
          ops.cast(k, "bool"),
          ops.cast(ops.less(x, 0), "i32"),
        ];
        await expectJitMatches(f, [x, k], EXACT, "casts");
      },
    ),
    { numRuns: RUNS },
  );
});

// ---------------------------------------------------------------------------------------------
// Reductions

Deno.test("jit sum / mean / max / min over random axes with keepDims (f32)", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      arbShape({ minRank: 1, maxRank: 4, maxDim: 4 }).chain((s) =>
        fc.tuple(fc.oneof(arbF32(s), arbF32Special(s)), arbAxes(s.length), fc.boolean())
      ),
      async ([x, axes, keepDims]) => {
        const o = { keepDims };
        await expectJitMatches((t) => ops.sum(t, axes, o), [x], ACCUMULATE, `sum ${axes}`);
        await expectJitMatches((t) => ops.mean(t, axes, o), [x], ACCUMULATE, `mean ${axes}`);
        await expectJitMatches((t) => ops.max(t, axes, o), [x], EXACT, `max ${axes}`);
        await expectJitMatches((t) => ops.min(t, axes, o), [x], EXACT, `min ${axes}`);
        await expectJitMatches((t) => ops.sum(t), [x], ACCUMULATE, "sum all");
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("jit logsumexp over random axes, with −Inf rows, +Inf and large values", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      arbShape({ minRank: 1, maxRank: 3, maxDim: 4 }).chain((s) =>
        fc.tuple(fc.oneof(arbF32(s, -50, 50), arbF32Special(s)), arbAxes(s.length), fc.boolean())
      ),
      async ([x, axes, keepDims]) => {
        await expectJitMatches(
          (t) => ops.logsumexp(t, axes, { keepDims }),
          [x],
          TRANSCENDENTAL,
          `logsumexp ${axes}`,
        );
      },
    ),
    { numRuns: RUNS },
  );
  const rows = f32([[-Infinity, -Infinity], [Infinity, 1], [-Infinity, 0], [1000, 1000]]);
  await expectJitMatches((t) => ops.logsumexp(t, -1), [rows], TRANSCENDENTAL, "lse rows");
});

Deno.test("jit argmax: first maximum, NaN counts as the maximum, random axis, keepDims", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      arbShape({ minRank: 1, maxRank: 3, maxDim: 4 }).chain((s) =>
        fc.tuple(
          fc.oneof(tiesAndEdges(s), arbF32(s)),
          arbI32(s, -3, 3),
          fc.integer({ min: -s.length, max: s.length - 1 }),
          fc.boolean(),
        )
      ),
      async ([x, k, axis, keepDims]) => {
        await expectJitMatches((t) => ops.argmax(t, axis, { keepDims }), [x], EXACT, "argmax");
        await expectJitMatches((t) => ops.argmax(t, axis), [k], EXACT, "argmax i32");
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("jit i32 reductions wrap around; bool sums count", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      arbShape({ minRank: 1, maxRank: 3, maxDim: 4 }).chain((s) =>
        fc.tuple(arbI32(s), arbBool(s), arbAxes(s.length))
      ),
      async ([k, b, axes]) => {
        const f = (k: Tensor, b: Tensor) => [
          ops.sum(k, axes),
          ops.max(k, axes),
          ops.min(k, axes, { keepDims: true }),
          ops.sum(b, axes),
        ];
        await expectJitMatches(f, [k, b], EXACT, "i32 reductions");
        // The mean sums in f32 (values up to 2³¹): within R·u·max|k| of the exact mean, which the
        // reference computes (it accumulates in f64).
        const r = axes.reduce((p, a) => p * k.shape[a < 0 ? a + k.shape.length : a], 1);
        const big = Math.max(0, ...Array.from(k.data, Math.abs));
        const tol = { rtol: 1e-6, atol: (r + 1) * 2 ** -24 * big };
        await expectJitMatches((k) => ops.mean(k, axes), [k], tol, "i32 mean");
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("jit reductions of a fused prologue and with an epilogue", async () => {
  const x = dsl.array(Array.from({ length: 60 }, (_, i) => Math.sin(i) * 3), { shape: [3, 4, 5] });
  await expectJitMatches(
    (t) => ops.add(ops.sum(ops.exp(ops.mul(t, 0.5)), [0, 2]), 1),
    [x],
    TRANSCENDENTAL,
    "prologue+epilogue",
  );
  await expectJitMatches(
    (t) => ops.sqrt(ops.max(ops.abs(t), -1)),
    [x],
    ULPS,
    "max prologue, sqrt epilogue",
  );
});

// ---------------------------------------------------------------------------------------------
// matmul (numpy semantics) and dot

/** Compatible random matmul operand shapes: 1-D promotion and broadcast batch dims. */
const arbMatmulShapes = fc.record({
  m: fc.integer({ min: 1, max: 9 }),
  k: fc.integer({ min: 1, max: 7 }),
  n: fc.integer({ min: 1, max: 9 }),
  batchA: fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 2 }),
  ones: fc.array(fc.boolean(), { minLength: 2, maxLength: 2 }),
  dropB: fc.integer({ min: 0, max: 2 }),
  vecA: fc.boolean(),
  vecB: fc.boolean(),
}).map(({ m, k, n, batchA, ones, dropB, vecA, vecB }) => {
  const batchB = batchA.slice(Math.min(dropB, batchA.length)).map((d, i) => (ones[i] ? 1 : d));
  const a = vecA ? [k] : [...batchA, m, k];
  const b = vecB ? [k] : [...batchB, k, n];
  return [a, b] as [number[], number[]];
});

Deno.test("jit matmul: 1-D promotion, broadcast batches, tile edges (f32)", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      arbMatmulShapes.chain(([sa, sb]) => fc.tuple(arbF32(sa), arbF32(sb))),
      async ([a, b]) => {
        await expectJitMatches((a, b) => ops.matmul(a, b), [a, b], ACCUMULATE, "matmul");
      },
    ),
    { numRuns: 8 },
  );
  const v = f32([1, 2, 3]);
  await expectJitMatches((a, b) => ops.dot(a, b), [v, f32([4, 5, -6])], ACCUMULATE, "dot");
});

Deno.test("jit matmul of transposed views, with an epilogue, and NaN/Inf operands", async () => {
  const a = dsl.array(Array.from({ length: 35 }, (_, i) => (i % 7) - 3), { shape: [5, 7] });
  const b = dsl.array(Array.from({ length: 42 }, (_, i) => (i % 5) * 0.5), { shape: [6, 7] });
  await expectJitMatches(
    (a, b) => ops.tanh(ops.matmul(a, ops.transpose(b))),
    [a, b],
    TRANSCENDENTAL,
    "a·bᵀ then tanh",
  );
  await expectJitMatches(
    (a) => ops.matmul(ops.transpose(a), a),
    [a],
    ACCUMULATE,
    "aᵀ·a",
  );
  const s = f32([[1, NaN], [Infinity, 2]]);
  await expectJitMatches((a) => ops.matmul(a, a), [s], ACCUMULATE, "NaN/Inf matmul");
});

Deno.test("jit i32 matmul wraps around; i32 × f32 promotes", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      arbMatmulShapes.chain(([sa, sb]) => fc.tuple(arbI32(sa), arbI32(sb), arbF32(sb))),
      async ([a, b, bf]) => {
        await expectJitMatches((a, b) => ops.matmul(a, b), [a, b], EXACT, "i32 matmul");
        await expectJitMatches(
          (a, b) => ops.matmul(a, b),
          [{ ...a, data: a.data.map((v) => v % 100) }, bf],
          ACCUMULATE,
          "i32×f32 matmul",
        );
      },
    ),
    { numRuns: 4 },
  );
});

// ---------------------------------------------------------------------------------------------
// Shape ops (views): bit-exact

Deno.test("jit reshape / transpose / broadcastTo / expandDims / squeeze", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      arbShape({ minRank: 1, maxRank: 4, maxDim: 3 }).chain((s) =>
        fc.tuple(
          arbF32Special(s),
          fc.shuffledSubarray(s.map((_, i) => i), { minLength: s.length }),
          fc.integer({ min: 0, max: s.length }),
          fc.integer({ min: 1, max: 3 }),
        )
      ),
      async ([x, perm, at, lead]) => {
        const n = x.data.length;
        const f = (t: Tensor) => [
          ops.reshape(t, [n]),
          ops.reshape(t, [-1, x.shape[x.shape.length - 1]]),
          ops.transpose(t, perm),
          ops.transpose(t),
          ops.reshape(ops.transpose(t, perm), [n]),
          ops.broadcastTo(t, [lead, ...x.shape.map((d) => d)]),
          ops.expandDims(t, at),
          ops.squeeze(ops.expandDims(t, [0, -1])),
          ops.mul(ops.transpose(t, perm), 2),
        ];
        await expectJitMatches(f, [x], EXACT, "views");
      },
    ),
    { numRuns: RUNS },
  );
  const ones = f32([[[1], [2]]]);
  await expectJitMatches(
    (t) => [ops.squeeze(t), ops.squeeze(t, -1), ops.broadcastTo(t, [2, 3, 2, 4])],
    [ones],
    EXACT,
    "size-1 axes",
  );
});

Deno.test("jit slice with random (negative, clamped, empty) bounds", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      arbShape({ minRank: 1, maxRank: 3, maxDim: 5 }).chain((s) =>
        fc.tuple(
          arbF32Special(s),
          fc.array(fc.integer({ min: -6, max: 6 }), { minLength: s.length, maxLength: s.length }),
          fc.array(fc.option(fc.integer({ min: -6, max: 6 })), {
            minLength: s.length,
            maxLength: s.length,
          }),
        )
      ),
      async ([x, starts, ends]) => {
        await expectJitMatches(
          (t) => [ops.slice(t, starts, ends), ops.neg(ops.slice(t, starts, ends))],
          [x],
          EXACT,
          `slice ${starts} ${ends}`,
        );
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("jit pad with random widths and fill values (incl. NaN and −Inf)", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      arbShape({ minRank: 1, maxRank: 3, maxDim: 3 }).chain((s) =>
        fc.tuple(
          arbF32Special(s),
          fc.array(fc.tuple(fc.nat(2), fc.nat(2)), { minLength: 1, maxLength: s.length }),
          fc.constantFrom(0, -1.5, NaN, -Infinity, 7),
          arbI32(s, -5, 5),
        )
      ),
      async ([x, widths, value, k]) => {
        await expectJitMatches(
          (t) => [ops.pad(t, widths, value), ops.exp(ops.pad(t, widths))],
          [x],
          (i) => (i === 0 ? EXACT : TRANSCENDENTAL),
          `pad ${JSON.stringify(widths)} ${value}`,
        );
        const v = Number.isFinite(value) ? value : 3;
        await expectJitMatches((t) => ops.pad(t, widths, v), [k], EXACT, "pad i32");
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("jit concat / stack: 1–3 operands, random axis, mixed dtypes", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      arbShape({ minRank: 1, maxRank: 3, maxDim: 3 }).chain((s) =>
        fc.tuple(
          fc.integer({ min: 0, max: s.length - 1 }),
          fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 3 }),
        ).chain(([axis, sizes]) =>
          fc.tuple(
            fc.constant(axis),
            fc.tuple(
              ...sizes.map((d) => arbF32Special(s.map((x, i) => (i === axis ? d : x)))),
            ),
            arbI32(s, -9, 9),
            arbF32(s),
          )
        )
      ),
      async ([axis, xs, k, y]) => {
        await expectJitMatches(
          (...ts: Tensor[]) => ops.concat(ts, axis),
          xs,
          EXACT,
          `concat axis ${axis}`,
        );
        await expectJitMatches(
          (k, y) => [ops.concat([k, y, k], axis - k.shape.length), ops.stack([y, k], -1)],
          [k, y],
          EXACT,
          "concat mixed dtypes / stack",
        );
        await expectJitMatches((k, y) => ops.stack([k, y, k]), [k, y], EXACT, "stack axis 0");
      },
    ),
    { numRuns: RUNS },
  );
});

// ---------------------------------------------------------------------------------------------
// Indexing: take (gather), scatterAdd, oneHot

Deno.test("jit take: 1-D / 2-D indices, negative and out-of-range indices, any axis", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      arbShape({ minRank: 1, maxRank: 3, maxDim: 4 }).chain((s) =>
        fc.tuple(
          arbF32Special(s),
          fc.integer({ min: -s.length, max: s.length - 1 }),
          arbShape({ minRank: 0, maxRank: 2, maxDim: 3 }),
        ).chain(([t, axis, is]) =>
          fc.tuple(
            fc.constant(t),
            fc.constant(axis),
            arbI32(is, -8, 8),
          )
        )
      ),
      async ([table, axis, idx]) => {
        await expectJitMatches((t, i) => ops.take(t, i, axis), [table, idx], EXACT, "take");
        await expectJitMatches(
          (t, i) => ops.mul(ops.take(ops.exp(t), i, axis), 2),
          [table, idx],
          TRANSCENDENTAL,
          "take of a computed table",
        );
      },
    ),
    { numRuns: 8 },
  );
  const table = f32([[1, 2], [3, 4], [5, 6]]);
  await expectJitMatches((t) => ops.take(t, [2, -1, 0, 7, -9]), [table], EXACT, "take literal");
  await expectJitMatches((t) => ops.take(t, 1), [table], EXACT, "take scalar index");
  await expectJitMatches(
    (t, i) => ops.take(t, i, 1),
    [i32([[1, 2, 3], [4, 5, 6]]), i32([[-1, 0], [5, 1]])],
    EXACT,
    "take i32 table, 2-D indices, axis 1",
  );
});

Deno.test("jit scatterAdd: duplicate and negative indices accumulate in order, any axis", async () => {
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
            arbI32(is, -s[axis] - 2, s[axis] + 1),
            arbF32([...s.slice(0, axis), ...is, ...s.slice(axis + 1)], -100, 100),
          )
        )
      ),
      async ([operand, axis, idx, upd]) => {
        await expectJitMatches(
          (o, i, u) => ops.scatterAdd(o, i, u, axis),
          [operand, idx, upd],
          EXACT,
          `scatterAdd axis ${axis}`,
        );
        await expectJitMatches(
          (o, i, u) => ops.mul(ops.scatterAdd(ops.exp(o), i, ops.neg(u), axis), 2),
          [operand, idx, upd],
          TRANSCENDENTAL,
          "scatterAdd of computed operands",
        );
      },
    ),
    { numRuns: 8 },
  );
  await expectJitMatches(
    (o, i, u) => ops.scatterAdd(o, i, u),
    [
      f32([[0, 0], [1, 1], [2, 2]]),
      i32([0, 2, 0, -1, 0]),
      f32([[1, 2], [10, 20], [100, 200], [
        1000,
        2000,
      ], [0.1, 0.2]]),
    ],
    EXACT,
    "scatterAdd duplicates",
  );
  await expectJitMatches(
    (o, i, u) => ops.scatterAdd(o, i, u, 1),
    [i32([[0, 0, 0], [5, 5, 5]]), i32([1, 1, -1]), i32([[2 ** 31 - 1, 1, 3], [4, 5, 6]])],
    EXACT,
    "scatterAdd i32 wraps",
  );
});

Deno.test("jit oneHot with negative / out-of-range indices, f32 and i32 outputs", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      arbShape({ maxRank: 2, maxDim: 4 }).chain((s) =>
        fc.tuple(arbI32(s, -2, 5), fc.integer({ min: 1, max: 5 }))
      ),
      async ([idx, depth]) => {
        await expectJitMatches(
          (i) => [ops.oneHot(i, depth), ops.oneHot(i, depth, { dtype: "i32" })],
          [idx],
          EXACT,
          "oneHot",
        );
      },
    ),
    { numRuns: RUNS },
  );
});

// ---------------------------------------------------------------------------------------------
// Creation ops (iota-based and splats), constant and repeated outputs, empty arrays

Deno.test("jit arange / iota, full / zeros / ones / *Like, constants and empty arrays", async () => {
  const x = f32([[1, 2, 3], [4, 5, 6]]);
  const k = i32([[1, 2, 3], [4, 5, 6]]);
  await expectJitMatches(
    (t: Tensor) => [
      ops.arange(4),
      ops.arange(1, 8, 3),
      ops.arange(5, 0, -2),
      ops.arange(0, 1, 0.25),
      ops.arange(3, undefined, 1, "f32"),
      ops.add(t, ops.arange(3, undefined, 1, "f32")),
      ops.full([2, 2], 2.5),
      ops.full([3], 7, "i32"),
      ops.full([], -1),
      ops.zeros([1, 2]),
      ops.ones([2], "i32"),
      ops.zerosLike(t),
      ops.onesLike(t),
    ],
    [x],
    EXACT,
    "creation",
  );
  // Random lengths (each its own kernel), mixed with an input.
  await checkAsyncProperty(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 40 }),
      fc.integer({ min: -5, max: 5 }),
      fc.integer({ min: 1, max: 3 }),
      async (n, start, step) => {
        await expectJitMatches(
          (t: Tensor) => [ops.arange(start, start + n * step, step), ops.mul(t, ops.arange(n))],
          [i32(Array.from({ length: n }, (_, i) => i - 3))],
          EXACT,
          "arange",
        );
      },
    ),
    { numRuns: RUNS },
  );
  // Identity, repeated outputs, a closed-over constant, outputs of several dtypes.
  const c = f32([[0.5, -1, 2], [3, NaN, -0]]);
  await expectJitMatches(
    (t: Tensor, k: Tensor) => [t, t, ops.add(t, c), c, k, ops.less(t, 3), { s: ops.sum(k) }],
    [x, k],
    EXACT,
    "identity / repeated / constant outputs",
  );
  // Empty arrays.
  await expectJitMatches(
    (t: Tensor) => [ops.slice(t, [0, 3], [null, 1]), ops.arange(3, 3), ops.sum(ops.slice(t, [2]))],
    [x],
    EXACT,
    "empty",
  );
});

Deno.test("jit pytree edge cases: literal outputs, nulls, nested arguments, unused inputs", async () => {
  const x = f32([[1, 2], [3, 4]]);
  const cases: [string, (...a: never[]) => unknown, unknown[]][] = [
    ["number and bool outputs", (t: Tensor) => [ops.add(t, 1), 2.5, { b: true }], [x]],
    ["nulls in the output tree", (t: Tensor) => ({ a: null, b: [ops.neg(t), null] }), [x]],
    ["nested arguments", (p: { a: Tensor; b: Tensor[] }) => ops.add(p.a, p.b[0]), [{
      a: x,
      b: [x],
    }]],
    ["unused input", (a: Tensor, _b: Tensor) => ops.neg(a), [x, x]],
    ["scalar input", (s: Tensor) => ops.mul(s, s), [f32(3)]],
    ["no arguments", () => [ops.arange(10), ops.full([2, 3], 1.5)], []],
  ];
  for (const [name, f, args] of cases) await expectJitMatches(f, args, EXACT, name);
});

// ---------------------------------------------------------------------------------------------
// NN composites

Deno.test("jit softmax / logSoftmax along a random axis (large and −Inf logits)", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      arbShape({ minRank: 1, maxRank: 3, maxDim: 5 }).chain((s) =>
        fc.tuple(
          fc.oneof(arbF32(s, -30, 30), arbF32(s, 990, 1010)),
          fc.integer({ min: -s.length, max: s.length - 1 }),
        )
      ),
      async ([x, axis]) => {
        await expectJitMatches((t) => ops.softmax(t, axis), [x], TRANSCENDENTAL, "softmax");
        await expectJitMatches((t) => ops.logSoftmax(t, axis), [x], TRANSCENDENTAL, "logSoftmax");
      },
    ),
    { numRuns: RUNS },
  );
  const z = f32([[1, -Infinity, 3], [1000, 1000, 1001]]);
  await expectJitMatches(
    (t) => [ops.softmax(t), ops.logSoftmax(t), ops.softmax(t, 0)],
    [z],
    TRANSCENDENTAL,
    "softmax edges",
  );
});

Deno.test("jit crossEntropy: index / probability labels, masks, every reduction", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      fc.tuple(
        arbShape({ minRank: 1, maxRank: 2, maxDim: 4 }),
        fc.integer({ min: 2, max: 6 }),
      ).chain(([pos, c]) =>
        fc.tuple(
          arbF32([...pos, c], -5, 5),
          arbI32(pos, 0, c - 1),
          arbBool(pos),
          arbF32([...pos, c], 0, 1),
        )
      ),
      async ([logits, labels, mask, probs]) => {
        const f = (z: Tensor, y: Tensor, m: Tensor, p: Tensor) => [
          ops.crossEntropy(z, y),
          ops.crossEntropy(z, y, { reduction: "sum" }),
          ops.crossEntropy(z, y, { reduction: "none" }),
          ops.crossEntropy(z, y, { mask: m }),
          ops.crossEntropy(z, y, { mask: m, reduction: "sum" }),
          ops.crossEntropy(z, y, { mask: ops.cast(m, "f32"), reduction: "none" }),
          ops.crossEntropy(z, p),
        ];
        await expectJitMatches(f, [logits, labels, mask, probs], TRANSCENDENTAL, "crossEntropy");
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("jit layerNorm / rmsNorm with and without gamma / beta, constant rows", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      fc.tuple(arbShape({ maxRank: 2, maxDim: 3 }), fc.integer({ min: 1, max: 8 })).chain((
        [lead, d],
      ) => fc.tuple(arbF32([...lead, d], -3, 3), arbF32([d]), arbF32([d]))),
      async ([x, gamma, beta]) => {
        const f = (x: Tensor, g: Tensor, b: Tensor) => [
          ops.layerNorm(x),
          ops.layerNorm(x, g, b),
          ops.layerNorm(x, g, null, 1e-3),
          ops.rmsNorm(x),
          ops.rmsNorm(x, g),
        ];
        await expectJitMatches(f, [x, gamma, beta], TRANSCENDENTAL, "norms");
      },
    ),
    { numRuns: RUNS },
  );
  const constant = f32([[2, 2, 2], [0, 0, 0]]);
  // x − mean(x) is 0 only if the device's division is correctly rounded (WGSL allows 2.5 ulp);
  // 1/√eps ≈ 316 amplifies one ulp of the mean to ~2e-5 (seen on an H100).
  await expectJitMatches(
    (x) => [ops.layerNorm(x), ops.rmsNorm(x)],
    [constant],
    { rtol: 1e-4, atol: 1e-4 },
    "constant rows",
  );
});

// ---------------------------------------------------------------------------------------------
// Large arrays: more items than one dispatch covers (grid-stride loops iterate), more reduction
// outputs / rows / scatter columns than invocations, matmuls of several tiles

Deno.test("jit on large arrays: grid-stride loops, many rows, multi-tile matmuls", async () => {
  const x = seeded([70, 130], 1, -3, 3);
  const col = seeded([70, 1], 2), row = seeded([130], 3);
  await expectJitMatches(
    (x) => [ops.transpose(x), ops.pad(x, [[1, 2], [0, 3]], -1)],
    [x],
    EXACT,
    "large views",
  );
  // x·c + r: a GPU driver may contract the fused multiply-add into one FMA (one rounding instead
  // of two; the H200's does). The difference is an ULP of the product (|x·c| ≤ 3 here), which is
  // large relative to a result that cancels: hence an absolute tolerance.
  await expectJitMatches(
    (x, c, r) => ops.add(ops.mul(x, c), r),
    [x, col, row],
    { rtol: 1e-6, atol: 1e-6 },
    "large elementwise",
  );
  await expectJitMatches((x) => ops.exp(ops.tanh(x)), [x], TRANSCENDENTAL, "large exp");
  const tall = seeded([5000, 3], 4, -3, 3);
  await expectJitMatches(
    (t) => [ops.max(t, -1), ops.argmax(t, -1), ops.min(t, 0)],
    [tall],
    EXACT,
    "many reduction outputs",
  );
  await expectJitMatches(
    (t, x) => [ops.sum(t, -1), ops.sum(x), ops.mean(x, 0)],
    [tall, x],
    ACCUMULATE,
    "large sums",
  );
  await expectJitMatches(
    (t) => [ops.softmax(t), ops.logSoftmax(t, 0)],
    [seeded([4500, 4], 5, -5, 5)],
    TRANSCENDENTAL,
    "many softmax rows",
  );
  await expectJitMatches(
    (x) => ops.layerNorm(x),
    [seeded([300, 40], 6, -2, 2)],
    TRANSCENDENTAL,
    "layerNorm rows",
  );
  for (
    const [sa, sb] of [[[67, 45], [45, 36]], [[64, 64], [64, 64]], [[3, 33, 20], [20, 40]], [
      [130, 9],
      [9, 70],
    ]]
  ) {
    await expectJitMatches(
      (a, b) => ops.matmul(a, b),
      [seeded(sa, 7), seeded(sb, 8)],
      ACCUMULATE,
      `matmul ${sa}×${sb}`,
    );
  }
  await expectJitMatches(
    (a, b) => ops.gelu(ops.matmul(a, ops.transpose(b))),
    [seeded([50, 24], 9), seeded([36, 24], 10)],
    TRANSCENDENTAL,
    "x·Wᵀ + gelu",
  );
  const idx = i32(Array.from({ length: 5000 }, (_, i) => ((i * 7919) % 1200) - 100));
  await expectJitMatches(
    (t, i) => ops.take(t, i),
    [seeded([1000, 8], 11), idx],
    EXACT,
    "large gather",
  );
  await expectJitMatches(
    (o, i, u) => ops.scatterAdd(o, i, u, 1),
    [seeded([5000, 3], 12), i32([0, 2, 2, -1]), seeded([5000, 4], 13)],
    ACCUMULATE,
    "scatter over 5000 columns",
  );
});

// ---------------------------------------------------------------------------------------------
// Coverage: every op of the API and every primitive ran through jit above

/** The ops of api.md's Ops list and the extra ops mod.ts exports. */
const API_OPS = `add sub mul div neg exp log sqrt rsqrt tanh sigmoid relu gelu silu abs square pow
maximum minimum where less greater equal cast sum mean max logsumexp matmul reshape transpose
broadcastTo expandDims squeeze slice concat take oneHot arange full zeros ones softmax logSoftmax
crossEntropy layerNorm rmsNorm erf sin cos reciprocal sign clip min argmax isFinite logicalNot
logicalAnd logicalOr lessEqual greaterEqual notEqual stack pad scatterAdd dot zerosLike onesLike
stopGradient`.split(/\s+/);

// ---------------------------------------------------------------------------------------------
// Bitwise integer primitives (the PRNG's building blocks): JS semantics on every backend

Deno.test("bitwise primitives: and, or, xor, shifts (counts mod 32) match 32-bit JS semantics", async () => {
  const ops = {
    and: lax.bitAnd,
    or: lax.bitOr,
    xor: lax.bitXor,
    shl: lax.shiftLeft,
    shr: lax.shiftRightLogical,
  };
  const f = (a: Tensor, b: Tensor) =>
    Object.fromEntries(Object.entries(ops).map(([k, op]) => [k, op(a, b)]));
  await checkAsyncProperty(
    fc.asyncProperty(SHAPE.chain((s) => fc.tuple(arbI32(s), arbI32(s, 0, 40))), async ([a, b]) => {
      const out = await expectJitMatches(f, [a, b], EXACT) as Record<string, HostArray>;
      const js: Record<string, (x: number, y: number) => number> = {
        and: (x, y) => x & y,
        or: (x, y) => x | y,
        xor: (x, y) => x ^ y,
        shl: (x, y) => x << y,
        shr: (x, y) => (x >>> y) | 0,
      };
      for (const [k, fn] of Object.entries(js)) {
        assert.deepEqual(
          Array.from(out[k].data),
          Array.from(a.data, (x, i) => fn(x, b.data[i])),
          k,
        );
      }
    }),
    { numRuns: RUNS },
  );
});

Deno.test("coverage: every API op and every primitive was compiled and checked above", () => {
  const missingOps = API_OPS.filter((n) => !used.has(n));
  if (missingOps.length) throw new Error(`ops not exercised: ${missingOps.join(" ")}`);
  // Every op function mod.ts exports is in the list (a new op must get a test here).
  const NOT_OPS = new Set(["asTensor"]);
  const exported = OP_MODULES.flatMap((m) => Object.keys(m)).filter((k) =>
    typeof (dsl as Record<string, unknown>)[k] === "function" && !NOT_OPS.has(k)
  );
  const unlisted = exported.filter((k) => !API_OPS.includes(k));
  if (unlisted.length) throw new Error(`exported ops without a jit test: ${unlisted.join(" ")}`);
  const missingPrims = dsl.primitiveNames().filter((p) => !seenPrimitives.has(p));
  if (missingPrims.length) throw new Error(`primitives not exercised: ${missingPrims.join(" ")}`);
});
