import assert from "node:assert/strict";
import { symmetricEigenvalues } from "../../dsl/linalg/symmetric_eigen.ts";
import { gramSingularValues } from "../../dsl/linalg/gram_singular_values.ts";
import { singularValues, svd } from "../../dsl/linalg/svd.ts";
import { effectiveRank } from "../../dsl/linalg/rank.ts";
import { checkProperty, fc } from "../helpers/property.ts";

/** Deterministic values in [−1, 1) from a seed (an LCG). */
function values(seed: number, count: number): number[] {
  let x = seed >>> 0 || 1;
  return Array.from({ length: count }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 31 - 1;
  });
}

/** Q·diag(λ)·Qᵀ for an orthogonal Q from the SVD of a random square matrix. */
function symmetricWith(lambda: number[], seed: number): Float64Array {
  const n = lambda.length;
  const q = svd(values(seed, n * n), n, n).u;
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += q[i * n + k] * lambda[k] * q[j * n + k];
      a[i * n + j] = s;
    }
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) a[i * n + j] = a[j * n + i];
  return a;
}

Deno.test("symmetricEigenvalues: hand-built matrices", () => {
  assert.deepEqual(Array.from(symmetricEigenvalues([5], 1)), [5]);
  // [[2, 1], [1, 2]]: 3 and 1.
  const two = symmetricEigenvalues([2, 1, 1, 2], 2);
  assert.ok(Math.abs(two[0] - 3) < 1e-15 && Math.abs(two[1] - 1) < 1e-15, `${two}`);
  // Diagonal (already tridiagonal, nothing to reduce) and the zero matrix.
  assert.deepEqual(Array.from(symmetricEigenvalues([1, 0, 0, 0, -2, 0, 0, 0, 7], 3)), [7, 1, -2]);
  assert.deepEqual(Array.from(symmetricEigenvalues(new Float64Array(16), 4)), [0, 0, 0, 0]);
  // The path graph's Laplacian-like tridiagonal [−1, 2, −1]: 2 − 2cos(kπ/(n+1)).
  const n = 9, t = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    t[i * n + i] = 2;
    if (i + 1 < n) t[i * n + i + 1] = t[(i + 1) * n + i] = -1;
  }
  const want = Array.from({ length: n }, (_, k) => 2 - 2 * Math.cos(((k + 1) * Math.PI) / (n + 1)))
    .sort((a, b) => b - a);
  symmetricEigenvalues(t, n).forEach((v, i) => assert.ok(Math.abs(v - want[i]) < 1e-14, `${v}`));
  assert.throws(() => symmetricEigenvalues([1, 2, 3], 2), /eigenvalues.*2×2.*3 values/);
});

Deno.test("symmetricEigenvalues: Q·diag(λ)·Qᵀ gives λ back (random sizes, repeated and signed λ)", () => {
  checkProperty(
    fc.property(
      fc.array(fc.oneof(fc.double({ min: -10, max: 10, noNaN: true }), fc.constant(1)), {
        minLength: 1,
        maxLength: 14,
      }),
      fc.integer(),
      (lambda, seed) => {
        const got = symmetricEigenvalues(symmetricWith(lambda, seed), lambda.length);
        const want = [...lambda].sort((a, b) => b - a);
        const scale = Math.max(1, ...lambda.map(Math.abs));
        got.forEach((v, i) => {
          assert.ok(Math.abs(v - want[i]) < 1e-12 * scale, `λ${i}: ${v} against ${want[i]}`);
        });
      },
    ),
    { numRuns: 60 },
  );
});

const tall = fc.record({
  m: fc.integer({ min: 1, max: 24 }),
  n: fc.integer({ min: 1, max: 24 }),
  seed: fc.integer(),
  deficient: fc.boolean(),
}).map(({ m, n, seed, deficient }) => {
  const a = values(seed, m * n);
  // A rank-deficient matrix: every column a multiple of the first two.
  if (deficient && n > 2) {
    for (let j = 2; j < n; j++) {
      for (let i = 0; i < m; i++) a[i * n + j] = a[i * n] - j * a[i * n + 1];
    }
  }
  return { m, n, a };
});

Deno.test("gramSingularValues: within the rounding of AᵀA of Golub–Kahan's, 0 below the floor", () => {
  checkProperty(
    fc.property(tall, ({ m, n, a }) => {
      const w = { shape: [m, n], dtype: "f32" as const, data: Float32Array.from(a) };
      const exact = singularValues(w);
      const { values: got, floor } = gramSingularValues(w);
      assert.equal(got.length, Math.min(m, n));
      let fro = 0;
      for (const v of w.data) fro += v * v;
      assert.ok(
        Math.abs(floor - Math.sqrt(2 * Math.max(m, n) * Number.EPSILON * fro)) <= 1e-9 * floor,
      );
      got.forEach((g, i) => {
        if (i > 0) assert.ok(got[i - 1] >= g, "descending");
        if (g === 0) assert.ok(exact[i] <= 1.5 * floor, `σ${i} = ${exact[i]} reported as 0`);
        else {assert.ok(
            Math.abs(g * g - exact[i] ** 2) <= floor * floor,
            `σ${i}: ${g} against ${exact[i]}`,
          );}
      });
    }),
    { numRuns: 80 },
  );
});

Deno.test("gramSingularValues rejects a non-finite entry", () => {
  const data = Float32Array.of(1, 2, Infinity, 4, 5, 6);
  assert.throws(
    () => gramSingularValues({ shape: [3, 2], dtype: "f32", data }),
    /non-finite entry at 2/,
  );
});

/** U·diag(s)·Vᵀ [m, n] with orthonormal U, V from SVDs of random matrices. */
function withSpectrum(m: number, n: number, s: number[], seed: number): Float32Array {
  const u = svd(values(seed, m * m), m, m).u, v = svd(values(seed + 1, n * n), n, n).u;
  const a = new Float32Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let x = 0;
      s.forEach((sk, k) => (x += u[i * m + k] * sk * v[j * n + k]));
      a[i * n + j] = x;
    }
  }
  return a;
}

Deno.test("effectiveRank: the Gram path counts the numerical rank as Golub–Kahan does", () => {
  checkProperty(
    fc.property(
      fc.integer({ min: 2, max: 16 }),
      fc.integer({ min: 2, max: 4 }),
      fc.boolean(),
      fc.double({ min: 0.3, max: 0.9, noNaN: true }),
      fc.integer({ min: 0, max: 6 }),
      fc.integer(),
      (n, aspect, wide, decay, zeros, seed) => {
        const m = n * aspect;
        // A geometric spectrum with trailing zeros: an update of rank < n, decaying past 1e-3.
        const s = Array.from({ length: n }, (_, k) => (k >= n - zeros ? 0 : decay ** (2 * k)));
        const [rows, cols] = wide ? [n, m] : [m, n];
        const data = withSpectrum(m, n, s, seed);
        const delta = {
          shape: [rows, cols],
          dtype: "f32" as const,
          data: wide ? transposed(data, m, n) : data,
        };
        const fast = effectiveRank(delta), exact = effectiveRank(delta, { method: "golub-kahan" });
        assert.equal(fast.method, "gram");
        assert.equal(exact.method, "golub-kahan");
        // Values within 0.5% of the threshold may go either way (documented); none here is.
        const near = exact.singularValues.some((v) =>
          Math.abs(v - 1e-3 * exact.singularValues[0]) < 0.005 * 1e-3 * exact.singularValues[0]
        );
        if (!near) assert.equal(fast.rank, exact.rank);
        assert.ok(
          Math.abs(fast.entropyRank - exact.entropyRank) <= 1e-4 * exact.entropyRank,
          `entropy rank ${fast.entropyRank} against ${exact.entropyRank}`,
        );
      },
    ),
    { numRuns: 40 },
  );
  // A square matrix, or a threshold the floor cannot resolve, takes Golub–Kahan.
  const sq = { shape: [6, 6], dtype: "f32" as const, data: Float32Array.from(values(3, 36)) };
  assert.equal(effectiveRank(sq).method, "golub-kahan");
  const thin = { shape: [40, 4], dtype: "f32" as const, data: Float32Array.from(values(5, 160)) };
  assert.equal(effectiveRank(thin).method, "gram");
  assert.equal(effectiveRank(thin, { threshold: 1e-9 }).method, "golub-kahan");
});

function transposed(a: Float32Array, m: number, n: number): Float32Array {
  const t = new Float32Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) t[j * m + i] = a[i * n + j];
  return t;
}
