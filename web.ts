/**
 * The browser build's entry (`deno task bundle` → dist/hdpissa.js): the DSL, the compiler and the
 * WebGPU runtime with the trainer — everything of `mod.ts` that needs no file system, FFI or npm
 * package. Mode "mpi" stays in Deno (its module is left out of the bundle and loaded on demand).
 *
 * @module
 */

export * from "./dsl/mod.ts";
export * from "./compiler/mod.ts";
export { Device, type DeviceInfo, type DeviceOptions, gpu } from "./runtime/device.ts";
export { DeviceArray, isDeviceArray, readArrays } from "./runtime/device_array.ts";
export { Executable, type KernelTiming } from "./runtime/executor.ts";
export { jit, type JitOptions, type Jitted, toDevice, toHost } from "./runtime/jit.ts";
export {
  parseSafetensors,
  SafetensorsError,
  serializeSafetensors,
} from "./runtime/io/safetensors_format.ts";
export { sha256Hex } from "./runtime/io/hash.ts";
export { permutation, Rng } from "./runtime/data/rng.ts";
export { generate, type GenerateOptions } from "./runtime/models/generate.ts";
export { adamTrainStep, nllSum, perplexity } from "./runtime/models/lm_steps.ts";
export {
  createTrainer,
  type Method,
  type Trainer,
  type TrainerConfig,
  TrainerConfigError,
  type TrainerStats,
} from "./runtime/trainer.ts";
