/**
 * Research script: what does one compiled training step run? Builds an MLP training step (loss,
 * gradients and an Adam update as one pure function), compiles it with `jit`, and prints the
 * Program listing (one line per fused kernel: the primitives it fused, its bindings and dispatch),
 * the WGSL of the largest kernel, and each kernel's time on this device (its own clock where it has
 * timestamp queries).
 *
 *   deno run --allow-read --allow-env examples/inspect_kernels.ts
 */

import {
  adamInit,
  type AdamState,
  adamUpdate,
  crossEntropy,
  type HostArray,
  jit,
  nn,
  relu,
  type Tensor,
  valueAndGrad,
} from "../mod.ts";

type Params = { w1: Tensor; w2: Tensor };
const loss = (p: Params, x: Tensor, y: Tensor) =>
  crossEntropy(nn.linear(relu(nn.linear(x, p.w1)), p.w2), y);

/** One step: value and gradient, then Adam on every parameter (moments and step in `state`). */
function trainStep(p: Params, state: AdamState<Tensor>, x: Tensor, y: Tensor) {
  const [value, g] = valueAndGrad(loss)(p, x, y) as [Tensor, Params];
  const updated = adamUpdate(p, g, state, 1e-3);
  return { loss: value, params: updated.params, state: updated.state };
}

const f32 = (shape: number[]): HostArray => ({
  shape,
  dtype: "f32",
  data: Float32Array.from(
    { length: shape.reduce((a, b) => a * b, 1) },
    (_, i) => Math.sin(i) * 0.1,
  ),
});
const params = { w1: f32([128, 64]), w2: f32([10, 128]) };
const state = adamInit(params);
const x = f32([32, 64]);
const y: HostArray = {
  shape: [32],
  dtype: "i32",
  data: Int32Array.from({ length: 32 }, (_, i) => i % 10),
};

const step = jit(trainStep, { donate: [0, 1] }); // parameters and state are updated in place
const program = await step.program(params, state, x, y);
console.log(String(program));
const largest = program.kernels.reduce((a, k) => (k.ops.length > a.ops.length ? k : a));
console.log(`\nWGSL of ${largest.name} (${largest.ops.length} fused primitives):\n${largest.wgsl}`);
const timings = await step.profile(params, state, x, y);
const clock = timings[0]?.clock === "device" ? "the device's clock" : "each run alone, wall";
console.log(`kernel times (${clock}):`);
for (const t of timings) console.log(`  ${t.ms.toFixed(3)} ms  ${t.name}  [${t.ops.join(", ")}]`);
console.log(`compile time: ${step.compileMs.toFixed(0)} ms`);
