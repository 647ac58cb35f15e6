/**
 * Tests at size: reductions, scatter-adds, row kernels and contractions past 65,535 elements (the
 * loop budget of one llvmpipe/lavapipe invocation) and past 2²⁴ elements in total, against the
 * float64 reference. Tolerances follow from the summation order (`summationLength`): a sum of R
 * f32 values reduced in a tree whose longest path has L additions is within γ_L·Σ|x| of the exact
 * sum, γ_L = L·u/(1 − L·u), u = 2⁻²⁴; each f32 rounding of a fused prologue or of the result adds
 * at most one u. Shapes are chosen so that only cheap ops (sums, squares, compares) run at size.
 */

import * as dsl from "../../mod.ts";
import {
  type Device,
  gpu,
  grad,
  type HostArray,
  interpret,
  interpretF64,
  jit,
  splitSizesFor,
  summationLength,
  type Tensor,
} from "../../mod.ts";
import { matmulSlices } from "../../compiler/mod.ts";
import { assertArrayMatches, checkAsyncProperty, EXACT, fc, seeded } from "./jit_helpers.ts";

const U = 2 ** -24;

const f32 = (shape: number[], data: Float32Array): HostArray => ({ shape, dtype: "f32", data });

/** The device's reduce chunk (the split pass's C cap), for the error bounds. */
async function reduceChunk(device?: Device): Promise<number> {
  const d = device ?? await gpu();
  return splitSizesFor(d.info.maxLoopIterations).reduceChunk;
}

/** γ_L for a tree sum of `r` elements plus `extra` roundings (prologue, result, a division). */
function gamma(r: number, chunk: number, extra: number): number {
  const l = summationLength(r, chunk) + extra;
  return (l * U) / (1 - l * U);
}

/**
 * Asserts |got − exact| ≤ bound[i] elementwise, with `exact` the float64 result and `bound` from
 * the summation order; reports the element, both values and the bound.
 */
function assertWithin(got: HostArray, exact: HostArray, bound: ArrayLike<number>, label: string) {
  if (got.shape.join() !== exact.shape.join()) {
    throw new Error(`${label}: shape [${got.shape}] ≠ [${exact.shape}]`);
  }
  for (let i = 0; i < got.data.length; i++) {
    const err = Math.abs(got.data[i] - exact.data[i]);
    if (!(err <= bound[i])) {
      throw new Error(
        `${label}: element ${i} = ${got.data[i]}, float64 ${exact.data[i]}, error ${err} > ` +
          `bound ${bound[i]}`,
      );
    }
  }
}

/** Σ|x| along `axis` (or all), in float64: the scale of a sum's error bound. */
function absSums(x: HostArray, axes: number[]): Float64Array {
  const abs = f32(x.shape.slice(), Float32Array.from(x.data, Math.abs));
  return interpretF64((t: Tensor) => dsl.sum(t, axes), abs).data as Float64Array;
}

/** Checks sum(x, axes) on the device against float64 within the tree-summation bound. */
async function checkSum(x: HostArray, axes: number[], label: string, device?: Device) {
  const f = (t: Tensor) => dsl.sum(t, axes);
  const got = await jit(f, { device })(x);
  const exact = interpretF64(f, x);
  const r = axes.reduce((p, a) => p * x.shape[a], 1);
  const g = gamma(r, await reduceChunk(device), 0);
  const scale = absSums(x, axes);
  const bound = Float64Array.from(scale, (s, i) => g * s + U * Math.abs(exact.data[i]));
  assertWithin(got, exact, bound, label);
}

Deno.test("jit sum past 65,535 elements: every element counted, within the tree bound", async () => {
  for (const n of [65_535, 65_536, 70_000, 1_048_576]) {
    await checkSum(seeded([n], n), [0], `sum of ${n}`);
  }
  // A sum whose exact value is known: n ones.
  const ones = f32([1_000_003], new Float32Array(1_000_003).fill(1));
  const got = await jit((t: Tensor) => dsl.sum(t))(ones);
  assertArrayMatches(got, f32([], Float32Array.of(1_000_003)), EXACT, "sum of ones");
});

Deno.test("jit sums along an axis past 65,535: rows, columns, several axes, i32", async () => {
  await checkSum(seeded([4, 70_000], 1), [1], "sum(x, -1) on [4, 70000]");
  await checkSum(seeded([70_000, 3], 2), [0], "sum(x, 0) on [70000, 3]");
  await checkSum(seeded([300, 5, 400], 3), [0, 2], "sum over axes 0, 2 of [300, 5, 400]");
  // i32 sums wrap identically in any order: exact.
  const n = 200_003;
  const ints: HostArray = {
    shape: [n],
    dtype: "i32",
    data: Int32Array.from({ length: n }, (_, i) => ((i * 2654435761) | 0) >> 8),
  };
  const f = (t: Tensor) => dsl.sum(t);
  assertArrayMatches(await jit(f)(ints), interpret(f, ints), EXACT, "i32 sum");
});

Deno.test("jit sum of squares over 200,000 elements (a gradient norm) and a mean of 100,000", async () => {
  const x = seeded([200_000], 7);
  const f = (t: Tensor) => dsl.sum(dsl.mul(t, t));
  const got = await jit(f)(x);
  const exact = interpretF64(f, x);
  // The square rounds once before the sum: one more u.
  const bound = gamma(200_000, await reduceChunk(), 1) * exact.data[0] + U * exact.data[0];
  assertWithin(got, exact, [bound], "sum(x*x)");

  const near = seeded([100_000], 8, 1e4 - 0.5, 1e4 + 0.5);
  const mean = (t: Tensor) => dsl.mean(t);
  const m = await jit(mean)(near);
  const mBound = gamma(100_000, await reduceChunk(), 2) * 1e4 + U * 1e4;
  assertWithin(m, interpretF64(mean, near), [mBound], "mean of values near 1e4");
});

Deno.test("the variance of 100,000 values near 1e4 is within 1e-3 of float64 (device and reference)", async () => {
  const x = seeded([100_000], 9, 1e4 - 0.5, 1e4 + 0.5);
  const variance = (t: Tensor) => dsl.mean(dsl.square(dsl.sub(t, dsl.mean(t))));
  const exact = interpretF64(variance, x).data[0];
  const onDevice = (await jit(variance)(x)).data[0];
  const reference = interpret(variance, x).data[0];
  for (const [name, v] of [["device", onDevice], ["reference", reference]] as const) {
    if (!(Math.abs(v - exact) <= 1e-3)) {
      throw new Error(`${name} variance ${v}, float64 ${exact}`);
    }
  }
});

Deno.test("jit max, min and argmax past 65,535: exact, first index of the maximum, NaN wins", async () => {
  const n = 150_001;
  const x = seeded([n], 10);
  x.data[123_456] = 3; // the maximum, late in the array
  x.data[140_000] = 3; // a tie after it: the first index wins
  x.data[7] = -3;
  const f = (t: Tensor) => ({
    max: dsl.max(t),
    min: dsl.min(t),
    argmax: dsl.argmax(t, 0),
    argmin: dsl.argmax(dsl.neg(t), 0),
  });
  const got = await jit(f)(x);
  const want = interpret(f, x);
  for (const k of ["max", "min", "argmax", "argmin"] as const) {
    assertArrayMatches(got[k], want[k], EXACT, k);
  }
  if (got.argmax.data[0] !== 123_456) throw new Error(`argmax ${got.argmax.data[0]}`);
  x.data[100_000] = NaN;
  x.data[149_000] = NaN;
  const nan = await jit(f)(x);
  if (!Number.isNaN(nan.max.data[0]) || nan.argmax.data[0] !== 100_000) {
    throw new Error(`with NaN: max ${nan.max.data[0]}, argmax ${nan.argmax.data[0]}`);
  }
  // Along an axis of a matrix, with the maximum in a different chunk per row.
  const m = seeded([3, 80_000], 11);
  [5, 40_000, 79_999].forEach((c, r) => (m.data[r * 80_000 + c] = 2));
  const g = (t: Tensor) => dsl.argmax(t, -1);
  assertArrayMatches(await jit(g)(m), f32i([3], [5, 40_000, 79_999]), EXACT, "argmax rows");
});

function f32i(shape: number[], values: number[]): HostArray {
  return { shape, dtype: "i32", data: Int32Array.from(values) };
}

Deno.test("jit embedding gradient with 100,000 indices (scatter-add) equals the reference exactly", async () => {
  const [v, d, n] = [300, 8, 100_000];
  const table = seeded([v, d], 12);
  const idx = f32i([n], Array.from({ length: n }, (_, i) => ((i * 7919) % (2 * v)) - v));
  const f = grad((t: Tensor, ix: Tensor) => dsl.sum(dsl.mul(dsl.take(t, ix, 0), 0.5)));
  // The device adds the updates in the reference's order (a chain of scatter kernels): bit-exact.
  assertArrayMatches(await jit(f)(table, idx), interpret(f, table, idx), EXACT, "scatter-add");
  // Against float64: every row is a sum of at most n/v·2 halves, so exact in f32 anyway.
  assertArrayMatches(await jit(f)(table, idx), interpretF64(f, table, idx), EXACT, "vs f64");
});

Deno.test("jit softmax and logsumexp over rows of 70,000 (a vocabulary)", async () => {
  const x = seeded([6, 70_000], 13, -4, 4);
  const f = (t: Tensor) => ({ p: dsl.softmax(t, -1), lse: dsl.logsumexp(t, -1) });
  const got = await jit(f)(x);
  const exact = interpretF64(f, x);
  // exp is good to a few ULPs on the device; the row sum adds γ_L.
  const g = gamma(70_000, await reduceChunk(), 8);
  const pBound = Float64Array.from(
    exact.p.data as Float64Array,
    (v) => 4e-6 * Math.abs(v) + g * Math.abs(v),
  );
  assertWithin(got.p, exact.p, pBound, "softmax");
  assertWithin(got.lse, exact.lse, Array(6).fill(1e-5 * 15), "logsumexp");
});

Deno.test("jit matmul contracting over 70,000 (split-K) and a batch of 70,000 small products", async () => {
  const k = 70_000;
  const a = seeded([2, k], 14), b = seeded([k, 3], 15);
  const f = (x: Tensor, y: Tensor) => dsl.matmul(x, y);
  const got = await jit(f)(a, b);
  const exact = interpretF64(f, a, b);
  // Each partial product is an f32 fma chain of ≤ the split size, then a sum over the partials.
  const absProd = interpretF64(
    f,
    f32([2, k], Float32Array.from(a.data, Math.abs)),
    f32([k, 3], Float32Array.from(b.data, Math.abs)),
  );
  const chunk = splitSizesFor((await gpu()).info.maxLoopIterations).matmulChunk;
  const slices = matmulSlices(k, chunk);
  const longest = Math.max(...slices.map(([s, e]) => e - s));
  const g = ((longest + slices.length) * U) / (1 - k * U);
  assertWithin(
    got,
    exact,
    Float64Array.from(absProd.data as Float64Array, (s) => g * s),
    "matmul K=70000",
  );
  // Many independent products: a batch dimension past the dispatch limit of one axis.
  const batch = 70_000;
  const p = seeded([batch, 2, 2], 16), q = seeded([batch, 2, 2], 17);
  const bm = await jit(f)(p, q);
  assertArrayMatches(bm, interpret(f, p, q), { rtol: 1e-6, atol: 1e-6 }, "batched matmul");
});

Deno.test("jit over more than 2^24 elements: an elementwise map, a sum of squares and a max", async () => {
  const n = (1 << 24) + 3;
  const x = seeded([n], 18);
  x.data[n - 1] = 1.5; // the maximum is the very last element
  const f = (t: Tensor) => ({
    y: dsl.sub(dsl.mul(t, 2), 1),
    ss: dsl.sum(dsl.square(t)),
    m: dsl.max(t),
  });
  const got = await jit(f)(x);
  const want = interpret(f, x);
  assertArrayMatches(got.y, want.y, EXACT, "2x - 1");
  assertArrayMatches(got.m, f32([], Float32Array.of(1.5)), EXACT, "max");
  const exact = interpretF64((t: Tensor) => dsl.sum(dsl.square(t)), x).data[0];
  const bound = gamma(n, await reduceChunk(), 1) * exact + U * exact;
  assertWithin(got.ss, f32([], Float32Array.of(exact)), [bound], "sum of squares");
});

Deno.test("jit reductions at random sizes past 65,535 along random axes (property)", async () => {
  const device = await gpu();
  const chunk = await reduceChunk(device);
  await checkAsyncProperty(
    fc.asyncProperty(
      fc.integer({ min: 65_536, max: 300_000 }),
      fc.integer({ min: 1, max: 3 }),
      fc.boolean(),
      fc.constantFrom("sum", "mean", "max", "argmax"),
      fc.nat(1000),
      async (big, small, bigFirst, op, seed) => {
        const shape = bigFirst ? [big, small] : [small, big];
        const axis = bigFirst ? 0 : 1;
        const x = seeded(shape, seed);
        const label = `${op} over axis ${axis} of [${shape}] (seed ${seed})`;
        if (op === "sum") return await checkSum(x, [axis], label, device);
        const f = (t: Tensor) =>
          op === "mean" ? dsl.mean(t, axis) : op === "max" ? dsl.max(t, axis) : dsl.argmax(t, axis);
        const got = await jit(f, { device })(x);
        if (op !== "mean") return assertArrayMatches(got, interpret(f, x), EXACT, label);
        const exact = interpretF64(f, x);
        const bound = Float64Array.from(
          absSums(x, [axis]),
          (s, i) => gamma(big, chunk, 2) * (s / big) + U * Math.abs(exact.data[i]),
        );
        assertWithin(got, exact, bound, label);
      },
    ),
    { numRuns: 8 },
  );
});
