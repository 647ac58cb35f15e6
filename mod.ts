/**
 * Public face of the project: the functional tensor DSL (tracing, autodiff, vmap, the CPU
 * reference), the compiler (passes, fusion, WGSL), and the runtime (WebGPU devices, `jit`, the
 * HD-PiSSA trainer and its baselines in every mode, models, data and checkpoints).
 *
 * @example
 * ```ts
 * import { grad, jit, matmul, sum, tanh } from "./mod.ts";
 * const f = (w, x) => sum(tanh(matmul(x, w)));
 * const dw = await jit(grad(f))(w, x); // compiled to WebGPU kernels, host arrays back
 * ```
 *
 * @module
 */

export * from "./dsl/mod.ts";
export * from "./compiler/mod.ts";
export * from "./runtime/mod.ts";
