/** The DSL: tensors, tracing, primitives, ops, autodiff and the CPU reference. */

import "./primitives/mod.ts";
import "./tensor_methods.ts";

export type { DType, Precision } from "./dtype.ts";
export { isFloat } from "./dtype.ts";
export {
  array,
  formatHostArray,
  type HostArray,
  type HostData,
  isFloat16Data,
  isHostArray,
  type NestedNumbers,
  newFloat16Array,
  toNested,
} from "./host_array.ts";
export { DslError } from "./errors.ts";
export {
  type AbstractValue,
  type Capture,
  formatAval,
  Graph,
  Node,
  type Params,
  printGraph,
} from "./graph.ts";
export {
  type EvalContext,
  getPrimitive,
  isElementwise,
  type Primitive,
  primitiveNames,
  type VjpArgs,
  type WgslEmitContext,
  type WgslRule,
} from "./primitive.ts";
export { flattenTree, type TreeDef, unflattenTree } from "./pytree.ts";
export { type ArgSpec, Tensor, type Trace } from "./trace.ts";
export { trace } from "./trace_function.ts";
export { evaluateGraph, interpret, interpretF64 } from "./interpret.ts";
export { grad, type GradOptions, jvp, valueAndGrad, vjp } from "./autodiff.ts";
export { checkpoint } from "./checkpoint.ts";
export { customVjp, type CustomVjpRule } from "./custom_vjp.ts";
export type { TensorLike } from "./ops/coerce.ts";
export * from "./ops/elementwise.ts";
export * from "./ops/reduce.ts";
export * from "./ops/linalg.ts";
export * from "./ops/shape.ts";
export * from "./ops/creation.ts";
export * from "./ops/nn.ts";
export * from "./random.ts";
export * from "./optim.ts";
/** Layers and decoder models (Llama, GPT-2) as pure functions of named parameter records. */
export * as nn from "./nn/mod.ts";
export type { LmBatch, ModelConfig, ModelFamily } from "./nn/mod.ts";
export {
  orthogonalityError,
  reconstructionError,
  singularValues,
  type Svd,
  svd,
  svdOf,
  type SvdOptions,
} from "./linalg/svd.ts";
export {
  effectiveRank,
  groupRanks,
  type LayerTypeRank,
  layerTypes,
  measureUpdate,
  RANK_REPORT_WORK,
  rankByLayerType,
  type RankReport,
  rankReportNames,
  type RankReportOptions,
  rankSample,
  type SingularValueMethod,
  updateOf,
  type UpdateRank,
} from "./linalg/rank.ts";
export { type GramSingularValues, gramSingularValues } from "./linalg/gram_singular_values.ts";
export { symmetricEigenvalues } from "./linalg/symmetric_eigen.ts";
export * from "./adapters/init.ts";
export * from "./adapters/steps.ts";
export * from "./adapters/methods/mod.ts";
export { vmap, type VmapOptions } from "./vmap.ts";
