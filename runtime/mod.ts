/** The runtime: the portable core (core.ts) plus the Deno-side modules — files, tokenizers, data, models. */
export * from "./core.ts";
export {
  type ReadOptions as SafetensorsReadOptions,
  readSafetensors,
  readSafetensorsFile,
  writeSafetensors,
} from "./io/safetensors.ts";
export { writeFileAtomic, writeTextAtomic } from "./io/atomic.ts";
export { defaultTuneFile, fileTuneStore } from "./io/autotune_store.ts";
import { fileTuneStore } from "./io/autotune_store.ts";
import { setDefaultTuneStore } from "./autotune.ts";

// Under Deno, tuned matmul choices persist in a file (the browser build keeps them in memory).
setDefaultTuneStore(fileTuneStore());
export { copyTokenizerFiles, hasTokenizerJson, loadTokenizer } from "./text/tokenizer_files.ts";
export * from "./data/instruct.ts";
export * from "./data/synthetic.ts";
export {
  CIPHER,
  RANK_SUITE,
  RANK_TASKS,
  type Split,
  splitOf,
  substitute,
} from "./data/rank_tasks.ts";
export {
  bootstrapAccuracy,
  bootstrapDifference,
  type BootstrapOptions,
  type Interval,
} from "./train/bootstrap.ts";
export { corpusSplit, loadSpeeches, normalizeText, type Speech } from "./data/corpus.ts";
export { evaluationWindows, PretrainStream } from "./data/pretrain_data.ts";
export { type LoadedModel, loadModel, saveModel } from "./models/model_dir.ts";
export { type DeviceInitOptions, initParamsOnDevice } from "./models/init.ts";
export { pissaToLora, saveLoraAdapter } from "./models/peft.ts";
export { rankByLayerTypeInWorkers } from "./linalg/rank_workers.ts";
export { evaluateItems, type EvaluateOptions, type TaskScore } from "./models/evaluate.ts";
export * from "./data/answers.ts";
export * from "./data/eval_data.ts";
