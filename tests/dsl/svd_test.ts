import assert from "node:assert/strict";
import {
  orthogonalityError,
  reconstructionError,
  singularValues,
  svd,
} from "../../dsl/linalg/svd.ts";
import { effectiveRank, layerTypes, rankByLayerType, rankSample } from "../../dsl/linalg/rank.ts";
import type { HostArray } from "../../dsl/host_array.ts";
import { checkProperty, fc } from "../helpers/property.ts";

Deno.test("svd: known singular values of hand-built matrices", () => {
  // diag(3, 1) rotated: singular values are the diagonal's absolute values.
  const c = Math.cos(0.3), s = Math.sin(0.3);
  const a = [3 * c, -1 * s, 3 * s, 1 * c]; // R(0.3)·diag(3, 1)
  const f = svd(a, 2, 2);
  assert.ok(Math.abs(f.s[0] - 3) < 1e-14 && Math.abs(f.s[1] - 1) < 1e-14, `${f.s}`);
  // [[1, 1], [1, 1], [0, 0]]: rank 1 with σ = 2; U completed to an orthonormal basis anyway.
  const r = svd([1, 1, 1, 1, 0, 0], 3, 2);
  assert.ok(Math.abs(r.s[0] - 2) < 1e-14 && r.s[1] < 1e-14);
  assert.ok(orthogonalityError(r.u, 3, 2) < 1e-12);
  assert.ok(reconstructionError([1, 1, 1, 1, 0, 0], r) < 1e-15);
  const zero = svd(new Float64Array(6), 2, 3);
  assert.deepEqual(Array.from(zero.s), [0, 0]);
  assert.ok(orthogonalityError(zero.u, 2, 2) < 1e-12 && orthogonalityError(zero.v, 3, 2) < 1e-12);
  assert.throws(() => svd([1, NaN], 1, 2), /non-finite/);
  assert.throws(() => svd([1, 2, 3], 2, 2), /expected a non-empty 2×2 matrix, got 3 values/);
});

const matrix = fc.record({
  m: fc.integer({ min: 1, max: 9 }),
  n: fc.integer({ min: 1, max: 9 }),
  seed: fc.integer(),
})
  .map(({ m, n, seed }) => {
    let x = seed >>> 0 || 1;
    const a = Array.from({ length: m * n }, () => {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
      return x / 2 ** 31 - 1;
    });
    // Make some matrices rank-deficient by repeating a column.
    if (seed % 3 === 0 && n > 1) { for (let i = 0; i < m; i++) a[i * n + n - 1] = a[i * n]; }
    return { m, n, a };
  });

Deno.test("svd: W = U·S·Vᵀ, orthonormal factors, descending non-negative values (random shapes)", () => {
  checkProperty(
    fc.property(matrix, ({ m, n, a }) => {
      const f = svd(a, m, n);
      const k = Math.min(m, n);
      assert.equal(f.k, k);
      assert.ok(reconstructionError(a, f) < 1e-13, `reconstruction ${reconstructionError(a, f)}`);
      assert.ok(orthogonalityError(f.u, m, k) < 1e-12, "U");
      assert.ok(orthogonalityError(f.v, n, k) < 1e-12, "V");
      for (let i = 1; i < k; i++) assert.ok(f.s[i - 1] >= f.s[i] && f.s[i] >= 0);
      // Σσ² = ‖W‖²_F.
      const fro = a.reduce((s, v) => s + v * v, 0);
      assert.ok(Math.abs(f.s.reduce((s, v) => s + v * v, 0) - fro) < 1e-12 * Math.max(1, fro));
    }),
    { numRuns: 60 },
  );
});

Deno.test("singularValues (no vectors) equals the full SVD's values, tall and wide", () => {
  checkProperty(
    fc.property(matrix, ({ m, n, a }) => {
      const want = svd(a, m, n).s;
      const got = singularValues({ shape: [m, n], dtype: "f32", data: Float32Array.from(a) });
      const fromF32 = svd(Float32Array.from(a), m, n).s;
      assert.equal(got.length, want.length);
      const scale = Math.max(1e-300, want[0]);
      got.forEach((v, i) => assert.ok(Math.abs(v - fromF32[i]) <= 1e-12 * scale, `σ${i}`));
    }),
    { numRuns: 60 },
  );
});

Deno.test("svd: truncation error equals the tail of the spectrum (Eckart–Young)", () => {
  const m = 12, n = 7;
  const a = Array.from({ length: m * n }, (_, i) => Math.sin(i * 1.7) + (i % 5) * 0.1);
  const f = svd(a, m, n);
  const fro = Math.sqrt(a.reduce((s, v) => s + v * v, 0));
  for (const r of [1, 3, 6]) {
    const tail = Math.sqrt(Array.from(f.s).slice(r).reduce((s, v) => s + v * v, 0)) / fro;
    assert.ok(Math.abs(reconstructionError(a, f, r) - tail) < 1e-12);
  }
});

Deno.test("effectiveRank: numerical rank at a relative threshold and the entropy rank", () => {
  // diag(4, 2, 1e-4, 0) in a 4×5 matrix.
  const d = new Float32Array(20);
  [4, 2, 1e-4, 0].forEach((v, i) => (d[i * 5 + i] = v));
  const r = effectiveRank({ shape: [4, 5], dtype: "f32", data: d });
  assert.equal(r.rank, 2);
  assert.equal(
    effectiveRank({ shape: [4, 5], dtype: "f32", data: d }, { threshold: 1e-5 }).rank,
    3,
  );
  const p = [4, 2, 1e-4].map((v) => v / (6 + 1e-4));
  assert.ok(Math.abs(r.entropyRank - Math.exp(-p.reduce((h, x) => h + x * Math.log(x), 0))) < 1e-9);
  // Equal singular values: entropy rank = rank.
  const eye = new Float32Array(9).map((_, i) => (i % 4 === 0 ? 3 : 0));
  assert.ok(
    Math.abs(effectiveRank({ shape: [3, 3], dtype: "f32", data: eye }).entropyRank - 3) < 1e-12,
  );
  assert.deepEqual(
    effectiveRank({ shape: [2, 2], dtype: "f32", data: new Float32Array(4) }).rank,
    0,
  );
});

Deno.test("rankByLayerType groups matrices by module name and measures W_T − W_0", () => {
  const eye = (v: number): HostArray => ({
    shape: [3, 3],
    dtype: "f32",
    data: Float32Array.of(v, 0, 0, 0, v, 0, 0, 0, v),
  });
  const before = {
    "l.0.q_proj.weight": eye(1),
    "l.1.q_proj.weight": eye(1),
    "l.0.up_proj.weight": eye(2),
  };
  const rankOne: HostArray = {
    shape: [3, 3],
    dtype: "f32",
    data: Float32Array.of(2, 0, 0, 0, 1, 0, 0, 0, 1),
  };
  const after = {
    "l.0.q_proj.weight": rankOne,
    "l.1.q_proj.weight": eye(1.5),
    "l.0.up_proj.weight": eye(2),
  };
  const report = rankByLayerType(before, after, Object.keys(before));
  const q = report.find((r) => r.layerType === "q_proj")!;
  assert.equal(q.matrices, 2);
  assert.equal(q.meanRank, 2); // ranks 1 and 3
  assert.equal(q.maxRank, 3);
  assert.equal(report.find((r) => r.layerType === "up_proj")!.maxRank, 0);
  assert.equal(q.ofMatrices, 2);
  // Past the work budget (one 3×3 matrix costs 27): one matrix of each type, the rest counted.
  const sampled = rankByLayerType(before, after, Object.keys(before), { maxWork: 60 });
  const qs = sampled.find((r) => r.layerType === "q_proj")!;
  assert.deepEqual([qs.matrices, qs.ofMatrices], [1, 2]);
  assert.equal(qs.meanRank, 3, "the sample is spread over the layers: l.1, not l.0");
  assert.equal(sampled.find((r) => r.layerType === "up_proj")!.matrices, 1);
});

Deno.test("layerTypes: the last module name, or the path after the layer index where it is shared", () => {
  const gpt2 = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]
    .flatMap((m) => [0, 1].map((l) => `h.${l}.${m}.weight`));
  const types = layerTypes(gpt2);
  assert.equal(types.get("h.1.attn.c_attn.weight"), "c_attn");
  assert.equal(types.get("h.0.attn.c_proj.weight"), "attn.c_proj");
  assert.equal(types.get("h.1.mlp.c_proj.weight"), "mlp.c_proj");
  assert.equal(types.get("h.0.mlp.c_fc.weight"), "c_fc");
  const qwen = ["self_attn.q_proj", "self_attn.o_proj", "mlp.down_proj"]
    .map((m) => `model.layers.7.${m}.weight`);
  assert.deepEqual([...layerTypes(qwen).values()], ["q_proj", "o_proj", "down_proj"]);
  assert.deepEqual([...layerTypes(["w", "head.w"]).values()], ["w", "head.w"]);
});

Deno.test("rankSample: everything within the budget, else an even share of every layer type", () => {
  const names = Array.from({ length: 24 }, (_, l) => [`h.${l}.attn.weight`, `h.${l}.mlp.weight`])
    .flat();
  const shapes = Object.fromEntries(
    names.map((n) => [n, n.includes("attn") ? [10, 10] : [10, 40]]),
  );
  assert.deepEqual(rankSample(shapes, names, Infinity), names);
  // Total 24·1000 + 24·4000 = 120 000: a quarter of the budget keeps 6 of each type.
  const kept = rankSample(shapes, names, 30_000);
  const attn = kept.filter((n) => n.includes("attn")), mlp = kept.filter((n) => n.includes("mlp"));
  assert.equal(attn.length, 6);
  assert.equal(mlp.length, 6);
  assert.deepEqual(attn.map((n) => +n.split(".")[1]), [2, 6, 10, 14, 18, 22]);
  assert.equal(rankSample(shapes, names, 1).length, 2, "at least one of each type");
});

/** Matrices that reach every branch of the Golub–Kahan iteration (zero and tiny diagonal entries,
 * repeated and graded singular values, rank deficiency), with the Jacobi SVD as the oracle. */
const hardMatrix = fc.record({
  m: fc.integer({ min: 1, max: 24 }),
  n: fc.integer({ min: 1, max: 24 }),
  kind: fc.constantFrom("random", "graded", "repeated", "sparse", "lowRank", "bidiagonal"),
  seed: fc.integer(),
}).map(({ m, n, kind, seed }) => {
  let x = seed >>> 0 || 1;
  const rand = () => ((x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 2 ** 31) - 1;
  const a = new Float64Array(m * n);
  const k = Math.min(m, n);
  if (kind === "bidiagonal" || kind === "sparse") {
    // Diagonal and superdiagonal entries, some exactly zero and some tiny.
    for (let i = 0; i < k; i++) {
      const pick = (v: number) => (v < -0.6 ? 0 : v < -0.4 ? 1e-300 * v : v);
      a[i * n + i] = pick(rand());
      if (i + 1 < n) a[i * n + i + 1] = pick(rand());
      if (kind === "sparse" && i + 2 < n) a[i * n + i + 2] = pick(rand());
    }
  } else {
    const rank = kind === "lowRank" ? Math.max(1, Math.floor(k / 3)) : k;
    const sigma = (c: number) =>
      kind === "graded" ? 10 ** (-c) : kind === "repeated" ? (c < k / 2 ? 2 : 1) : 1;
    const u = Array.from({ length: m * rank }, rand), v = Array.from({ length: n * rank }, rand);
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let c = 0; c < rank; c++) s += u[i * rank + c] * sigma(c) * v[j * rank + c];
        a[i * n + j] = kind === "random" ? rand() : s;
      }
    }
  }
  return { m, n, a };
});

Deno.test("svd: Golub–Kahan agrees with one-sided Jacobi on hard matrices (property)", () => {
  checkProperty(
    fc.property(hardMatrix, ({ m, n, a }) => {
      const f = svd(a, m, n);
      const j = svd(a, m, n, { method: "jacobi" });
      const k = Math.min(m, n);
      const top = Math.max(j.s[0], 1e-300);
      for (let i = 0; i < k; i++) {
        assert.ok(
          Math.abs(f.s[i] - j.s[i]) <= 1e-13 * top + 1e-300,
          `σ${i}: ${f.s[i]} vs ${j.s[i]}`,
        );
        if (i > 0) assert.ok(f.s[i - 1] >= f.s[i] && f.s[i] >= 0, "descending, non-negative");
      }
      assert.ok(reconstructionError(a, f) < 1e-13, `reconstruction ${reconstructionError(a, f)}`);
      assert.ok(orthogonalityError(f.u, m, k) < 1e-12, "U orthonormal");
      assert.ok(orthogonalityError(f.v, n, k) < 1e-12, "V orthonormal");
    }),
    { numRuns: 200 },
  );
});
