/**
 * The browser build's entry (`deno task bundle` → dist/hdpissa.js): the DSL, the compiler and the
 * WebGPU runtime with the trainer — everything of `mod.ts` that needs no file system, FFI or npm
 * package. Mode "mpi" stays in Deno (its module is left out of the bundle and loaded on demand).
 *
 * @module
 */

export * from "./dsl/mod.ts";
export * from "./compiler/mod.ts";
export {
  Device,
  type DeviceInfo,
  type DeviceLimits,
  type DeviceOptions,
  gpu,
  LIMIT_NAMES,
} from "./runtime/device.ts";
export { DeviceArray, isDeviceArray, readArrays } from "./runtime/device_array.ts";
export { Executable, type KernelTiming, type ProgramInput } from "./runtime/executor.ts";
export { jit, type JitOptions, type Jitted, toDevice, toHost } from "./runtime/jit.ts";
export {
  parseSafetensors,
  SafetensorsError,
  type SafetensorsFile,
  serializeSafetensors,
  type StorageDType,
  type WriteOptions,
} from "./runtime/io/safetensors_format.ts";
export { sha256Hex } from "./runtime/io/hash.ts";
export { permutation, Rng } from "./runtime/data/rng.ts";
export { generate, type GenerateOptions } from "./runtime/models/generate.ts";
export { adamTrainStep, nllSum, perplexity } from "./runtime/models/lm_steps.ts";
export {
  type AdapterExport,
  createTrainer,
  type Method,
  type Trainer,
  type TrainerConfig,
  TrainerConfigError,
  type TrainerSnapshot,
  type TrainerStats,
} from "./runtime/trainer.ts";
// Types only: these modules need an npm package or the file system, which the bundle leaves out.
export type { Tokenizer } from "./runtime/text/tokenizer.ts";
export type { LoraFactors } from "./runtime/models/peft.ts";
