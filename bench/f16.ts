/**
 * What the f16 dtype costs and saves: an MLP's loss and weight gradients (x·W₁ → gelu → ·W₂,
 * sum of squares) compiled once with f32 and once with f16 weights and inputs, timed alternating in
 * one process on the default adapter (f16 twice: intermediates in 16-bit words, as on a device with
 * `shader-f16`, and in f32 words):
 *
 *   deno run -A bench/f16.ts [--rows 256] [--width 512] [--steps 10]
 *
 * Prints each side's median step, the paired ratio (median over steps of f16 ÷ f32), the bytes of
 * the inputs on the device and the program's planned peak, the kernels, and how far the f16
 * gradient is from the f32 one.
 */

import { parseArgs } from "node:util";
import {
  type DeviceArray,
  gelu,
  gpu,
  grad,
  type HostArray,
  jit,
  matmul,
  readArrays,
  square,
  sum,
  type Tensor,
  toDevice,
} from "../web.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rows: { type: "string", default: "256" },
    width: { type: "string", default: "512" },
    steps: { type: "string", default: "10" },
  },
});
const rows = Number(values.rows), width = Number(values.width), steps = Number(values.steps);

function random(shape: number[], seed: number, dtype: "f32" | "f16"): HostArray {
  let s = seed;
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n).map(() => {
    s = (s * 1103515245 + 12345) >>> 0;
    return (s / 2 ** 32 - 0.5) * 2 / Math.sqrt(shape[0]);
  });
  return { shape, dtype, data: dtype === "f16" ? new Float16Array(data) : data };
}

// A sum, not a mean: a mean's 1/N cotangent is subnormal in half (training in f16 scales the loss).
const loss = (w1: Tensor, w2: Tensor, x: Tensor) => sum(square(matmul(gelu(matmul(x, w1)), w2)));
const step = grad(loss, { argnums: [0, 1] });
const device = await gpu();

async function side(dtype: "f32" | "f16", halfStorage = true) {
  const host = [
    random([width, 4 * width], 1, dtype),
    random([4 * width, width], 2, dtype),
    random([rows, width], 3, dtype),
  ];
  const args = await Promise.all(host.map((h) => toDevice(h, device))) as DeviceArray[];
  const f = jit(step, { device, codegen: { halfStorage } });
  const program = await f.lower(...args);
  const t0 = performance.now();
  await readArrays(await f.onDevice(...args) as DeviceArray[]);
  const firstMs = performance.now() - t0;
  const run = async () => {
    const t = performance.now();
    const out = await f.onDevice(...args) as DeviceArray[];
    const read = await readArrays(out);
    out.forEach((o) => o.destroy());
    return { ms: performance.now() - t, grads: read };
  };
  return {
    label: dtype === "f32" ? "f32" : halfStorage ? "f16, 16-bit words" : "f16, f32 words",
    run,
    firstMs,
    kernels: program.kernels.length,
    peakBytes: program.peakBytes,
    inputBytes: args.reduce((b, a) => b + a.bytes, 0),
  };
}

const sides = [await side("f32"), await side("f16"), await side("f16", false)];
const times: number[][] = sides.map(() => []);
let grads: HostArray[][] = [];
for (let i = 0; i < steps; i++) {
  for (const [k, s] of sides.entries()) {
    const r = await s.run();
    times[k].push(r.ms);
    grads[k] = r.grads;
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
let worst = 0;
grads[0].forEach((g, i) => {
  let scale = 0;
  for (const v of g.data) scale = Math.max(scale, Math.abs(v));
  g.data.forEach((v, j) => (worst = Math.max(worst, Math.abs(grads[1][i].data[j] - v) / scale)));
});
grads = [];
console.log(`MLP ${rows}×${width} → ${4 * width} → ${width}, loss and weight gradients`);
console.log(`adapter: ${device.info.description}`);
for (const [k, s] of sides.entries()) {
  console.log(
    `${s.label}: median ${median(times[k]).toFixed(1)} ms, first call ${
      s.firstMs.toFixed(0)
    } ms, ` +
      `${s.kernels} kernels, inputs ${(s.inputBytes / 2 ** 20).toFixed(2)} MiB, ` +
      `planned peak ${(s.peakBytes / 2 ** 20).toFixed(2)} MiB`,
  );
}
for (const k of [1, 2]) {
  const ratios = times[0].map((t, i) => times[k][i] / t);
  console.log(`paired ratio ${sides[k].label} ÷ f32: ${median(ratios).toFixed(3)}`);
}
console.log(
  `f16 gradient vs f32, largest difference / largest magnitude: ${worst.toExponential(2)}`,
);
