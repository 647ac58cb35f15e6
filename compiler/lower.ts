/** Lowering: Graph → Program (optimise, fuse, plan memory, generate WGSL per kernel). */

import { DslError, formatAval, type Graph, type Node } from "../dsl/mod.ts";
import { windowCount } from "./codegen/builder.ts";
import {
  type CodegenOptions,
  type GeneratedKernel,
  generateElementwise,
  generateMatmul,
  generateReduce,
  generateRowwise,
  generateScatter,
  type KernelContext,
} from "./codegen/kernels.ts";
import { tiledMatmul } from "./codegen/matmul_tiled.ts";
import { tunedOptions } from "./codegen/matmul_classes.ts";
import { vec4Matmul } from "./codegen/matmul_vec4.ts";
import { workgroupRows } from "./codegen/rows_workgroup.ts";
import { PACKED_FORMATS, type PackedFormat } from "./codegen/packed.ts";
import { shareShapes, SMALL_KERNEL_ELEMENTS, storageBindings } from "./codegen/shape_params.ts";
import { shareEpilogues } from "./codegen/epilogue_variants.ts";
import { groupKernels, MAX_GROUP_MEMBERS } from "./codegen/kernel_groups.ts";
import { type KernelPlan, planFusion } from "./fusion.ts";
import { type BufferSlot, type MemoryPlan, planMemory } from "./memory_plan.ts";
import { scheduleGroups } from "./schedule.ts";
import { optimize } from "./passes/mod.ts";
import { splitLargeWork, type SplitSizes } from "./passes/split.ts";
import { type Kernel, Program } from "./program.ts";

/** Options of `lower`: device limits, fusion and donation, and codegen overrides. */
export interface LowerOptions extends Partial<CodegenOptions> {
  /** Storage buffers per kernel (device limit maxStorageBuffersPerShaderStage). */
  maxStorageBuffers: number;
  /** false: one kernel per primitive, no buffer reuse (the op-by-op baseline). */
  fuse?: boolean;
  /** Graph inputs whose buffers the program may overwrite. */
  donate?: ReadonlySet<number>;
  /** Run `optimize` first (default true). */
  optimize?: boolean;
  /**
   * The device's maxStorageBufferBindingSize: a buffer larger than this is bound as several
   * windows (bindings at offsets into it), each at most this large.
   */
  maxBindingBytes?: number;
  /** The device's minStorageBufferOffsetAlignment (windows start at multiples of it). */
  bindingAlignment?: number;
  /** The device's maxBufferSize. */
  maxBufferBytes?: number;
  /** Overrides of the sizes the split pass derives from `maxLoopIterations`. */
  split?: Partial<SplitSizes>;
  /**
   * f32 inputs stored in a 16-bit format, by input index: kernels widen them as they read (half
   * the bytes of a frozen weight). They are never written: a donated one can only pass through.
   */
  packedInputs?: ReadonlyMap<number, PackedFormat>;
}

/** The codegen settings `lower` uses where `LowerOptions` does not override them. */
export const DEFAULT_CODEGEN: CodegenOptions = {
  maxWorkgroups: 65535,
  matmulTile: { rows: 4, cols: 4, workgroup: [8, 8] },
  vectorizedMatmul: true,
  matmulRowBlock: 32,
  matmulColumnGroups: 8,
  matmulWorkgroup: [8, 1],
  matmulNtTile: { rows: 8, cols: 4 },
  matmulNtInPlace: false,
  matmulTnInPlace: false,
  matmulStridedOperands: false,
  matmulSumProducts: false,
  matmulCoProducts: false,
  rowWorkgroup: 0,
  subgroupReductions: false,
  halfStorage: false,
  inlineProducts: 0,
  recomputeElementwise: true,
  siblingReductions: true,
  inPlaceBindings: false,
  matmulFlatLanes: false,
  matmulMaxUnroll: 1024,
  matmulEpilogueRowLoop: true,
  matmulCompactWork: 0,
  matmulCompactUnroll: 256,
  matmulTilings: [],
  matmulMinWorkgroups: 1,
  maxWorkgroupsPerDimension: 65535,
  maxLoopIterations: Infinity,
  shareShapes: true,
  liftDivisorsUpTo: SMALL_KERNEL_ELEMENTS,
  shareEpilogues: true,
  liftMatmulLoopsUpTo: Infinity,
  shapeBuffer: "uniform",
  groupKernels: true,
};

/**
 * Split sizes for a device running at most `loopBudget` loop iterations per invocation: each
 * stays well inside it with room for the loops a kernel adds around it (row phases, several
 * outputs per invocation); the caps apply on every device, since one invocation looping over
 * millions of elements is slow anywhere.
 */
export function splitSizesFor(loopBudget: number): SplitSizes {
  const within = (cap: number, share: number) =>
    Math.max(2, Math.min(cap, Math.floor((loopBudget - 1) / share)));
  return {
    reduceChunk: within(2048, 8),
    matmulChunk: within(16384, 2),
    scatterChunk: within(16384, 4),
  };
}

/** The multiply-adds of a kernel's products (output elements × contraction, summed). */
function productWork(plan: KernelPlan): number {
  return plan.fused.reduce(
    (n, x) => x.op === "matmul" ? n + x.size * x.inputs[0].shape[x.shape.length - 1] : n,
    0,
  );
}

/** A large product's sharing key (`Kernel.loopKey`): its products' operand shapes and its grid. */
function productsKey(plan: KernelPlan, dispatch: readonly number[]): string {
  const products = plan.fused.filter((x) => x.op === "matmul");
  return [...products.map((x) => x.inputs.map((i) => i.shape.join("x")).join("·")), dispatch]
    .join(";");
}

function kernelName(plan: KernelPlan): string {
  const ops = plan.fused.map((n) => n.op);
  const main = plan.anchor?.op ?? ops.filter((o) => !VIEWS.has(o)).at(-1) ?? ops.at(-1) ?? "copy";
  return `${plan.kind}_${main}_${plan.roots[0].id}`;
}

const VIEWS = new Set(["reshape", "broadcast", "transpose", "slice", "pad", "concat"]);

/** Compiles a graph to a Program: optimise, fuse into kernels, plan buffers, generate WGSL. */
export function lower(graph: Graph, opts: LowerOptions): Program {
  const codegen: CodegenOptions = { ...DEFAULT_CODEGEN, ...opts };
  const budget = codegen.maxLoopIterations;
  const optimized = opts.optimize === false ? graph : optimize(graph);
  const split = { ...splitSizesFor(budget), ...opts.split };
  const g = splitLargeWork(optimized, split);
  const windowElements = bindingWindow(opts);
  const plans = planFusion(g, {
    maxStorageBuffers: opts.maxStorageBuffers,
    fuse: opts.fuse,
    maxRowLength: Math.floor((budget - 1) / 8),
    bindingsOf: (n) => windowCount(n.size, windowElements),
    ntInPlace: codegen.matmulNtInPlace,
    tnInPlace: codegen.matmulTnInPlace,
    stridedOperands: codegen.matmulStridedOperands,
    sumProducts: codegen.matmulSumProducts,
    coProducts: codegen.matmulCoProducts,
    recompute: codegen.recomputeElementwise,
    siblingReductions: codegen.siblingReductions,
    inlineProducts: codegen.inlineProducts,
    maxLoopIterations: budget,
    maxProductDepth: split.matmulChunk,
    donated: opts.fuse === false || !codegen.inPlaceBindings ? undefined : new Set(
      g.inputs.filter((_, i) => opts.donate?.has(i) && !opts.packedInputs?.has(i)),
    ),
  });
  checkPackedInputs(g, opts.packedInputs);
  let built = generate(g, plans, undefined, opts, codegen, windowElements);
  let kernels = built.kernels;
  // The op-by-op baseline (fuse: false) keeps one dispatch per primitive.
  if (codegen.groupKernels && opts.fuse !== false) {
    // Kernels that came out with one text, and read nothing the other computes, are grouped:
    // the plans are rescheduled, planned and generated again, and each group's runs of one text
    // become one dispatch. A plan split into parts (several kernels) is not grouped.
    const parts = new Map<number, Kernel[]>();
    built.planOf.forEach((p, k) => parts.set(p, [...(parts.get(p) ?? []), built.kernels[k]]));
    const only = new Map([...parts].filter(([, ks]) => ks.length === 1).map(([p, [k]]) => [p, k]));
    const schedule = scheduleGroups(plans, {
      keyOf: (_, i) => only.get(i)?.wgsl,
      bindingsOf: (_, i) => only.get(i)?.slots.filter((slot) => slot >= 0).length ?? Infinity,
      sharedOf: (_, i) => only.get(i)?.slots.filter((slot) => slot < 0).length ?? 0,
      maxStorageBuffers: opts.maxStorageBuffers,
      window: GROUP_WINDOW,
      maxMembers: MAX_GROUP_MEMBERS,
    });
    if (schedule.groups.some((group) => group >= 0)) {
      built = generate(g, schedule.plans, schedule.groups, opts, codegen, windowElements);
      kernels = groupKernels(built.kernels, built.planOf.map((p) => schedule.groups[p]), {
        maxStorageBuffers: opts.maxStorageBuffers,
        maxWorkgroupsPerDimension: codegen.maxWorkgroupsPerDimension,
      });
    }
  }
  const memory = built.memory;
  for (const k of kernels) {
    if (storageBindings(k) > opts.maxStorageBuffers) {
      throw new Error(
        `lower: kernel ${k.name} binds ${storageBindings(k)} storage buffers (limit ` +
          `${opts.maxStorageBuffers})`,
      );
    }
    if (k.loopIterations >= budget) {
      throw new Error(
        `lower: kernel ${k.name} runs ${k.loopIterations} loop iterations per invocation; the ` +
          `device ends an invocation after ${budget}`,
      );
    }
    const overDim = k.dispatch.find((d) => d > codegen.maxWorkgroupsPerDimension);
    if (overDim !== undefined) {
      throw new Error(
        `lower: kernel ${k.name} dispatches ${overDim} workgroups in one dimension (device ` +
          `maxComputeWorkgroupsPerDimension ${codegen.maxWorkgroupsPerDimension})`,
      );
    }
  }
  return new Program(
    g,
    kernels,
    memory.slots,
    g.inputs.map((n) => memory.slotOf.get(n)!),
    g.outputs.map((n) => memory.slotOf.get(n)!),
    memory.peakBytes,
  );
}

/** How many kernels past a group's first member the schedule looks for more members. */
const GROUP_WINDOW = 64;

/**
 * The kernels of `plans` (in that order, `groups` as in `planMemory`): buffers planned, WGSL
 * generated, texts shared. `planOf` is each kernel's plan index.
 */
function generate(
  g: Graph,
  plans: readonly KernelPlan[],
  groups: readonly number[] | undefined,
  opts: LowerOptions,
  codegen: CodegenOptions,
  windowElements: number | undefined,
): { kernels: Kernel[]; memory: MemoryPlan; planOf: number[] } {
  const memory = planMemory(g, plans, {
    donate: opts.donate,
    reuse: opts.fuse !== false,
    packed: opts.packedInputs,
    groups,
    halfStorage: codegen.halfStorage,
  });
  const buffers = new Set<Node>(memory.slotOf.keys());
  checkBufferSizes(memory.slots, memory.slotOf, opts);
  const ctx: KernelContext = {
    buffers,
    slotOf: (n) => {
      const s = memory.slotOf.get(n);
      if (s === undefined) throw new Error(`lower: ${n.op} has no buffer slot`);
      return s;
    },
    slotDtype: (s) => memory.slots[s].element,
    packedOf: (s) => memory.slots[s].packed,
    layout: windowElements === undefined ? undefined : {
      windowElements,
      // A multiple of the device's alignment and of a vec4 (powers of two).
      alignElements: Math.max(16, opts.bindingAlignment ?? 256) / 4,
      elementsOf: (s) => memory.slots[s].bytes / 4,
    },
  };
  const generators = {
    elementwise: generateElementwise,
    rowwise: (p: KernelPlan, c: KernelContext, o: CodegenOptions) =>
      workgroupRows(p, c, o) ?? generateRowwise(p, c, o),
    reduce: (p: KernelPlan, c: KernelContext, o: CodegenOptions) =>
      workgroupRows(p, c, o) ?? generateReduce(p, c, o),
    matmul: (p: KernelPlan, c: KernelContext, o: CodegenOptions) => {
      const tuned = tunedOptions(p.anchor!, o);
      return tiledMatmul(p, c, tuned) ?? vec4Matmul(p, c, tuned) ?? generateMatmul(p, c, tuned);
    },
    scatter: generateScatter,
  };
  const planOf: number[] = [];
  const generated: Kernel[] = plans.flatMap((plan, p) => {
    if (plan.roots[0].size === 0) return [];
    const gens = [generators[plan.kind](plan, ctx, codegen)].flat();
    const work = productWork(plan);
    const literalLoop = plan.kind === "matmul" && work > codegen.liftMatmulLoopsUpTo;
    return gens.map((gen) => {
      planOf.push(p);
      return {
        name: kernelName(plan) + (gen.part ? `_${gen.part}` : ""),
        kind: plan.kind,
        ops: plan.fused.map((n) => n.op),
        bindings: gen.slots.length,
        slots: gen.slots,
        written: gen.written,
        ranges: bindingRanges(gen, memory.slots, windowElements),
        wgsl: gen.wgsl,
        dispatch: gen.dispatch,
        workgroupSize: gen.workgroupSize,
        output: plan.roots.map((r) => `${r.dtype}[${r.shape.join(",")}]`).join(" "),
        loopIterations: gen.loopIterations,
        multiplyAdds: gen.multiplyAdds ?? (work || undefined),
        liftDivisors: plan.kind !== "matmul" &&
          Math.max(...plan.roots.map((r) => r.size)) <= codegen.liftDivisorsUpTo,
        loopKey: literalLoop ? productsKey(plan, gen.dispatch) : undefined,
      };
    });
  });
  const sizes = { buffer: codegen.shapeBuffer, maxStorageBuffers: opts.maxStorageBuffers };
  const merged = codegen.shareEpilogues ? shareEpilogues(generated, sizes) : generated;
  const shared = codegen.shareShapes ? shareShapes(merged, sizes) : merged;
  return { kernels: shared.map(hoistDirectives), memory, planOf };
}

/**
 * `enable` directives first: WGSL allows them only before every declaration, and the passes that
 * rewrite a kernel's text (shared epilogues, shared shapes) may put items above them.
 */
function hoistDirectives(k: Kernel): Kernel {
  const lines = k.wgsl.split("\n");
  const directives = lines.filter((l) => /^enable \w+;$/.test(l));
  if (
    directives.length === 0 ||
    lines.slice(0, directives.length).every((l, i) => l === directives[i])
  ) {
    return k;
  }
  const rest = lines.filter((l) => !/^enable \w+;$/.test(l));
  return { ...k, wgsl: [...new Set(directives), ...rest].join("\n") };
}

/** Only f32 inputs (and f16 ones, as f16) can be stored packed, in a format codegen knows. */
function checkPackedInputs(g: Graph, packed: ReadonlyMap<number, PackedFormat> | undefined): void {
  for (const [i, format] of packed ?? []) {
    const n = g.inputs[i];
    const problem = !n
      ? `there is no input ${i} (the function takes ${g.inputs.length})`
      : n.dtype === "f16" && format !== "f16"
      ? `input ${i} is ${formatAval(n)}; an f16 input can only be stored as f16`
      : n.dtype !== "f32" && n.dtype !== "f16"
      ? `input ${i} is ${formatAval(n)}; only f32 and f16 inputs can be stored in 16 bits`
      : !PACKED_FORMATS.includes(format)
      ? `input ${i}: unknown format ${JSON.stringify(format)} (${PACKED_FORMATS.join(", ")})`
      : undefined;
    if (problem) throw new DslError("lower", `packedInputs: ${problem}`, n ? [formatAval(n)] : []);
  }
}

/** Elements per binding window (`maxBindingBytes` rounded down to the alignment), if bounded. */
function bindingWindow(opts: LowerOptions): number | undefined {
  if (opts.maxBindingBytes === undefined || !Number.isFinite(opts.maxBindingBytes)) {
    return undefined;
  }
  const align = Math.max(4, opts.bindingAlignment ?? 256);
  const windowBytes = Math.floor(opts.maxBindingBytes / align) * align;
  if (windowBytes < 4) {
    throw new Error(`lower: maxBindingBytes ${opts.maxBindingBytes} < alignment`);
  }
  return windowBytes / 4;
}

/** The byte range of each binding of a kernel that binds some buffer in windows. */
function bindingRanges(
  gen: GeneratedKernel,
  slots: readonly BufferSlot[],
  windowElements: number | undefined,
): ([number, number] | undefined)[] | undefined {
  if (windowElements === undefined) return undefined;
  const windowBytes = 4 * windowElements;
  if (gen.slots.every((slot) => slots[slot].bytes <= windowBytes)) return undefined;
  return gen.slots.map((slot, i) => {
    const bytes = Math.max(4, slots[slot].bytes);
    if (bytes <= windowBytes) return undefined;
    const offset = gen.offsets[i] * 4;
    return [offset, Math.min(windowBytes, bytes - offset)];
  });
}

/**
 * Every buffer must fit the device's buffer size limit (a buffer over the binding limit is bound in
 * windows); a tensor that does not fit is named, with its bytes and the limit, instead of
 * surfacing as an invalid buffer.
 */
function checkBufferSizes(
  slots: readonly BufferSlot[],
  slotOf: ReadonlyMap<Node, number>,
  opts: LowerOptions,
): void {
  const limit = opts.maxBufferBytes;
  const slot = limit === undefined ? undefined : slots.find((s) => s.bytes > limit);
  if (!slot) return;
  const nodes = [...slotOf].filter(([, s]) => s === slot.id).map(([n]) => n);
  const what = nodes.map((n) => `${n.op === "input" ? "input" : n.op} ${formatAval(n)}`);
  throw new DslError(
    "lower",
    `${what.join(" / ")} needs ${slot.bytes} bytes in one buffer; the device allows ${limit} ` +
      "(maxBufferSize). Reduce the batch, sequence length or model width, or shard the tensor",
    nodes.map(formatAval),
  );
}
