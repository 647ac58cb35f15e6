/**
 * Matmul kernels on this machine's WebGPU device, one tiling at a time (the offline autotuning
 * behind `GPU_MATMUL_TILINGS`): `deno run -A bench/gpu_matmul.ts [sizes…]`. For each layout
 * (NN: x·W, NT: x·Wᵀ, TN: xᵀ·W) and square size it checks sampled entries against an f64 host
 * product, then times repeated calls on device-resident operands (one sync at the end) and prints
 * GFLOP/s per configuration: the register-tile kernels, each shared-memory tiling alone, and the
 * default choice. Also prints the adapter and the features the device was granted.
 */
import * as dsl from "../dsl/mod.ts";
import type { Tensor } from "../dsl/mod.ts";
import type { MatmulTiling } from "../compiler/mod.ts";
import { gpu, GPU_MATMUL_TILINGS, jit, toDevice } from "../runtime/core.ts";
import { randomData } from "./util.ts";

const sizes = Deno.args.length ? Deno.args.map(Number) : [1024, 2048, 4096];
const device = await gpu();
console.log(JSON.stringify({ adapter: device.info.description, features: device.info.features }));

// Tilings tried beside the default candidates, to see whether one of them should join.
const EXTRA: MatmulTiling[] = [
  { tileM: 128, tileN: 64, tileK: 16, threadM: 8, threadN: 4 },
  { tileM: 64, tileN: 64, tileK: 16, threadM: 8, threadN: 4 },
  { tileM: 64, tileN: 128, tileK: 16, threadM: 8, threadN: 8 },
];
type Layout = "NN" | "NT" | "TN";
const fns: Record<Layout, (a: Tensor, b: Tensor) => Tensor> = {
  NN: (a, b) => dsl.matmul(a, b),
  NT: (a, b) => dsl.matmul(a, dsl.transpose(b)),
  TN: (a, b) => dsl.matmul(dsl.transpose(a), b),
};
const configs: [string, MatmulTiling[] | undefined][] = [
  ["register", []],
  ...[...GPU_MATMUL_TILINGS, ...EXTRA].map((t): [string, MatmulTiling[]] => [
    `${t.tileM}x${t.tileN}x${t.tileK}/${t.threadM}x${t.threadN}`,
    [t],
  ]),
  ["default", undefined],
];

/** Entry (i, j) of the product in f64, operands stored row-major as the layout says. */
function entry(layout: Layout, a: Float32Array, b: Float32Array, n: number, i: number, j: number) {
  let s = 0;
  for (let k = 0; k < n; k++) {
    const x = layout === "TN" ? a[k * n + i] : a[i * n + k];
    const y = layout === "NT" ? b[j * n + k] : b[k * n + j];
    s += x * y;
  }
  return s;
}

const rows: string[] = [];
for (const n of sizes) {
  const a = randomData(n * n, 1, 1), b = randomData(n * n, 2, 1);
  const [da, db] = await toDevice([
    { shape: [n, n], dtype: "f32", data: a },
    { shape: [n, n], dtype: "f32", data: b },
  ], device) as unknown[];
  for (const layout of ["NN", "NT", "TN"] as Layout[]) {
    for (const [label, tilings] of configs) {
      const f = jit(fns[layout], {
        device,
        codegen: tilings === undefined ? {} : { matmulTilings: tilings },
      });
      const out = await f(da, db);
      // Sampled entries against f64: relative to the sum of |products| (the f32 bound's scale).
      let worst = 0;
      for (let s = 0; s < 32; s++) {
        const i = (s * 7919) % n, j = (s * 104729 + 13) % n;
        const want = entry(layout, a, b, n, i, j);
        worst = Math.max(worst, Math.abs(out.data[i * n + j] - want) / Math.sqrt(n));
      }
      const reps = Math.max(3, Math.min(50, Math.round(2e11 / (2 * n ** 3))));
      const t0 = performance.now();
      const outs = [];
      for (let r = 0; r < reps; r++) outs.push(await f.onDevice(da, db));
      await device.gpu.queue.onSubmittedWorkDone();
      const ms = (performance.now() - t0) / reps;
      outs.forEach((o) => o.destroy());
      const gflops = (2 * n ** 3) / (ms * 1e6);
      const row = `${n}\t${layout}\t${label}\t${ms.toFixed(3)} ms\t${gflops.toFixed(0)} GFLOP/s\t` +
        `err ${worst.toExponential(1)}`;
      rows.push(row);
      console.log(row);
    }
  }
}
console.log("\nsize\tlayout\tconfig\ttime\trate\terror\n" + rows.join("\n"));
