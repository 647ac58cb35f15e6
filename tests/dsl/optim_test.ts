import assert from "node:assert/strict";
import { interpret } from "../../dsl/interpret.ts";
import { type HostArray, isHostArray } from "../../dsl/host_array.ts";
import { flattenTree } from "../../dsl/pytree.ts";
import {
  adamInit,
  type AdamState,
  adamUpdate,
  biasCorrection,
  clipByGlobalNorm,
  globalNorm,
  sgdInit,
  sgdUpdate,
  warmupCosine,
  warmupLinear,
} from "../../dsl/optim.ts";
import type { Tensor } from "../../dsl/trace.ts";
import { jit } from "../../runtime/jit.ts";
import { assertClose } from "../helpers/arrays.ts";

const vec = (...v: number[]): HostArray => ({
  shape: [v.length],
  dtype: "f32",
  data: Float32Array.from(v),
});
type T = Record<string, Tensor>;

Deno.test("optim: two AdamW steps equal the hand-computed values (bias correction, decoupled decay)", () => {
  const step = (p: T, g: T, s: AdamState<Tensor>) =>
    adamUpdate(p, g, s, 0.1, { weightDecay: 0.01 });
  let params: Record<string, HostArray> = { w: vec(1, -2) };
  let state = adamInit(params);
  // Worked by hand (Kingma & Ba Alg. 1 + Loshchilov & Hutter's decoupled decay, lr 0.1, wd 0.01):
  // t=1: m = (0.05, −0.1), v = (0.00025, 0.001), m̂/√v̂ = sign(g) ⇒ w = w − 0.001·w − 0.1·sign(g).
  const expected = [[0.899000002, -1.898000001], [0.8177969063826516, -1.8449993939894944]];
  const grads = [vec(0.5, -1), vec(0.1, 0.2)];
  grads.forEach((g, i) => {
    const out = interpret(step, params, { w: g }, state) as {
      params: Record<string, HostArray>;
      state: AdamState<HostArray>;
    };
    assertClose(out.params.w, expected[i], { rtol: 1e-6 });
    params = out.params;
    state = out.state;
  });
  assertClose(state.m.w, [0.055, -0.07], { rtol: 1e-6 });
  assertClose(state.v.w, [0.00025975, 0.001039], { rtol: 1e-6 });
  assert.equal(state.step.data[0], 2);
});

Deno.test("optim: bias correction 1 − βᵗ is accurate in f32 on the CPU and on WebGPU", async () => {
  const steps = [1, 2, 3, 10, 100, 1000, 10000];
  const t: HostArray = { shape: [steps.length], dtype: "f32", data: Float32Array.from(steps) };
  const f = (x: Tensor) => [0.9, 0.99, 0.999, 0.5].map((b) => biasCorrection(b, x));
  const gpu = await jit(f)(t) as HostArray[];
  const cpu = interpret(f, t) as HostArray[];
  [0.9, 0.99, 0.999, 0.5].forEach((b, i) => {
    const exact = steps.map((s) => -Math.expm1(s * Math.log(b)));
    for (const got of [cpu[i], gpu[i]]) {
      got.data.forEach((v, j) =>
        assert.ok(
          Math.abs(v - exact[j]) <= 2e-6 * exact[j],
          `β=${b} t=${steps[j]}: ${v} vs ${exact[j]}`,
        )
      );
    }
  });
});

Deno.test("optim: SGD with momentum and Nesterov follow PyTorch's update rule", () => {
  const run = (nesterov: boolean) => {
    let p: Record<string, HostArray> = { w: vec(1) };
    let s = sgdInit(p);
    for (const g of [2, 1]) {
      const out = interpret(
        (pp: T, gg: T, ss: { velocity: T }) =>
          sgdUpdate(pp, gg, ss, 0.5, { momentum: 0.9, nesterov }),
        p,
        { w: vec(g) },
        s,
      ) as { params: Record<string, HostArray>; state: { velocity: Record<string, HostArray> } };
      p = out.params;
      s = out.state;
    }
    return p.w.data[0];
  };
  // b1 = 2, w = 1 − 1 = 0; b2 = 0.9·2 + 1 = 2.8, w = 0 − 1.4 = −1.4.
  assert.ok(Math.abs(run(false) - -1.4) < 1e-6);
  // Nesterov: step = g + μb. Step 1: 2 + 1.8 = 3.8 ⇒ w = −0.9; step 2: 1 + 0.9·2.8 = 3.52 ⇒ w = −2.66.
  assert.ok(Math.abs(run(true) - -2.66) < 1e-6);
});

Deno.test("optim: global-norm clipping scales only when the norm exceeds the limit", () => {
  const clip = (max: number) =>
    interpret((g: T) => clipByGlobalNorm(g, max), { a: vec(3), b: vec(0, 4) }) as {
      grads: Record<string, HostArray>;
      norm: HostArray;
    };
  const big = clip(10);
  assert.equal(big.norm.data[0], 5);
  assertClose(big.grads.b, [0, 4]);
  const small = clip(1);
  assertClose(small.grads.a, [0.6], { rtol: 1e-5 });
  assertClose(small.grads.b, [0, 0.8], { rtol: 1e-5 });
  assertClose(interpret((g: T) => globalNorm(g), { a: vec(1, 2, 2) }) as HostArray, 3);
  assert.throws(
    () => interpret((g: T) => clipByGlobalNorm(g, 0), { a: vec(1) }),
    /maxNorm must be > 0/,
  );
});

Deno.test("optim: schedules — warm-up then cosine / linear decay", () => {
  const cos = warmupCosine(1, 10, 110, 0.1);
  assert.equal(cos(0), 0.1);
  assert.equal(cos(9), 1);
  assert.equal(cos(10), 1);
  assert.ok(Math.abs(cos(60) - 0.55) < 1e-12);
  assert.ok(Math.abs(cos(110) - 0.1) < 1e-12);
  const lin = warmupLinear(2, 0, 100);
  assert.equal(lin(0), 2);
  assert.equal(lin(50), 1);
  assert.equal(lin(100), 0);
  assert.throws(() => warmupCosine(1, 20, 10), /warmup ≤ total/);
});

Deno.test("optim: under jit an Adam step is fused, runs in place, and equals the CPU reference", async () => {
  const params = {
    a: vec(1, 2, 3, 4),
    b: { shape: [2, 2], dtype: "f32" as const, data: Float32Array.of(1, -1, 2, -2) },
  };
  const grads = {
    a: vec(0.1, -0.2, 0.3, 0),
    b: { ...params.b, data: Float32Array.of(0.5, 0.5, -1, 2) },
  };
  const f = (p: T, g: T, s: AdamState<Tensor>, lr: Tensor) =>
    adamUpdate(p, g, s, lr, { weightDecay: 0.1 });
  const step = jit(f, { donate: [0, 2] });
  const lrSpec = { shape: [], dtype: "f32" as const };
  const program = await step.lower(params, grads, adamInit(params), lrSpec);
  // One kernel per parameter updates it and both moments; the step counter is one more.
  assert.ok(program.kernels.length <= 3, program.kernels.map((k) => k.name).join(", "));
  // In place: every output lives in the buffer of a donated input (params 0–1, state 4–8).
  const inputSlots = new Set(program.inputSlots);
  assert.ok(
    program.outputSlots.every((s) => inputSlots.has(s)),
    `outputs ${program.outputSlots} inputs ${program.inputSlots}`,
  );
  const lr: HostArray = { shape: [], dtype: "f32", data: Float32Array.of(0.01) };
  const gpu = await step(params, grads, adamInit(params), lr);
  const cpu = interpret(f, params, grads, adamInit(params), lr) as typeof gpu;
  // Every output: both parameters, both moments of each, and the step count.
  const [got, gotDef] = flattenTree(gpu, isHostArray);
  const [want, wantDef] = flattenTree(cpu, isHostArray);
  assert.deepEqual(gotDef, wantDef);
  assert.equal(want.length, 7);
  want.forEach((w, i) => assertClose(got[i], w, { rtol: 1e-6, label: `leaf ${i}` }));
});
