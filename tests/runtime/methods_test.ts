/**
 * The methods added as records (MiLoRA, DoRA, rsLoRA scaling, HD-MiLoRA, and a user-defined
 * LoRA-FA) against straightforward host implementations: dense per-shard gradients from the CPU
 * reference, f64 loops, f64 Adam. Initial factors are rebuilt here from the host SVD, not taken
 * from the library (LoRA's random A is the one shared input).
 */

import assert from "node:assert/strict";
import type { HostArray } from "../../dsl/host_array.ts";
import { interpret } from "../../dsl/interpret.ts";
import { grad } from "../../dsl/autodiff.ts";
import { loraInit } from "../../dsl/adapters/init.ts";
import { svdOf } from "../../dsl/linalg/svd.ts";
import { linear } from "../../dsl/nn/layers.ts";
import { mean, square, sub } from "../../mod.ts";
import type { Tensor } from "../../dsl/trace.ts";
import { lowRankWeight, type ReplicatedMethod } from "../../dsl/adapters/methods/mod.ts";
import { createTrainer, type Method, type TrainerConfig } from "../../runtime/trainer.ts";
import { randomArray } from "../helpers/models.ts";
import { Adam, assertNear, f64, mm, regressionBatches, tr } from "../helpers/host_methods.ts";

type P = Record<string, Tensor>;
type Batch = Record<string, HostArray>;
const regression = (p: P, b: { x: Tensor; y: Tensor }) => mean(square(sub(linear(b.x, p.w), b.y)));
const [m, n, K, lr] = [7, 6, 3, 0.02];
const params = { w: randomArray([m, n], 9), other: randomArray([3], 1) };
const batches = regressionBatches(K, 4, m, n);

/** dL/dW at a dense W (f64 in, f64 out) from the CPU reference. */
function denseGrad(w: Float64Array, batch: Batch): Float64Array {
  const p = { ...params, w: { shape: [m, n], dtype: "f32" as const, data: Float32Array.from(w) } };
  const g = interpret(grad((q: P) => regression(q, batch as never), { argnums: 0 }), p) as Record<
    string,
    HostArray
  >;
  return f64(g.w);
}

/** √(σ/s)-scaled factors of SVD components `cols` of W: A [r, n], B [m, r]. */
function componentFactors(cols: number[], scale: number) {
  const f = svdOf(params.w);
  const r = cols.length;
  const a = new Float64Array(r * n), b = new Float64Array(m * r);
  cols.forEach((j, c) => {
    const root = Math.sqrt(f.s[j] / scale);
    for (let i = 0; i < n; i++) a[c * n + i] = root * f.v[i * f.k + j];
    for (let i = 0; i < m; i++) b[i * r + c] = root * f.u[i * f.k + j];
  });
  return { a, b, k: f.k };
}

/**
 * Data-parallel low-rank reference: W' = c ⊙ V with V = base + s·B·A and, for DoRA, c = mag/‖V‖
 * per row (‖V‖ held constant in the gradient); else c = 1. Shard gradients averaged; Adam.
 */
function lowRankReference(
  init: { a: Float64Array; b: Float64Array; base: Float64Array; mag?: Float64Array },
  r: number,
  s: number,
): Float64Array[] {
  let { a, b, mag } = init;
  const adamA = new Adam(r * n, lr), adamB = new Adam(m * r, lr), adamM = new Adam(m, lr);
  const weight = () => {
    const ba = mm(b, a, m, r, n);
    const v = init.base.map((x, i) => x + s * ba[i]);
    const c = new Float64Array(m).fill(1);
    const norms = new Float64Array(m);
    for (let i = 0; i < m; i++) {
      norms[i] = Math.hypot(...v.slice(i * n, (i + 1) * n));
      if (mag) c[i] = mag[i] / norms[i];
    }
    return { v, c, norms, w: v.map((x, i) => c[Math.floor(i / n)] * x) };
  };
  const out: Float64Array[] = [];
  batches.forEach((shards, step) => {
    const { v, c, norms, w } = weight();
    const gA = new Float64Array(r * n), gB = new Float64Array(m * r), gM = new Float64Array(m);
    for (const batch of shards) {
      const g = denseGrad(w, batch);
      const gv = g.map((x, i) => c[Math.floor(i / n)] * x);
      mm(tr(b, m, r), gv, r, m, n).forEach((x, i) => (gA[i] += (s * x) / K));
      mm(gv, tr(a, r, n), m, n, r).forEach((x, i) => (gB[i] += (s * x) / K));
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) gM[i] += (g[i * n + j] * v[i * n + j]) / norms[i] / K;
      }
    }
    const dA = adamA.delta(gA, step + 1), dB = adamB.delta(gB, step + 1);
    a = a.map((x, i) => x - dA[i]);
    b = b.map((x, i) => x - dB[i]);
    if (mag) {
      const dM = adamM.delta(gM, step + 1);
      mag = mag.map((x, i) => x - dM[i]);
    }
    out.push(weight().w);
  });
  return out;
}

/** HD- reference: shard k owns columns [k·r, (k+1)·r) of the given B_cat / rows of A_cat. */
function hdReference(aCat: Float64Array, bCat: Float64Array, r: number): Float64Array[] {
  const A = (k: number) => aCat.slice(k * r * n, (k + 1) * r * n);
  const B = (k: number) => tr(tr(bCat, m, K * r).slice(k * r * m, (k + 1) * r * m), r, m);
  const adams = Array.from(
    { length: K },
    () => ({ a: new Adam(r * n, lr), b: new Adam(m * r, lr) }),
  );
  let w = f64(params.w);
  return batches.map((shards, step) => {
    const total = new Float64Array(m * n);
    shards.forEach((batch, k) => {
      const g = denseGrad(w, batch);
      const dA = adams[k].a.delta(mm(tr(B(k), m, r), g, r, m, n), step + 1);
      const dB = adams[k].b.delta(mm(g, tr(A(k), r, n), m, n, r), step + 1);
      const u1 = mm(dB, A(k), m, r, n);
      const u2 = mm(B(k).map((x, i) => x - dB[i]), dA, m, r, n);
      total.forEach((_, i) => (total[i] += u1[i] + u2[i]));
    });
    w = w.map((x, i) => x - total[i]);
    return w;
  });
}

async function trainAndCompare(
  cfg: Partial<TrainerConfig>,
  want: Float64Array[],
  rtol: number,
  label: string,
) {
  const trainer = await createTrainer({
    loss: regression,
    params,
    adapt: ["w"],
    method: "lora",
    devices: K,
    rank: 2,
    optimizer: { lr },
    ...cfg,
  });
  for (let s = 0; s < batches.length; s++) {
    await trainer.step(batches[s]);
    const p = await trainer.params();
    assertNear(p.w, want[s], rtol, `${label} step ${s}`);
    assert.deepEqual(p.other, params.other);
  }
  return trainer;
}

const range = (from: number, count: number) => Array.from({ length: count }, (_, i) => from + i);

Deno.test("methods: MiLoRA trains the r minor components over a frozen residual", async () => {
  const r = 2, s = 1;
  const { a, b, k } = componentFactors(range(6 - r, r), s);
  const ba = mm(b, a, m, r, n);
  const base = f64(params.w).map((x, i) => x - s * ba[i]);
  assert.equal(k, 6);
  const want = lowRankReference({ a, b, base }, r, s);
  const t = await trainAndCompare({ method: "milora", rank: r }, want, 2e-5, "milora");
  const exp = await t.adapters();
  assert.ok(exp?.initial, "MiLoRA exports its initial factors (PEFT subtracts them)");
});

Deno.test("methods: DoRA = magnitude ⊙ row-normalised W + s·B·A, the norm constant in backward", async () => {
  const r = 2, s = 0.5;
  const lora = loraInit(params.w, r, 0);
  const mag = new Float64Array(m).map((_, i) =>
    Math.hypot(...f64(params.w).slice(i * n, (i + 1) * n))
  );
  const init = { a: f64(lora.a), b: f64(lora.b), base: f64(params.w), mag };
  const want = lowRankReference(init, r, s);
  const t = await trainAndCompare({ method: "dora", rank: r, alpha: 1 }, want, 5e-5, "dora");
  const exp = await t.adapters();
  assert.equal(exp?.trained.magnitude?.w.shape.join(), String(m));
});

Deno.test("methods: rsLoRA scales LoRA and PiSSA by α/√r", async () => {
  const r = 4, alpha = 4, s = alpha / Math.sqrt(r);
  const lora = loraInit(params.w, r, 0);
  const want = lowRankReference({ a: f64(lora.a), b: f64(lora.b), base: f64(params.w) }, r, s);
  const t = await trainAndCompare(
    { method: "lora", rank: r, alpha, rsLora: true },
    want,
    2e-5,
    "rslora",
  );
  assert.equal((await t.adapters())?.trained.useRslora, true);
  const p = componentFactors(range(0, r), s);
  const ba = mm(p.b, p.a, m, r, n);
  const base = f64(params.w).map((x, i) => x - s * ba[i]);
  const wantPissa = lowRankReference({ a: p.a, b: p.b, base }, r, s);
  await trainAndCompare(
    { method: "pissa", rank: r, alpha, rsLora: true },
    wantPissa,
    2e-5,
    "rs-pissa",
  );
});

Deno.test("methods: HD-MiLoRA shards the K·r minor components as HD-PiSSA shards the principal ones", async () => {
  const r = 1;
  const { a, b } = componentFactors(range(6 - K * r, K * r), 1);
  const want = hdReference(a, b, r);
  await trainAndCompare({ method: "hd-milora", rank: r }, want, 2e-5, "hd-milora");
  // The same with the principal components is HD-PiSSA.
  const p = componentFactors(range(0, K * r), 1);
  await trainAndCompare({ method: "hdpissa", rank: r }, hdReference(p.a, p.b, r), 2e-5, "hdpissa");
});

/** LoRA-FA (Zhang et al., 2023): A frozen at its random initialisation, only B trained. */
const loraFa: ReplicatedMethod = {
  name: "lora-fa",
  summary: "LoRA with a frozen random A",
  family: "replicated",
  usesRank: true,
  init(w, ctx) {
    const { a, b } = loraInit(w, ctx.rank, 7 + ctx.index);
    return { base: w, trained: { b }, frozen: { a } };
  },
  weight: (base, t, f, s) => lowRankWeight(base, { a: f.a, b: t.b }, s),
  trainedElements: (rows, _cols, r) => rows * r,
};

for (const mode of ["virtual", "devices"] as const) {
  Deno.test(`methods: a user-defined record (LoRA-FA) trains in mode ${mode} like its reference`, async () => {
    const r = 2;
    const a = f64(loraInit(params.w, r, 7).a);
    // B's gradient only: the reference with A's learning rate at 0 is LoRA-FA.
    let b = new Float64Array(m * r);
    const adamB = new Adam(m * r, lr);
    const want = batches.map((shards, step) => {
      const w = f64(params.w).map((x, i) => x + mm(b, a, m, r, n)[i]);
      const gB = new Float64Array(m * r);
      for (const batch of shards) {
        mm(denseGrad(w, batch), tr(a, r, n), m, n, r).forEach((x, i) => (gB[i] += x / K));
      }
      const dB = adamB.delta(gB, step + 1);
      b = b.map((x, i) => x - dB[i]);
      const ba = mm(b, a, m, r, n);
      return f64(params.w).map((x, i) => x + ba[i]);
    });
    const t = await trainAndCompare(
      { method: loraFa, rank: r, mode },
      want,
      2e-5,
      `lora-fa ${mode}`,
    );
    assert.equal(t.method, "lora-fa");
    // The cost model counts what the record trains: B only.
    assert.equal(t.stats().bytesCommunicated, 4 * (2 * (K - 1) / K) * m * r);
    assert.equal(await t.adapters(), undefined, "no PEFT export declared");
    await t.close();
  });
}

Deno.test("methods: a record whose init disagrees with its trainedElements fails naming it", async () => {
  const broken = { ...loraFa, name: "broken", trainedElements: () => 1 };
  await assert.rejects(
    createTrainer({
      loss: regression,
      params,
      adapt: ["w"],
      method: broken,
      devices: 2,
      rank: 2,
      optimizer: { lr },
    }),
    /broken\.init\("w"\): trains 14 elements, its trainedElements\(7, 6, 2\) says 1/,
  );
  const names: Method[] = ["hdpissa", "hd-milora", "pissa", "milora", "lora", "dora", "full"];
  for (const method of names) {
    const t = await createTrainer({
      loss: regression,
      params,
      adapt: ["w"],
      method,
      devices: 2,
      rank: 2,
      optimizer: { lr },
    });
    assert.equal(t.method, method);
    await t.close();
  }
});
