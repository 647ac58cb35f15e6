/**
 * The matmul autotuner (issue 15): shape classes, the fastest candidate per class by the timer's
 * word, choices cached per adapter in memory and in a file (timed once), the tuned tunables
 * reaching the kernels of their class only, and the tuned program's values.
 */

import assert from "node:assert/strict";
import * as dsl from "../../mod.ts";
import {
  fileTuneStore,
  gpu,
  interpret,
  jit,
  lower,
  type MatmulChoice,
  matmulClass,
  matmulProblems,
  type Tensor,
  trace,
  tuneMatmuls,
} from "../../mod.ts";
import { CPU_CODEGEN } from "../../runtime/jit.ts";
import { TUNE_TRIALS } from "../../runtime/autotune.ts";
import { assertTreeMatches } from "./jit_helpers.ts";
import { randomArray } from "../helpers/models.ts";
import { SMALL_TILING } from "../helpers/matmul_configs.ts";

const spec = (...shape: number[]) => ({ shape, dtype: "f32" as const });

Deno.test("matmul shape classes: layout, sizes up to a power of two, batching", () => {
  const f = (a: Tensor, w: Tensor, x: Tensor, q: Tensor) => [
    dsl.matmul(a, dsl.transpose(w)), // NT 100×48 by 30
    dsl.matmul(dsl.transpose(a), x), // TN 30×20 by 100
    dsl.matmul(q, dsl.transpose(q, [0, 2, 1])), // batched NT
  ];
  const g = trace(f, spec(100, 30), spec(48, 30), spec(100, 20), spec(3, 8, 5));
  const classes = matmulProblems(g).map((p) => p.cls);
  assert.ok(classes.includes("nt 128x64x32"), classes.join(", "));
  assert.ok(classes.includes("tn 32x32x128"), classes.join(", "));
  assert.ok(classes.includes("nt 8x8x8 batched"), classes.join(", "));
  const problem = matmulProblems(g).find((p) => p.cls === "tn 32x32x128")!;
  assert.deepEqual([problem.M, problem.N, problem.K, problem.batch], [30, 20, 100, 1]);
  const mm = g.nodes.find((n) => n.op === "matmul")!;
  assert.equal(matmulClass(mm), "nt 128x64x32");
});

/**
 * A timer that says candidate `fastest` is the fastest (the tuner times each candidate
 * `TUNE_TRIALS` times in a row) and counts the candidates it timed.
 */
function fakeTimer(candidates: number, fastest: number) {
  const timer = { calls: 0, timed: 0, time: () => Promise.resolve(0) };
  timer.time = () => {
    const i = Math.floor(timer.calls++ / TUNE_TRIALS) % candidates;
    timer.timed = Math.ceil(timer.calls / TUNE_TRIALS);
    return Promise.resolve(i === fastest ? 1 : 2 + i);
  };
  return timer;
}

const CANDIDATES: MatmulChoice[] = [
  {},
  { matmulNtTile: { rows: 8, cols: 8 } },
  { matmulNtTile: { rows: 4, cols: 8 } },
];

Deno.test("tuneMatmuls: the fastest candidate per class, timed once, then read from the store", async () => {
  const device = await gpu();
  const dir = await Deno.makeTempDir({ prefix: "autotune-" });
  try {
    const g = trace(
      (x: Tensor, w: Tensor, v: Tensor) => [
        dsl.matmul(x, dsl.transpose(w)),
        dsl.matmul(x, dsl.transpose(v)),
      ],
      spec(32, 16),
      spec(24, 16),
      spec(20, 16),
    );
    const problems = matmulProblems(g);
    assert.deepEqual(problems.map((p) => p.cls), ["nt 32x32x16"], "one class for both");
    const timer = fakeTimer(CANDIDATES.length, 2);
    const store = fileTuneStore(`${dir}/tune.json`);
    const opts = { candidates: CANDIDATES, reps: 1, store, time: timer.time };
    const first = await tuneMatmuls(device, problems, { ...CPU_CODEGEN }, opts);
    assert.deepEqual(first.get(problems[0].cls), CANDIDATES[2]);
    assert.equal(timer.timed, CANDIDATES.length, "each candidate timed once");
    // Again in this process, then from the file alone (a new store object): not timed again.
    await tuneMatmuls(device, problems, { ...CPU_CODEGEN }, opts);
    const copy = fileTuneStore(`${dir}/copy.json`);
    await Deno.copyFile(`${dir}/tune.json`, `${dir}/copy.json`);
    const again = await tuneMatmuls(device, problems, { ...CPU_CODEGEN }, { ...opts, store: copy });
    assert.equal(timer.timed, CANDIDATES.length, "cached choices are not timed again");
    assert.deepEqual(again.get(problems[0].cls), CANDIDATES[2]);
    // Other candidates are another question: timed.
    await tuneMatmuls(device, problems, { ...CPU_CODEGEN }, {
      ...opts,
      candidates: CANDIDATES.slice(0, 2),
      time: fakeTimer(2, 0).time,
    });
    const stored = JSON.parse(await Deno.readTextFile(`${dir}/tune.json`));
    assert.equal(Object.keys(stored).length, 2, "one entry per candidate list and class");
    assert.ok(Object.keys(stored).every((k) => k.startsWith(device.info.vendor)));
    // An unreadable file is tuned again and rewritten whole.
    await Deno.writeTextFile(`${dir}/bad.json`, "{ not json");
    const bad = fileTuneStore(`${dir}/bad.json`);
    const timer2 = fakeTimer(CANDIDATES.length, 1);
    await tuneMatmuls(device, problems, { ...CPU_CODEGEN }, {
      ...opts,
      store: bad,
      time: timer2.time,
    });
    assert.equal(timer2.timed, CANDIDATES.length);
    assert.equal(Object.keys(JSON.parse(await Deno.readTextFile(`${dir}/bad.json`))).length, 1);
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      ["bad.json", "copy.json", "tune.json"],
      "no temporary file left",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tuneMatmuls keeps the device's own settings unless another candidate is clearly faster", async () => {
  const device = await gpu();
  const g = trace((x: Tensor, w: Tensor) => dsl.matmul(x, w), spec(8, 12), spec(12, 4));
  const problems = matmulProblems(g);
  for (const [second, chosen] of [[0.99, 0], [0.9, 1]] as const) {
    let calls = 0;
    const time = () => Promise.resolve(Math.floor(calls++ / TUNE_TRIALS) === 0 ? 1 : second);
    const table = await tuneMatmuls(device, problems, { ...CPU_CODEGEN }, {
      candidates: [{}, { matmulRowBlock: chosen === 0 ? 8 : 16 }],
      reps: 1,
      store: null,
      time,
    });
    const choice = table.get(problems[0].cls)!;
    assert.equal(Object.keys(choice).length, chosen, `second candidate at ${second} of the first`);
  }
});

Deno.test("a tuned choice reaches the kernels of its class only", () => {
  const f = (x: Tensor, w: Tensor, a: Tensor, b: Tensor) => [
    dsl.matmul(x, dsl.transpose(w)), // nt 64x64x32
    dsl.matmul(a, b), // nn 32x32x32
  ];
  const g = trace(f, spec(64, 32), spec(64, 32), spec(32, 32), spec(32, 32));
  const opts = {
    maxStorageBuffers: 16,
    matmulTilings: [SMALL_TILING],
    matmulMinWorkgroups: 1,
    matmulNtInPlace: true,
    groupKernels: false,
  };
  const shared = (p: ReturnType<typeof lower>) =>
    p.kernels.map((k) => k.wgsl.includes("var<workgroup>"));
  assert.deepEqual(shared(lower(g, opts)), [true, true], "both tiled without a choice");
  const tuned = new Map([["nt 64x64x32", { matmulTilings: [] }]]);
  assert.deepEqual(
    shared(lower(g, { ...opts, matmulTuned: tuned })),
    [false, true],
    "the NT product takes the register kernel it was tuned to; the NN keeps the tiling",
  );
});

Deno.test("jit with autotune computes what it did, with the tuned kernels", async () => {
  const f = (x: Tensor, w: Tensor) => dsl.tanh(dsl.matmul(x, dsl.transpose(w)));
  const args = [randomArray([48, 32], 1), randomArray([40, 32], 2)];
  const autotune = { candidates: CANDIDATES, reps: 2, store: null };
  const tunedFn = jit(f, { codegen: { ...CPU_CODEGEN }, autotune });
  const got = await tunedFn(...args);
  assertTreeMatches(got, interpret(f, ...args), { rtol: 1e-5, atol: 1e-5 }, "autotuned");
  // The program is the one lowered with the choice the tuner made.
  const program = await tunedFn.lower(...args);
  const choices = CANDIDATES.map((c) =>
    jit(f, { codegen: { ...CPU_CODEGEN, matmulTuned: new Map([["nt 64x64x32", c]]) } })
  );
  const texts = await Promise.all(
    choices.map(async (j) => (await j.lower(...args)).kernels[0].wgsl),
  );
  assert.ok(texts.includes(program.kernels[0].wgsl), "one of the candidates' kernels");
});
