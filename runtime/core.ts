/**
 * The runtime's portable core: WebGPU devices, device arrays, the executor, `jit`, the safetensors
 * byte format, the trainer (modes virtual and devices; mode mpi loads its FFI module on demand),
 * generation and the in-process collectives. Nothing here touches the file system, FFI or npm, so
 * the browser build (web.ts) exports exactly this; runtime/mod.ts adds the Deno-side modules.
 *
 * @module
 */

export {
  Device,
  type DeviceInfo,
  type DeviceLimits,
  type DeviceOptions,
  gpu,
  LIMIT_NAMES,
} from "./device.ts";
export { DeviceArray, isDeviceArray, readArrays } from "./device_array.ts";
export { Executable, type KernelTiming, type ProgramInput } from "./executor.ts";
export {
  codegenFor,
  GPU_MATMUL_TILINGS,
  jit,
  type JitOptions,
  type Jitted,
  toDevice,
  toHost,
} from "./jit.ts";
export {
  parseSafetensors,
  SafetensorsError,
  type SafetensorsFile,
  serializeSafetensors,
  type StorageDType,
  type WriteOptions,
} from "./io/safetensors_format.ts";
export { sha256Hex } from "./io/hash.ts";
export { permutation, Rng } from "./data/rng.ts";
export { generate, type GenerateOptions } from "./models/generate.ts";
export { adamTrainStep, nllSum, perplexity } from "./models/lm_steps.ts";
export {
  type AdapterExport,
  createTrainer,
  type Method,
  type Trainer,
  type TrainerConfig,
  TrainerConfigError,
  type TrainerSnapshot,
  type TrainerStats,
} from "./trainer.ts";
export { type SvdMethod, svdMethodFor } from "./trainer_common.ts";
export type { StepPlan } from "./step_plan.ts";
export {
  type CommArray,
  type CommCounters,
  type ProcessGroup,
  processGroup,
  SelfGroup,
} from "./dist/collectives.ts";
export { checkReplicaDigests, ReplicaDivergenceError } from "./dist/replicated.ts";
// Types only: these modules need an npm package, FFI or the file system.
export type { Tokenizer } from "./text/tokenizer.ts";
export type { LoraFactors } from "./models/peft.ts";
export type { MpiGroupOptions } from "./dist/mpi_group.ts";
