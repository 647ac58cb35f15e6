/** The compiler: IR passes (and, with the WebGPU issue, fusion, memory planning and WGSL). */

export * from "./passes/mod.ts";
export { DEFAULT_CODEGEN, lower, type LowerOptions, splitSizesFor } from "./lower.ts";
export type { CodegenOptions } from "./codegen/kernels.ts";
export {
  chooseTiling,
  type MatmulTiling,
  tilingCost,
  tilingProblem,
} from "./codegen/matmul_tiled.ts";
export { type Kernel, Program } from "./program.ts";
export {
  type MatmulChoice,
  matmulClass,
  type MatmulLayout,
  type MatmulProblem,
  matmulProblems,
} from "./codegen/matmul_classes.ts";
export { PACKED_FORMATS, packedBytes, type PackedFormat } from "./codegen/packed.ts";
export type { ShapeBuffer } from "./codegen/shape_params.ts";
export {
  type FusionOptions,
  isSplat,
  type KernelKind,
  type KernelPlan,
  planFusion,
} from "./fusion.ts";
export { type BufferSlot, type MemoryPlan, planMemory, type SlotKind } from "./memory_plan.ts";
