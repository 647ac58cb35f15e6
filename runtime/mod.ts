/** The runtime: WebGPU devices, device arrays, the executor, `jit`, I/O, data and models. */
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
export { jit, type JitOptions, type Jitted, toDevice, toHost } from "./jit.ts";
export {
  parseSafetensors,
  readSafetensors,
  readSafetensorsFile,
  SafetensorsError,
  type SafetensorsFile,
  serializeSafetensors,
  type StorageDType,
  type WriteOptions,
  writeSafetensors,
} from "./io/safetensors.ts";
export { sha256Hex, writeFileAtomic, writeTextAtomic } from "./io/atomic.ts";
export {
  BpeTokenizer,
  ByteTokenizer,
  Gpt2Tokenizer,
  type Tokenizer,
  tokenizerByName,
} from "./text/tokenizer.ts";
export * from "./data/instruct.ts";
export * from "./data/synthetic.ts";
export { corpusSplit, loadSpeeches, normalizeText, type Speech } from "./data/corpus.ts";
export { evaluationWindows, PretrainStream } from "./data/pretrain_data.ts";
export { permutation, Rng } from "./data/rng.ts";
export { type LoadedModel, loadModel, saveModel } from "./models/model_dir.ts";
export { generate, type GenerateOptions } from "./models/generate.ts";
export { type LoraFactors, pissaToLora, saveLoraAdapter } from "./models/peft.ts";
export { evaluateItems, type TaskScore } from "./models/evaluate.ts";
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
export {
  type CommArray,
  type CommCounters,
  type ProcessGroup,
  processGroup,
  SelfGroup,
} from "./dist/collectives.ts";
export type { MpiGroupOptions } from "./dist/mpi_group.ts";
export { checkReplicaDigests, ReplicaDivergenceError } from "./dist/replicated.ts";
