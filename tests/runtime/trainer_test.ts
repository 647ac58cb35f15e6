import assert from "node:assert/strict";
import type { HostArray } from "../../dsl/host_array.ts";
import { interpret } from "../../dsl/interpret.ts";
import { grad } from "../../dsl/autodiff.ts";
import { hdpissaInit, pissaInit } from "../../dsl/adapters/init.ts";
import { effectiveRank } from "../../dsl/linalg/rank.ts";
import { svdOf } from "../../dsl/linalg/svd.ts";
import { linear } from "../../dsl/nn/layers.ts";
import { initParams, lmLoss } from "../../dsl/nn/transformer.ts";
import { mean, square, sub } from "../../mod.ts";
import type { Tensor } from "../../dsl/trace.ts";
import { createTrainer, type Method, type TrainerConfig } from "../../runtime/trainer.ts";
import { randomArray } from "../helpers/models.ts";
import { Adam, assertNear, f64, mm, regressionBatches, tr } from "../helpers/host_methods.ts";
import { TINY_LLAMA } from "../helpers/tiny_models.ts";
import { checkStepMemory, HOST_MEMORY_SHARE } from "../../runtime/step_plan.ts";
import { DslError } from "../../dsl/errors.ts";
import { gpu } from "../../runtime/device.ts";

type P = Record<string, Tensor>;
const regression = (p: P, b: { x: Tensor; y: Tensor }) => mean(square(sub(linear(b.x, p.w), b.y)));

/** The configuration of a trainer of `regression` adapting `w`. */
const regressionConfig = (
  params: Record<string, HostArray>,
  method: Method,
  K: number,
  r: number,
  lr: number | ((step: number) => number),
): TrainerConfig => ({
  loss: regression,
  params,
  adapt: ["w"],
  method,
  devices: K,
  rank: r,
  optimizer: { lr },
});

/** A trainer of `regression` adapting `w`. */
const regressionTrainer = (
  params: Record<string, HostArray>,
  method: Method,
  K: number,
  r: number,
  lr: number,
) => createTrainer(regressionConfig(params, method, K, r, lr));

/**
 * Each method written directly on the host: dense per-shard gradients Gₖ from the CPU reference
 * (`interpret(grad)`), explicit loops over shards, f64 Adam — independent of the compiled steps.
 */
function referenceRun(
  method: Method,
  loss: TrainerConfig["loss"],
  params: Record<string, HostArray>,
  name: string,
  batches: Record<string, HostArray>[][],
  opts: { K: number; r: number; lr: number; alpha?: number },
): Float64Array[] {
  const [m, n] = params[name].shape;
  const { K, r, lr } = opts;
  const denseGrad = (w: Float64Array, batch: Record<string, HostArray>) => {
    const p = {
      ...params,
      [name]: { shape: [m, n], dtype: "f32" as const, data: Float32Array.from(w) },
    };
    const g = interpret(grad((q: P) => loss(q, batch), { argnums: 0 }), p) as Record<
      string,
      HostArray
    >;
    return f64(g[name]);
  };
  const out: Float64Array[] = [];
  if (method === "hdpissa") {
    const init = hdpissaInit(params[name], r, K);
    const A = (k: number) => f64(init.aCat).slice(k * r * n, (k + 1) * r * n);
    const B = (k: number) =>
      tr(tr(f64(init.bCat), m, K * r).slice(k * r * m, (k + 1) * r * m), r, m);
    const adams = Array.from(
      { length: K },
      () => ({ a: new Adam(r * n, lr), b: new Adam(m * r, lr) }),
    );
    let w = f64(params[name]);
    batches.forEach((shards, s) => {
      const total = new Float64Array(m * n);
      shards.forEach((batch, k) => {
        const g = denseGrad(w, batch);
        const dA = adams[k].a.delta(mm(tr(B(k), m, r), g, r, m, n), s + 1);
        const dB = adams[k].b.delta(mm(g, tr(A(k), r, n), m, n, r), s + 1);
        const bMinus = B(k).map((v, i) => v - dB[i]);
        const u1 = mm(dB, A(k), m, r, n), u2 = mm(bMinus, dA, m, r, n);
        total.forEach((_, i) => (total[i] += u1[i] + u2[i]));
      });
      w = w.map((v, i) => v - total[i]);
      out.push(w);
    });
    return out;
  }
  if (method === "full") {
    const adam = new Adam(m * n, lr);
    let w = f64(params[name]);
    batches.forEach((shards, s) => {
      const g = new Float64Array(m * n);
      shards.forEach((batch) => denseGrad(w, batch).forEach((v, i) => (g[i] += v / K)));
      const d = adam.delta(g, s + 1);
      w = w.map((v, i) => v - d[i]);
      out.push(w);
    });
    return out;
  }
  // PiSSA (the one initialisation is shared with the trainer; everything after is independent).
  const s0 = (opts.alpha ?? r) / r;
  const init = pissaInit(params[name], r, opts.alpha ?? r);
  let a = f64(init.a), b = f64(init.b);
  const res = f64(init.residual);
  const adamA = new Adam(r * n, lr), adamB = new Adam(m * r, lr);
  batches.forEach((shards, s) => {
    const ba = mm(b, a, m, r, n);
    const w = res.map((v, i) => v + s0 * ba[i]);
    const gA = new Float64Array(r * n), gB = new Float64Array(m * r);
    shards.forEach((batch) => {
      const g = denseGrad(w, batch);
      mm(tr(b, m, r), g, r, m, n).forEach((v, i) => (gA[i] += (s0 * v) / K));
      mm(g, tr(a, r, n), m, n, r).forEach((v, i) => (gB[i] += (s0 * v) / K));
    });
    const dA = adamA.delta(gA, s + 1), dB = adamB.delta(gB, s + 1);
    a = a.map((v, i) => v - dA[i]);
    b = b.map((v, i) => v - dB[i]);
    const merged = mm(b, a, m, r, n);
    out.push(res.map((v, i) => v + s0 * merged[i]));
  });
  return out;
}

for (const method of ["hdpissa", "pissa", "full"] as Method[]) {
  Deno.test(`trainer (${method}): agrees with a straightforward implementation on linear regression`, async () => {
    const [m, n, K, r, lr] = [7, 6, 3, 2, 0.02];
    const params = { w: randomArray([m, n], 9), other: randomArray([3], 1) };
    const batches = regressionBatches(K, 4, m, n);
    const trainer = await regressionTrainer(params, method, K, r, lr);
    const want = referenceRun(method, regression, params, "w", batches, { K, r, lr });
    for (let s = 0; s < batches.length; s++) {
      const { loss } = await trainer.step(batches[s]);
      assert.equal(loss.length, K);
      const p = await trainer.params();
      assertNear(p.w, want[s], 1e-5, `${method} step ${s}`);
      assert.deepEqual(p.other, params.other);
    }
    assert.equal(trainer.stats().step, 4);
    // Spec cost model (f32 bytes one rank sends per step), Σ over adapted matrices:
    const bytes = {
      hdpissa: (K - 1) * r * (m + n),
      pissa: (2 * (K - 1) / K) * r * (m + n),
      full: (2 * (K - 1) / K) * m * n,
    };
    const expected = 4 * bytes[method as "hdpissa" | "pissa" | "full"];
    assert.ok(Math.abs(trainer.stats().bytesCommunicated - expected) < 1e-9 * expected);
    assert.ok(trainer.stats().kernelsPerStep > 0);
  });
}

Deno.test("trainer: HD-PiSSA and PiSSA agree with the straightforward implementation on a tiny transformer", async () => {
  const cfg = TINY_LLAMA;
  const params = initParams(cfg, 4);
  const loss = (p: P, b: { ids: Tensor; targets: Tensor; mask: Tensor }) => lmLoss(cfg, p, b);
  const name = "model.layers.1.self_attn.q_proj.weight";
  const K = 2;
  const batch = (seed: number) => {
    const ids = randomArray([2, 6], seed, 1);
    const toIds = (a: HostArray): HostArray => ({
      shape: a.shape,
      dtype: "i32",
      data: Int32Array.from(a.data, (v) => Math.floor((v + 1) * 8)),
    });
    return {
      ids: toIds(ids),
      targets: toIds(randomArray([2, 6], seed + 1)),
      mask: { shape: [2, 6], dtype: "f32" as const, data: new Float32Array(12).fill(1) },
    };
  };
  const batches = [0, 1, 2].map((s) => [batch(10 * s), batch(10 * s + 5)]);
  for (const method of ["hdpissa", "pissa"] as Method[]) {
    const trainer = await createTrainer({
      loss,
      params,
      adapt: [name],
      method,
      devices: K,
      rank: 2,
      optimizer: { lr: 0.01 },
    });
    const want = referenceRun(method, loss, params, name, batches, { K, r: 2, lr: 0.01 });
    for (let s = 0; s < 3; s++) {
      await trainer.step(batches[s]);
      assertNear((await trainer.params())[name], want[s], 1e-5, `${method} transformer step ${s}`);
    }
  }
});

Deno.test("trainer: K = 1, t = 1 HD-PiSSA equals one PiSSA step (s = 1); the second step differs", async () => {
  const [m, n] = [8, 6];
  const params = { w: randomArray([m, n], 21) };
  const batches = regressionBatches(1, 2, m, n);
  const make = (method: Method) => regressionTrainer(params, method, 1, 2, 0.05);
  const hd = await make("hdpissa"), pissa = await make("pissa");
  const pissaInitW = (await pissa.params()).w;
  pissaInitW.data.forEach((v, i) =>
    assert.ok(Math.abs(v - params.w.data[i]) < 1e-6, "PiSSA's merged model is W at init")
  );
  await hd.step(batches[0]), await pissa.step(batches[0]);
  const [a, b] = [(await hd.params()).w, (await pissa.params()).w];
  a.data.forEach((v, i) =>
    assert.ok(Math.abs(v - b.data[i]) < 2e-6, `t=1 element ${i}: ${v} vs ${b.data[i]}`)
  );
  await hd.step(batches[1]), await pissa.step(batches[1]);
  const [a2, b2] = [(await hd.params()).w, (await pissa.params()).w];
  assert.ok(a2.data.some((v, i) => Math.abs(v - b2.data[i]) > 1e-5), "t=2 should differ");
});

Deno.test("trainer: accumulated update rank — HD-PiSSA reaches 2·K·r, DP-PiSSA 2r, DP-LoRA r", async () => {
  const [m, n, K, r] = [16, 14, 3, 2];
  const params = { w: randomArray([m, n], 5) };
  const batches = regressionBatches(K, 25, m, n);
  const ranks: Record<string, number> = {};
  for (const method of ["hdpissa", "pissa", "lora"] as Method[]) {
    const trainer = await regressionTrainer(params, method, K, r, 0.02);
    for (const b of batches) await trainer.step(b);
    const w = (await trainer.params()).w;
    const delta: HostArray = { ...w, data: w.data.map((v, i) => v - params.w.data[i]) };
    ranks[method] = effectiveRank(delta, { threshold: 1e-3 }).rank;
  }
  assert.deepEqual(ranks, { hdpissa: 2 * K * r, pissa: 2 * r, lora: r });
});

Deno.test("trainer: bad configuration is rejected with a message naming the field", async () => {
  const params = { w: randomArray([4, 3], 1), b: randomArray([4], 2) };
  const base = regressionConfig(params, "hdpissa", 2, 1, 0.1);
  const cases: [Partial<TrainerConfig>, RegExp][] = [
    [{ rank: 0 }, /rank: must be an integer ≥ 1/],
    [{ rank: 2, devices: 3 }, /device 2 would own only zero padding/],
    [{ adapt: ["b"] }, /"b" is f32\[4\]; only 2-D f32 weights/],
    [{ adapt: ["nope"] }, /"nope" is not a parameter/],
    [{ adapt: [] }, /adapt: name at least one/],
    [{ method: "pissa", alpha: 0 }, /alpha: must be a finite number > 0/],
    [{ method: "vera" as Method }, /method: must be one of/],
    [{ devices: 0 }, /devices: must be an integer ≥ 1/],
    [{ optimizer: { lr: -1 } }, /optimizer\.lr: must be > 0/],
    [{ mode: "cluster" as "mpi" }, /mode: must be "virtual", "devices" or "mpi"/],
    [{ verifyReplicasEvery: 0 }, /verifyReplicasEvery: must be an integer ≥ 1/],
  ];
  for (const [patch, pattern] of cases) {
    await assert.rejects(
      createTrainer({ ...base, ...patch }),
      pattern,
      JSON.stringify(Object.keys(patch)),
    );
  }
  const t = await createTrainer(base);
  await assert.rejects(
    t.step([{ x: randomArray([2, 3], 1), y: randomArray([2, 4], 2) }]),
    /expected 2 shard batches/,
  );
});

Deno.test("trainer: at init the model is the base model bit for bit (HD-PiSSA, full) or to rounding (PiSSA, LoRA)", async () => {
  const params = { w: randomArray([9, 7], 2) };
  for (const method of ["hdpissa", "full", "pissa", "lora"] as Method[]) {
    const t = await regressionTrainer(params, method, 2, 2, 0.1);
    const w = (await t.params()).w;
    if (method === "hdpissa" || method === "full" || method === "lora") {
      assert.deepEqual(w.data, params.w.data, method);
    } else w.data.forEach((v, i) => assert.ok(Math.abs(v - params.w.data[i]) < 1e-6));
  }
});

Deno.test("trainer: HD-PiSSA's update lies in span(U_Kr) ⊕ span(V_Kr) up to second-order terms", async () => {
  const [m, n, K, r] = [14, 12, 2, 2];
  const params = { w: randomArray([m, n], 17) };
  const t = await regressionTrainer(params, "hdpissa", K, r, 0.005);
  for (const b of regressionBatches(K, 5, m, n)) await t.step(b);
  const w = (await t.params()).w;
  const delta = Float64Array.from(w.data, (v, i) => v - params.w.data[i]);
  // (I − P_U)·ΔW·(I − P_V) with P_U, P_V the projectors on the top K·r singular vectors of W₀.
  const f = svdOf(params.w);
  const proj = (basis: Float64Array, size: number) => {
    const p = new Float64Array(size * size);
    for (let i = 0; i < size; i++) {
      for (let j = 0; j < size; j++) {
        let s = 0;
        for (let c = 0; c < K * r; c++) s += basis[i * f.k + c] * basis[j * f.k + c];
        p[i * size + j] = (i === j ? 1 : 0) - s;
      }
    }
    return p;
  };
  const outside = mm(mm(proj(f.u, m), delta, m, m, n), proj(f.v, n), m, n, n);
  const norm = (x: Float64Array) => Math.sqrt(x.reduce((s, v) => s + v * v, 0));
  const ratio = norm(outside) / norm(delta);
  // First-order terms vanish outside; what remains is ΔB·ΔA-sized (≈ lr² against lr).
  assert.ok(ratio < 0.05, `outside fraction ${ratio}`);
  assert.ok(norm(delta) > 1e-3);
});

Deno.test("trainer: snapshot/restore continues bit for bit (every method)", async () => {
  const [m, n, K] = [6, 5, 2];
  const params = { w: randomArray([m, n], 31) };
  const batches = regressionBatches(K, 4, m, n);
  for (const method of ["hdpissa", "pissa", "lora", "full"] as Method[]) {
    const cfg = regressionConfig(params, method, K, 2, (s) => 0.05 / (1 + s));
    const straight = await createTrainer(cfg);
    for (const b of batches) await straight.step(b);
    const first = await createTrainer(cfg);
    for (const b of batches.slice(0, 2)) await first.step(b);
    const snap = await first.snapshot();
    const resumed = await createTrainer(cfg);
    await resumed.restore(snap);
    assert.equal(resumed.stats().step, 2);
    for (const b of batches.slice(2)) await resumed.step(b);
    assert.deepEqual((await resumed.params()).w.data, (await straight.params()).w.data, method);
    assert.ok(Object.keys(snap.tensors).some((k) => k.startsWith("state/")));
  }
  const t = await regressionTrainer(params, "full", K, 2, 0.1);
  await assert.rejects(t.restore({ step: 1, tensors: {} }), /snapshot lacks/);
});

Deno.test("trainer.enqueue: losses read later are the step-by-step losses, in order (every mode)", async () => {
  const [m, n, K] = [6, 5, 2];
  const params = { w: randomArray([m, n], 33) };
  const batches = regressionBatches(K, 5, m, n);
  for (const mode of ["virtual", "devices"] as const) {
    for (const method of ["hdpissa", "lora"] as Method[]) {
      const cfg: TrainerConfig = { ...regressionConfig(params, method, K, 2, 0.05), mode };
      const stepwise = await createTrainer(cfg);
      const expected = [];
      for (const b of batches) expected.push((await stepwise.step(b)).loss);
      const queued = await createTrainer(cfg);
      for (const b of batches.slice(0, 3)) await queued.enqueue(b);
      assert.equal(queued.stats().step, 3);
      const first = await queued.readLosses();
      assert.deepEqual(await queued.readLosses(), [], "a read empties the queue");
      await queued.enqueue(batches[3]);
      // A plain step in between reads only its own losses; the queued step's stay queued.
      const last = (await queued.step(batches[4])).loss;
      const fourth = await queued.readLosses();
      assert.deepEqual(first, expected.slice(0, 3), `${mode} ${method}`);
      assert.deepEqual(fourth, [expected[3]], `${mode} ${method}`);
      assert.deepEqual(last, expected[4], `${mode} ${method}`);
      assert.deepEqual((await queued.params()).w.data, (await stepwise.params()).w.data);
      await stepwise.close(), await queued.close();
    }
  }
});

/** A 12×10 HD-PiSSA regression trainer (K = 2, r = 2) and one batch of 6 rows per shard. */
async function smallHdPissa() {
  const [m, n, K, r, rows] = [12, 10, 2, 2, 6];
  const params = { w: randomArray([m, n], 1), u: randomArray([3], 2) };
  const shards = Array.from({ length: K }, (_, k) => ({
    x: randomArray([rows, n], 10 + k),
    y: randomArray([rows, m], 20 + k),
  }));
  const trainer = await regressionTrainer(params, "hdpissa", K, r, 0.01);
  return { m, n, K, r, rows, shards, trainer };
}

Deno.test("trainer.plan: a step's weights, adapter state, batch and matmul work, before it runs", async () => {
  const { m, n, K, r, rows, shards, trainer } = await smallHdPissa();
  const plan = await trainer.plan!(shards);
  assert.equal(trainer.stats().step, 0, "planning runs nothing");
  assert.equal(plan.parameterBytes, 4 * (m * n + 3));
  // A_cat [K·r, n], B_cat [m, K·r], Adam moments of ΔA [K, r, n] and ΔB [K, m, r], the step count.
  assert.equal(plan.adapterStateBytes, 4 * (3 * K * r * (m + n)) + 4);
  assert.equal(plan.batchBytes, 4 * K * rows * (n + m) + 4); // + the learning rate
  // The forward x·Wᵀ per shard at least (its backward and the projections add more).
  assert.ok(plan.matmulFlops >= 2 * K * rows * m * n, `${plan.matmulFlops}`);
  assert.ok(plan.totalBytes >= plan.parameterBytes + plan.adapterStateBytes + plan.batchBytes);
  assert.ok(plan.activationPeakBytes > 0 && plan.kernels > 0);
  await trainer.step(shards);
  assert.equal((await trainer.plan!(shards)).kernels, trainer.stats().kernelsPerStep);
  await trainer.close();
});

Deno.test("checkStepMemory: a CPU adapter's step past the host's available memory stops, naming what to reduce", async () => {
  const { shards, trainer } = await smallHdPissa();
  const plan = await trainer.plan!(shards);
  const needed = plan.activationPeakBytes + plan.batchBytes;
  const fits = needed / HOST_MEMORY_SHARE + 1;
  checkStepMemory(plan, { cpuAdapter: true, availableBytes: fits });
  checkStepMemory(plan, { cpuAdapter: false, availableBytes: 1 }); // a GPU's size is unknown
  checkStepMemory(plan, { cpuAdapter: true, availableBytes: undefined }); // no --allow-sys
  assert.throws(
    () =>
      checkStepMemory(plan, { cpuAdapter: true, availableBytes: fits - 64, op: "trainer.step" }),
    (e: Error) =>
      e instanceof DslError && e.op === "trainer.step" &&
      e.message.includes(plan.largestBuffer.what) &&
      /--checkpoint-activations/.test(e.message) && /--batch/.test(e.message),
  );
  await trainer.close();
});

Deno.test("trainer.profile: every kernel of the step timed; the state is left as it was", async () => {
  const { shards, trainer } = await smallHdPissa();
  await trainer.step(shards); // non-zero optimizer moments, so a clobbered one would show
  const before = await trainer.params();
  const snapshot = await trainer.snapshot();
  const timings = await trainer.profile!(shards);
  assert.equal(timings.length, (await trainer.plan!(shards)).kernels);
  assert.ok(timings.every((t) => t.ms >= 0 && t.wgsl.includes("@compute") && t.ops.length > 0));
  // The device's own clock where it has timestamp queries (lavapipe does), else wall time.
  const stamps = (await gpu()).info.features.includes("timestamp-query");
  assert.ok(timings.every((t) => t.clock === (stamps ? "device" : "wall")));
  assert.ok(timings.some((t) => t.ms > 0), "some kernel takes time");
  // Each kernel's first run alone, on the wall clock.
  assert.ok(timings.every((t) => Number.isFinite(t.firstMs) && t.firstMs >= 0));
  assert.ok(timings.some((t) => t.firstMs > 0), "some kernel's first run takes time");
  assert.equal(trainer.stats().step, 1);
  assert.deepEqual(await trainer.params(), before, "profiling updates nothing");
  // Nor the adapter and optimizer state (slices, moments, step count).
  assert.ok(Object.keys(snapshot.tensors).some((k) => k.startsWith("state/")));
  assert.deepEqual(await trainer.snapshot(), snapshot, "profiling leaves the state as it was");
  await trainer.close();
});
