/**
 * `deno task bench`: ours (fused and op-by-op) vs jax-js vs TF.js, side by side in one process on
 * the same WebGPU adapter. Prints one table and writes it to docs/benchmarks.md.
 *
 * Flags: `--quick` (short runs, small sizes), `--only=matmul,ew,mlp,block` (a subset); neither
 * writes the doc unless `--write` is given. `--no-write` prints only.
 *
 * Runs with `--config bench/peers/deno.json` (as `deno task bench` does): TF.js lives in that
 * config's import map and lock only, so no other task installs it (see bench/tfjs.ts).
 */

import {
  add,
  type DeviceArray,
  gpu,
  jit,
  type Jitted,
  matmul,
  mul,
  readArrays,
  toDevice,
} from "../web.ts";
import * as J from "./jaxjs.ts";
import * as O from "./ours.ts";
import { blockCase, mlpCase } from "./specs.ts";
import { initTf, mlpTrainer, tf } from "./tfjs.ts";
import { TorchPeer } from "./torch_peer.ts";
import { PYTHON, TORCH_DEVICE_LABEL } from "./torch.ts";
import {
  counters,
  installCounters,
  maxRelDiff,
  measure,
  type MeasureOptions,
  randomData,
  type Timing,
  trackBytes,
} from "./util.ts";

const QUICK = Deno.args.includes("--quick");
const WRITE = Deno.args.includes("--write") ||
  (!QUICK && !Deno.args.includes("--no-write") && !Deno.args.some((a) => a.startsWith("--only=")));
const MEASURE: MeasureOptions = QUICK ? { minMs: 150, reps: 1 } : { minMs: 500, reps: 3 };
const MATMUL_SIZES = QUICK ? [256, 512] : [256, 512, 1024, 2048];
const EW_SIZE = QUICK ? 1 << 20 : 1 << 22;
const DOC = "docs/benchmarks.md";
/** `--only=matmul,ew,mlp,block` runs a subset (and does not write the doc). */
const ONLY = Deno.args.find((a) => a.startsWith("--only="))?.slice(7).split(",");
const enabled = (section: string) => !ONLY || ONLY.includes(section);

// ---------------------------------------------------------------------------------------------
// Table

/** A number, or a string saying why there is none. */
type Cell = number | string | undefined;

interface Row {
  bench: string;
  metric: string;
  fused: Cell;
  unfused?: Cell;
  jax?: Cell;
  tf?: Cell;
  /** PyTorch on the CPU, or on the GPU with HDPISSA_TORCH_DEVICE=cuda (bench/torch_micro.py). */
  torch?: Cell;
  /** How ratios read: throughput (ours/peer), time (peer/ours), or none. */
  ratio: "throughput" | "time" | "none";
  note?: string;
}

const rows: Row[] = [];
const log = (msg: string) => console.error(`[bench] ${msg}`);

function fmt(c: Cell): string {
  if (c === undefined) return "—";
  if (typeof c === "string") return c;
  if (!Number.isFinite(c) || Number.isInteger(c)) return String(c);
  const a = Math.abs(c);
  return a >= 100 ? c.toFixed(0) : a >= 10 ? c.toFixed(1) : a >= 1 ? c.toFixed(2) : c.toFixed(3);
}

function ratio(r: Row, peer: Cell): string {
  if (r.ratio === "none" || typeof r.fused !== "number" || typeof peer !== "number") return "—";
  const x = r.ratio === "throughput" ? r.fused / peer : peer / r.fused;
  return `${x >= 10 ? x.toFixed(0) : x >= 0.1 ? x.toFixed(1) : x.toFixed(2)}×`;
}

function table(): string {
  const head = [
    "benchmark",
    "metric",
    "ours (fused)",
    "ours (op-by-op)",
    "jax-js",
    "TF.js",
    `PyTorch ${TORCH_DEVICE_LABEL}`,
    "ours/jax-js",
    "ours/TF.js",
    "ours/PyTorch",
    "notes",
  ];
  const body = rows.map((r) => [
    r.bench,
    r.metric,
    fmt(r.fused),
    fmt(r.unfused),
    fmt(r.jax),
    fmt(r.tf),
    fmt(r.torch),
    ratio(r, r.jax),
    ratio(r, r.tf),
    ratio(r, r.torch),
    r.note ?? "",
  ]);
  return markdownTable(head, body);
}

/** A Markdown table aligned the way `deno fmt` formats one (so the doc passes fmt --check). */
function markdownTable(head: string[], rows: string[][]): string {
  const body = rows.map((r) => r.map((c) => c.replaceAll("|", "\\|")));
  const widths = head.map((h, i) => Math.max(3, h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}

/** Runs `f`; on failure returns a short "failed: …" cell instead of aborting the run. */
async function attempt<T>(what: string, f: () => Promise<T>): Promise<T | string> {
  try {
    return await f();
  } catch (e) {
    const msg = (e instanceof Error ? e.message : String(e)).split("\n")[0].slice(0, 120);
    log(`${what} failed: ${msg}`);
    return `failed: ${msg}`;
  }
}

const mib = (b: number) => b / (1 << 20);
const ms = (t: Timing | string) => typeof t === "string" ? t : t.ms;

// ---------------------------------------------------------------------------------------------
// Devices

installCounters();
const ours = await gpu();
const jaxDevice = await J.initJax();
const tfDevice = await initTf();
const adapterOf = (d: GPUDevice) =>
  (d as unknown as { adapterInfo?: GPUAdapterInfo }).adapterInfo?.description ?? "unknown";
const adapters = {
  ours: ours.info.description,
  jax: adapterOf(jaxDevice),
  tf: adapterOf(tfDevice),
};
log(`adapters: ${JSON.stringify(adapters)}`);
if (adapters.jax !== adapters.ours || adapters.tf !== adapters.ours) {
  log("WARNING: the libraries are not on the same adapter");
}
const torchPeer = new TorchPeer();
/** Our outputs, by workload, to compare with PyTorch's once it has run. */
const oursOutputs = new Map<string, Float32Array>();
const started = performance.now();
const loadAvg = () => Deno.loadavg().map((x) => x.toFixed(2)).join(" ");
const loadAtStart = await attempt("loadavg", () => Promise.resolve(loadAvg()));

// ---------------------------------------------------------------------------------------------
// 1. Matmul

async function matmulBench(n: number): Promise<void> {
  log(`matmul ${n}`);
  const flops = 2 * n ** 3;
  const gflops = (t: Timing | string) => typeof t === "string" ? t : flops / (t.ms * 1e6);
  const A = randomData(n * n, 1000 + n);
  const B = randomData(n * n, 2000 + n);
  // Iteration caps keep the slow peers (seconds per 2048² product) inside the time budget.
  const opts = { ...MEASURE, maxIters: n >= 2048 ? 2 : undefined };
  const results: Record<string, Float32Array> = {};

  const oursT = await attempt("ours matmul", async () => {
    const f = jit((x, y) => matmul(x, y));
    const a = await toDevice({ shape: [n, n], dtype: "f32", data: A }) as DeviceArray;
    const b = await toDevice({ shape: [n, n], dtype: "f32", data: B }) as DeviceArray;
    const t = await measure(async (k) => {
      let last: DeviceArray | undefined;
      for (let i = 0; i < k; i++) {
        const o = await f.onDevice(a, b) as DeviceArray;
        last?.destroy();
        last = o;
      }
      results.ours = (await readArrays([last!]))[0].data as Float32Array;
      last!.destroy();
    }, opts);
    a.destroy();
    b.destroy();
    return t;
  });

  const jaxT = await attempt("jax-js matmul", async () => {
    const f = J.jit((x: J.JArray, y: J.JArray) => J.np.matmul(x, y));
    const a = J.np.array(A).reshape([n, n]);
    const b = J.np.array(B).reshape([n, n]);
    const t = await measure(async (k) => {
      let last: J.JArray | undefined;
      for (let i = 0; i < k; i++) {
        const o = f(a.ref, b.ref);
        o.ref.gpuBufferSync(); // jax-js is lazy: dispatch now (no sync)
        last?.dispose();
        last = o;
      }
      results.jax = await last!.data() as Float32Array;
    }, opts);
    a.dispose();
    b.dispose();
    f.dispose();
    return t;
  });

  const tfT = await attempt("TF.js matmul", async () => {
    const a = tf.tensor2d(A, [n, n]);
    const b = tf.tensor2d(B, [n, n]);
    const t = await measure(async (k) => {
      let last: tf.Tensor | undefined;
      for (let i = 0; i < k; i++) {
        const o = tf.matMul(a, b);
        last?.dispose();
        last = o;
      }
      results.tf = await last!.data() as Float32Array;
      last!.dispose();
    }, opts);
    a.dispose();
    b.dispose();
    return t;
  });

  torchPeer.matmul(n, A, B);
  if (results.ours) oursOutputs.set(`mm${n}_c`, results.ours);
  const diffs: string[] = [];
  if (results.ours && results.jax) {
    diffs.push(`jax-js ${maxRelDiff(results.jax, results.ours).toExponential(1)}`);
  }
  if (results.ours && results.tf) {
    diffs.push(`TF.js ${maxRelDiff(results.tf, results.ours).toExponential(1)}`);
  }
  const iters = [oursT, jaxT, tfT].map((t) => typeof t === "string" ? "–" : t.iters).join("/");
  rows.push({
    bench: `matmul ${n}×${n}×${n} f32`,
    metric: "GFLOP/s",
    fused: gflops(oursT),
    unfused: undefined,
    jax: gflops(jaxT),
    tf: gflops(tfT),
    ratio: "throughput",
    note: `max rel diff vs ours: ${diffs.join(", ") || "n/a"}; iters/rep ${iters}`,
  });
}

// ---------------------------------------------------------------------------------------------
// 2. Elementwise a*b+c

async function elementwiseBench(n: number): Promise<void> {
  log(`elementwise ${n}`);
  const bytes = 4 * 4 * n;
  const gbs = (t: Timing | string) => typeof t === "string" ? t : bytes / (t.ms * 1e6);
  const [A, B, C] = [1, 2, 3].map((s) => randomData(n, 300 + s));
  const results: Record<string, Float32Array> = {};

  const oursRun = (fuse: boolean) =>
    attempt(`ours elementwise fuse=${fuse}`, async () => {
      const f = jit((a, b, c) => add(mul(a, b), c), { fuse });
      const [a, b, c] = await Promise.all(
        [A, B, C].map((d) =>
          toDevice({ shape: [n], dtype: "f32", data: d }) as Promise<DeviceArray>
        ),
      );
      const t = await measure(async (k) => {
        let last: DeviceArray | undefined;
        for (let i = 0; i < k; i++) {
          const o = await f.onDevice(a, b, c) as DeviceArray;
          last?.destroy();
          last = o;
        }
        results[`ours${fuse}`] = (await readArrays([last!]))[0].data as Float32Array;
        last!.destroy();
      }, MEASURE);
      [a, b, c].forEach((x) => x.destroy());
      return t;
    });
  const fused = await oursRun(true);
  const unfused = await oursRun(false);

  const jaxT = await attempt("jax-js elementwise", async () => {
    const f = J.jit((a: J.JArray, b: J.JArray, c: J.JArray) => a.mul(b).add(c));
    const [a, b, c] = [A, B, C].map((d) => J.np.array(d));
    const t = await measure(async (k) => {
      let last: J.JArray | undefined;
      for (let i = 0; i < k; i++) {
        const o = f(a.ref, b.ref, c.ref);
        o.ref.gpuBufferSync();
        last?.dispose();
        last = o;
      }
      results.jax = await last!.data() as Float32Array;
    }, MEASURE);
    [a, b, c].forEach((x) => x.dispose());
    f.dispose();
    return t;
  });

  const tfT = await attempt("TF.js elementwise", async () => {
    const [a, b, c] = [A, B, C].map((d) => tf.tensor1d(d));
    const t = await measure(async (k) => {
      let last: tf.Tensor | undefined;
      for (let i = 0; i < k; i++) {
        const o = tf.tidy(() => tf.add(tf.mul(a, b), c));
        last?.dispose();
        last = o;
      }
      results.tf = await last!.data() as Float32Array;
      last!.dispose();
    }, MEASURE);
    [a, b, c].forEach((x) => x.dispose());
    return t;
  });

  const ref = results.oursfalse ?? results.ourstrue;
  torchPeer.elementwise(A, B, C);
  if (ref) oursOutputs.set("ew_out", ref);
  const diffs = Object.entries(results).filter(([k]) => k !== "oursfalse").map(([k, v]) =>
    `${k === "ourstrue" ? "fused" : k} ${maxRelDiff(v, ref).toExponential(1)}`
  );
  const bench = `elementwise a*b+c, ${n / (1 << 20)}M f32`;
  rows.push({
    bench,
    metric: "GB/s (16 B/elem)",
    fused: gbs(fused),
    unfused: gbs(unfused),
    jax: gbs(jaxT),
    tf: gbs(tfT),
    ratio: "throughput",
    note: `max rel diff vs op-by-op: ${diffs.join(", ")}`,
  });
  const k = (t: Timing | string) => typeof t === "string" ? undefined : t.dispatches;
  rows.push({
    bench,
    metric: "kernels / call",
    fused: k(fused),
    unfused: k(unfused),
    jax: k(jaxT),
    tf: k(tfT),
    ratio: "none",
    note: "measured dispatches",
  });
}

// ---------------------------------------------------------------------------------------------
// 3. Training steps

interface StepResult {
  timing: Timing;
  firstCallMs: number;
  firstLoss: number;
  lastLoss: number;
  measuredBytes: number;
  kernels?: number;
  peakBytes?: number;
  /** Σ bytes of all the program's buffer slots (what the executor allocates per call). */
  slotBytes?: number;
  compileMs?: number;
  cacheNote?: string;
}

type HostInputs = ReturnType<typeof O.mlpInputs>;

async function oursStep(
  // deno-lint-ignore no-explicit-any
  step: (...args: any[]) => unknown,
  inputs: HostInputs,
  fuse: boolean,
): Promise<StepResult> {
  // A fresh device per measurement: its buffer accounting and pipeline cache start empty.
  const device = await gpu({});
  const f: Jitted = jit(step, { fuse, device });
  const program = await f.lower(inputs.state, inputs.x, inputs.labels);
  const bytes = trackBytes(device.gpu);
  let state = await toDevice(inputs.state, device);
  const x = await toDevice(inputs.x, device);
  const labels = await toDevice(inputs.labels, device);
  const losses: number[] = [];
  let compileAfterFirst = 0;
  let firstCallMs = 0;
  let calls = 0;
  const run = async (k: number) => {
    const t0 = performance.now();
    let loss: DeviceArray | undefined;
    for (let i = 0; i < k; i++) {
      const out = await f.onDevice(state, x, labels);
      calls++;
      O.destroyTree(state);
      state = { params: out.params, m: out.m, v: out.v };
      loss?.destroy();
      loss = out.loss;
    }
    losses.push((await readArrays([loss!]))[0].data[0]);
    loss!.destroy();
    if (!firstCallMs) {
      firstCallMs = performance.now() - t0;
      compileAfterFirst = f.compileMs;
      log(
        `  ours fuse=${fuse}: first call ${firstCallMs.toFixed(0)} ms, compileMs ${
          compileAfterFirst.toFixed(0)
        }`,
      );
    }
  };
  const timing = await measure(run, MEASURE);
  const measuredBytes = bytes.stop();
  const cacheOk = f.cacheSize === 1 && f.compileMs === compileAfterFirst;
  O.destroyTree([state, x, labels]);
  device.destroy();
  return {
    timing,
    firstCallMs,
    firstLoss: losses[0],
    lastLoss: losses[losses.length - 1],
    measuredBytes,
    kernels: program.kernels.length,
    peakBytes: program.peakBytes,
    slotBytes: program.slots.reduce((n, sl) => n + sl.bytes, 0),
    compileMs: compileAfterFirst,
    cacheNote: `after ${calls} calls: cacheSize ${f.cacheSize}, compileMs ${
      f.compileMs.toFixed(0)
    }${cacheOk ? " (cache hit ✓)" : " (RECOMPILED ✗)"}`,
  };
}

async function jaxStep(
  step: ReturnType<typeof J.mlpStep>,
  makeInputs: () => ReturnType<typeof J.mlpInputs>,
): Promise<StepResult> {
  const bytes = trackBytes(jaxDevice);
  const inputs = makeInputs();
  let state = inputs.state;
  const losses: number[] = [];
  let firstCallMs = 0;
  const run = async (k: number) => {
    const t0 = performance.now();
    let loss: J.JArray | undefined;
    for (let i = 0; i < k; i++) {
      const out = step(state, inputs.x.ref, inputs.labels.ref);
      out.loss.ref.gpuBufferSync(); // jax-js is lazy: dispatch this step now (no sync)
      state = { params: out.params, m: out.m, v: out.v };
      loss?.dispose();
      loss = out.loss;
    }
    losses.push((await loss!.data())[0]);
    if (!firstCallMs) {
      firstCallMs = performance.now() - t0;
      log(`  jax-js: first call ${firstCallMs.toFixed(0)} ms`);
    }
  };
  const timing = await measure(run, MEASURE);
  const measuredBytes = bytes.stop();
  J.disposeTree([state, inputs.x, inputs.labels]);
  step.dispose();
  return {
    timing,
    firstCallMs,
    firstLoss: losses[0],
    lastLoss: losses[losses.length - 1],
    measuredBytes,
  };
}

async function tfStep(c: ReturnType<typeof mlpCase>): Promise<StepResult> {
  const bytes = trackBytes(tfDevice);
  const trainer = mlpTrainer(c);
  const losses: number[] = [];
  let firstCallMs = 0;
  const run = async (k: number) => {
    const t0 = performance.now();
    let loss: tf.Tensor | undefined;
    for (let i = 0; i < k; i++) {
      const l = trainer.step();
      loss?.dispose();
      loss = l;
    }
    losses.push((await loss!.data())[0]);
    loss!.dispose();
    if (!firstCallMs) firstCallMs = performance.now() - t0;
  };
  const timing = await measure(run, MEASURE);
  const measuredBytes = bytes.stop();
  trainer.dispose();
  return {
    timing,
    firstCallMs,
    firstLoss: losses[0],
    lastLoss: losses[losses.length - 1],
    measuredBytes,
  };
}

function trainBench(
  name: string,
  fused: StepResult | string,
  unfused: StepResult | string,
  jaxR: StepResult | string,
  tfR: StepResult | string | undefined,
): void {
  const get = <T>(r: StepResult | string | undefined, f: (r: StepResult) => T) =>
    r === undefined ? undefined : typeof r === "string" ? r : f(r);
  const all = { fused, unfused, jax: jaxR, tf: tfR };
  const pick = (f: (r: StepResult) => Cell) => ({
    fused: get(fused, f),
    unfused: get(unfused, f),
    jax: get(jaxR, f),
    tf: get(tfR, f),
  });
  const losses = Object.entries(all).filter(([, r]) => r && typeof r !== "string").map((
    [k, r],
  ) => `${k} ${(r as StepResult).firstLoss.toFixed(5)}`);
  rows.push({
    bench: name,
    metric: "ms / step",
    ...pick((r) => ms(r.timing)),
    ratio: "time",
    note: `loss at step 1: ${losses.join(", ")}`,
  });
  rows.push({
    bench: name,
    metric: "kernels / step",
    ...pick((r) => r.timing.dispatches),
    ratio: "none",
    note: `measured dispatches; program.kernels.length: ${get(fused, (r) => r.kernels)} fused, ${
      get(unfused, (r) => r.kernels)
    } op-by-op`,
  });
  rows.push({
    bench: name,
    metric: "peak MiB (program.peakBytes)",
    fused: get(fused, (r) => mib(r.peakBytes!)),
    unfused: get(unfused, (r) => mib(r.peakBytes!)),
    jax: typeof jaxR === "string" ? jaxR : "no equivalent",
    tf: typeof tfR === "string" ? tfR : tfR === undefined ? undefined : "no equivalent",
    ratio: "none",
    note: `liveness peak of one call (inputs, constants, intermediates, outputs); Σ slot bytes ${
      get(fused, (r) => mib(r.slotBytes!).toFixed(2))
    } fused / ${get(unfused, (r) => mib(r.slotBytes!).toFixed(2))} op-by-op`,
  });
  rows.push({
    bench: name,
    metric: "device MiB high-water (measured)",
    ...pick((r) => mib(r.measuredBytes)),
    ratio: "none",
    note: "live storage buffers on the library's device, upload through the timed steps",
  });
  rows.push({
    bench: name,
    metric: "first call ms (compile + 1 step + sync)",
    ...pick((r) => r.firstCallMs),
    ratio: "time",
    note: typeof fused === "string"
      ? ""
      : `ours jit.compileMs ${fused.compileMs!.toFixed(0)} fused / ${
        get(unfused, (r) => r.compileMs!.toFixed(0))
      } op-by-op; ${fused.cacheNote}`,
  });
}

/** PyTorch's workload id of each training row's benchmark name. */
const trainIds = new Map<string, string>();

async function mlpBench(batch: number, hidden: number): Promise<void> {
  const c = mlpCase(batch, 784, hidden, 10);
  log(c.name);
  const inputs = O.mlpInputs(c);
  const fused = await attempt("ours MLP fused", () => oursStep(O.mlpTrainStep, inputs, true));
  const unfused = await attempt("ours MLP op-by-op", () => oursStep(O.mlpTrainStep, inputs, false));
  const jaxR = await attempt("jax-js MLP", () => jaxStep(J.mlpStep(c), () => J.mlpInputs(c)));
  const tfR = await attempt("TF.js MLP", () => tfStep(c));
  const name = `${c.name} train step (Adam, CE)`;
  trainIds.set(name, torchPeer.mlp(c));
  trainBench(name, fused, unfused, jaxR, tfR);
}

async function blockBench(): Promise<void> {
  const c = blockCase(QUICK ? 2 : 8, 64, 128, 4);
  log(c.name);
  const inputs = O.blockInputs(c);
  const step = O.blockTrainStep(c);
  const fused = await attempt("ours block fused", () => oursStep(step, inputs, true));
  const unfused = await attempt("ours block op-by-op", () => oursStep(step, inputs, false));
  const jaxR = await attempt("jax-js block", () => jaxStep(J.blockStep(c), () => J.blockInputs(c)));
  const name = `${c.name} train step (Adam, MSE)`;
  trainIds.set(name, torchPeer.block(c));
  trainBench(name, fused, unfused, jaxR, "not written");
}

// Training first: jax-js and TF.js keep freed buffers in pools, so the memory high-water marks
// are cleanest before the large matmul/elementwise buffers have passed through those pools.
if (enabled("mlp")) {
  await mlpBench(64, 256);
  await mlpBench(256, 1024);
}
if (enabled("block")) await blockBench();
const trainRows = rows.splice(0);
if (enabled("ew")) await elementwiseBench(EW_SIZE);
const ewRows = rows.splice(0);
if (enabled("matmul")) { for (const n of MATMUL_SIZES) await matmulBench(n); }
rows.push(...ewRows, ...trainRows);

// PyTorch last, in its own process, on the same workloads.
log(`PyTorch (${TORCH_DEVICE_LABEL})`);
const torchResults = await torchPeer.run(MEASURE);
const torchInfo = typeof torchResults === "string"
  ? torchResults
  : torchResults.filter((r) => r.kind === "info").map((r) =>
    `PyTorch ${r.version} on ${r.device}, ${r.threads} CPU threads`
  )[0];
fillTorch(torchResults);
torchPeer.dispose();

/** The PyTorch cells: throughput, step times, step-1 losses and output differences. */
function fillTorch(results: typeof torchResults): void {
  for (const r of rows) {
    const matmul = /^matmul (\d+)×/.exec(r.bench);
    const train = trainIds.get(r.bench);
    if (typeof results === "string") {
      if (matmul || train || r.bench.startsWith("elementwise")) r.torch = results;
      continue;
    }
    const n = matmul ? Number(matmul[1]) : 0;
    const found = matmul
      ? results.find((x) => x.kind === "matmul" && x.n === n)
      : train
      ? results.find((x) => x.id === train)
      : r.bench.startsWith("elementwise")
      ? results.find((x) => x.kind === "ew")
      : undefined;
    if (!found) continue;
    const diff = (key: string) => {
      const theirs = torchPeer.output(key), mine = oursOutputs.get(key);
      return theirs && mine ? `; PyTorch ${maxRelDiff(theirs, mine).toExponential(1)}` : "";
    };
    if (matmul && r.metric === "GFLOP/s") {
      r.torch = (2 * n ** 3) / (found.ms! * 1e6);
      r.note = `${r.note}${diff(`mm${n}_c`)}; PyTorch iters/rep ${found.iters}`;
    } else if (!train && r.metric.startsWith("GB/s")) {
      r.torch = (4 * 4 * EW_SIZE) / (found.ms! * 1e6);
      r.note = `${r.note}${diff("ew_out")}`;
    } else if (train && r.metric === "ms / step") {
      r.torch = found.ms;
      r.note = `${r.note}, torch ${found.loss1!.toFixed(5)}`;
    } else if (train && r.metric.startsWith("first call")) {
      r.torch = found.first_ms;
    } else if (train || r.metric === "kernels / call") r.torch = "no equivalent";
  }
}

// ---------------------------------------------------------------------------------------------
// Report

const elapsed = (performance.now() - started) / 1000;
const info = ours.info;
const backend = Deno.env.get("DENO_WEBGPU_BACKEND") || "default (Vulkan when installed)";
const mesaCache = ["MESA_SHADER_CACHE_DIR", "MESA_SHADER_CACHE_DISABLE"]
  .filter((k) => Deno.env.get(k) !== undefined).map((k) => `${k}=${Deno.env.get(k)}`)
  .join(", ") || "Mesa shader disk cache at its default location";
const loadAtEnd = await attempt("loadavg", () => Promise.resolve(loadAvg()));
const setting: [string, string][] = [
  ["date", new Date().toISOString()],
  [
    "runtime",
    `Deno ${Deno.version.deno} (V8 ${Deno.version.v8}), ${Deno.build.os}/${Deno.build.arch}, ` +
    `${navigator.hardwareConcurrency} logical CPUs`,
  ],
  [
    "adapter (ours)",
    `${info.description}, vendor ${info.vendor}, fallback adapter: ${info.isFallbackAdapter}`,
  ],
  ["adapter (jax-js, TF.js)", `${adapters.jax}; ${adapters.tf}`],
  ["WebGPU backend", `DENO_WEBGPU_BACKEND=${backend}; ${mesaCache}`],
  [
    "peers",
    `@jax-js/jax 0.1.25 (WebGPU backend, jit); TF.js 4.22.0 (tfjs-backend-webgpu); ${torchInfo} ` +
    `(${PYTHON === "/usr/bin/python3" ? "Debian python3-torch" : PYTHON}, eager)`,
  ],
  [
    "timing",
    `warm-up, then N iterations back to back with one sync (readback) at the end; N grown until ` +
    `a repetition takes ≥ ${MEASURE.minMs} ms; median of ${MEASURE.reps} repetition(s)`,
  ],
  [
    "run",
    `${elapsed.toFixed(0)} s${QUICK ? " (--quick)" : ""}; load average ${loadAtStart} at start, ` +
    `${loadAtEnd} at end (shared machine)`,
  ],
];
// A code block: not a second table, and `deno fmt` leaves its long lines alone.
const fence = "```";
const header = [`${fence}text`, ...setting.map(([k, v]) => `${`${k}:`.padEnd(25)}${v}`), fence]
  .join("\n");
const out = `${header}\n\n${table()}\n`;
console.log(out);
log(`total dispatches counted: ${counters.dispatches}`);

if (WRITE) {
  const doc = `# Benchmarks: ours vs jax-js vs TF.js (WebGPU), and PyTorch on the CPU

Generated by \`deno task bench\` (bench/main.ts). The three WebGPU libraries run in one Deno process
on the same WebGPU adapter, one after another, and PyTorch last on the CPU in a process of its own; numbers from one run are comparable with each other, not
with runs on other machines. On this machine the adapter is Mesa lavapipe/llvmpipe, i.e. WebGPU
executed on the CPU (see the workspace notes, shared/docs/perf-notes.md), so absolute numbers say little about real
GPUs; the ratios and kernel counts are the point.

${out}
## Columns

- **ours (fused)**: \`jit(f)\` — the compiler fuses primitives into WGSL kernels.
- **ours (op-by-op)**: \`jit(f, { fuse: false })\` — one kernel per primitive (the baseline). For a
  matmul the two are the same single kernel, so only the fused column is measured.
- **jax-js**: \`@jax-js/jax\` 0.1.25, WebGPU device, its \`jit\` (training: \`jit\` of
  \`valueAndGrad(loss)\` plus the same Adam update, in one jitted function).
- **TF.js**: \`@tensorflow/tfjs\` 4.22.0 with \`tfjs-backend-webgpu\` (eager ops; training uses
  \`tf.train.adam\` + \`tf.losses.softmaxCrossEntropy\` via \`optimizer.minimize\`).
- **PyTorch CPU**: Debian's \`python3-torch\` on the CPU (the anchor a user would otherwise pick),
  installed by the benchmark with apt-get when missing (never CI), run last in its own process on
  the same initial values (bench/torch_micro.py) with the same timing protocol; eager, one thread
  per core; training with \`torch.optim.Adam\` and \`F.cross_entropy\` / MSE. No kernels or device
  memory to count, and no compile in its first call.
- **ours/jax-js, ours/TF.js, ours/PyTorch**: for throughput rows (GFLOP/s, GB/s) ours ÷ peer; for
  time rows (ms) peer ÷ ours. Above 1× means ours is faster, in both cases. Computed against the fused column.
- **GFLOP/s**: 2·n³ per product. **GB/s**: 4 arrays × 4 B × n per call (3 reads, 1 write) — the
  op-by-op version really moves 6 arrays (the a*b intermediate is written and read back), which is
  what fusion saves.
- **kernels / step**: compute dispatches counted by wrapping
  \`GPUComputePassEncoder.dispatchWorkgroups\` during the timed repetitions (the note also gives
  \`program.kernels.length\` for ours).
- **peak MiB (program.peakBytes)**: our memory plan for one call — the most bytes live at once
  (inputs, constants, intermediates, outputs) by liveness. The executor allocates every buffer slot
  of the plan for the whole call, so the notes also give Σ slot bytes; with \`fuse: false\` the plan
  shares no slots, so Σ slot bytes is far above the liveness peak. No equivalent for the peers.
- **device MiB high-water (measured)**: highest total size of live STORAGE buffers the library held
  on its GPUDevice (created minus destroyed, wrapping \`createBuffer\`/\`destroy\`) from uploading the
  inputs to the end of the timed steps, inputs and both the old and the new optimizer state included
  (no donation in this benchmark). Buffers a library keeps in a pool for reuse count as held. Ours
  gets a fresh device per measurement; jax-js and TF.js keep one device (and pool) for the whole
  run, so buffers pooled by an earlier row can hide allocations of a later one (the training rows
  run first, before the large matmul and elementwise buffers).
- **first call ms**: wall time of the first call (tracing, compilation, one step, one readback). On
  llvmpipe/lavapipe much of the shader compilation happens at the first _dispatch_ of each kernel,
  not in \`createComputePipeline\`, so \`jit.compileMs\` (in the notes) does not include it, while the
  first call does. Mesa caches compiled shaders on disk (\`~/.cache/mesa_shader_cache\`): kernels seen
  in an earlier run start warm. For cold numbers run with \`MESA_SHADER_CACHE_DIR\` pointing to an
  empty directory.
- **loss at step 1** (notes): every implementation starts from the same parameters and batch, so
  these must agree (they check that all compute the same thing); matmul and elementwise notes give
  the largest relative difference |x − ours| / (1 + |ours|) of the full outputs.

## Workloads

- MLP: 784 → hidden (ReLU) → 10, softmax cross-entropy with integer labels, Adam (lr 1e-3). Batch 64
  / hidden 256 and batch 256 / hidden 1024 (the sizes of the TF.js figures in perf-notes.md).
- Transformer block: pre-LayerNorm, 4-head causal self-attention (mask from \`arange\` + \`less\` +
  \`where\`, softmax), residual, LayerNorm, MLP 128 → 512 (GELU, tanh form) → 128, residual; loss =
  mean squared error against a fixed target; Adam. Written with the DSL ops (bench/ours.ts) and the
  same way for jax-js (bench/jaxjs.ts; jax-js has no layerNorm op, so it is written out). Not
  written for TF.js.
- Adam's bias correction uses t = 1 as a constant in ours and jax-js (same arithmetic each step);
  TF.js's optimizer tracks the real step count.

## Peer API caveats

- jax-js is lazy: a jitted call only records pending kernels, which run when a result is read. A
  loop that discards results would measure nothing, so each iteration calls \`gpuBufferSync()\` on one
  output (dispatches the pending kernels without waiting), and the loop ends with \`await data()\`.
  jax-js also submits each kernel separately (one \`queue.submit\` per dispatch).
- jax-js uses reference-counted ownership (\`x.ref\`); inputs reused across iterations are passed as
  \`.ref\`.
- TF.js's WebGPU backend batches submissions (\`WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE\` = 15) and hands
  tensors below 1000 elements to the CPU; its training step runs eagerly (no jit).

## Reproduce

\`\`\`sh
XDG_RUNTIME_DIR=/tmp deno task bench            # full run (~${
    Math.ceil(elapsed / 60)
  } min here), rewrites docs/benchmarks.md
XDG_RUNTIME_DIR=/tmp deno task bench --quick    # short smoke run, prints only
\`\`\`

Select the WebGPU backend with \`DENO_WEBGPU_BACKEND=vulkan|gl\`. The benchmark is not part of
\`deno task test\`. TF.js is pinned in bench/peers/deno.json (its own import map and lock), which the
task passes as \`--config\`; the root lock has no TF.js, so no other task installs it.
`;
  // An existing doc keeps its dated sections: only the run's header and table are replaced.
  const existing = await Deno.readTextFile(DOC).catch(() => undefined);
  const start = existing?.indexOf(`${fence}text`) ?? -1;
  const next = start >= 0 ? existing!.indexOf("\n## ", start) : -1;
  await Deno.writeTextFile(
    DOC,
    next > 0 ? `${existing!.slice(0, start)}${out}${existing!.slice(next)}` : doc,
  );
  log(`wrote ${DOC}`);
}
