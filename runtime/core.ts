/**
 * The runtime's portable core: WebGPU devices, device arrays, the executor, `jit`, the safetensors
 * byte format, the trainer (modes virtual and devices; mode mpi loads its FFI module on demand),
 * generation, the in-process collectives, and what a fine-tuning front end needs: model folders
 * read from any file source and written as bytes, instruction data, tokenizers (their npm
 * packages are bundled), PEFT adapters, charts and `FineTuneSession`. Nothing here touches the
 * file system or FFI, so the browser build (web.ts) exports exactly this; runtime/mod.ts adds the
 * Deno-side modules.
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
  gpuCodegen,
  jit,
  type JitOptions,
  type Jitted,
  toDevice,
  type ToDeviceOptions,
  toHost,
} from "./jit.ts";
export {
  type AutotuneOptions,
  matmulCandidates,
  setDefaultTuneStore,
  tuneMatmuls,
  type TuneStore,
} from "./autotune.ts";
export { packHalves, roundedTo, unpackHalves } from "./io/half.ts";
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
export {
  ByteTokenizer,
  type ConfigToken,
  Gpt2Tokenizer,
  HfTokenizer,
  type Tokenizer,
  TOKENIZER_FILES,
  tokenizerByName,
  type TokenizerConfig,
  type TokenizerOrigin,
} from "./text/tokenizer.ts";
export {
  type ChatMessage,
  type ChatRenderOptions,
  ChatTemplate,
  type ChatTemplateOptions,
  type ChatTurn,
} from "./text/chat_template.ts";
export {
  BatchSampler,
  collate,
  encodeChat,
  type EncodedExample,
  encodeExample,
  type Example,
  formatPrompt,
  isTemplate,
  type JsonlFields,
  parseJsonl,
  PROMPT_TEMPLATES,
  shard,
  type TemplateName,
} from "./data/instruct.ts";
export {
  checkParameters,
  type FileLike,
  fileListFiles,
  type LoadedModel,
  loadModelFiles,
  memoryFiles,
  modelFileBytes,
  type ModelFiles,
  modelTemplate,
  normalizeNames,
  readModelConfig,
  readModelParams,
  readModelTokenizer,
  tokenizerFileBytes,
  urlFiles,
} from "./models/model_bytes.ts";
export {
  loraAdapterFileBytes,
  type LoraAdapterOptions,
  type LoraFactors,
  modulePath,
  pissaToLora,
} from "./models/peft_format.ts";
export { barChart, lineChart } from "./train/charts.ts";
export {
  DEFAULT_ADAPT,
  FineTuneSession,
  type LossRecord,
  type RankRecord,
  type SessionSettings,
  type SessionState,
} from "./train/session.ts";
export { crc32, unzipFiles, zipFiles } from "./io/zip.ts";
// Types only: this module needs FFI.
export type { MpiGroupOptions } from "./dist/mpi_group.ts";
