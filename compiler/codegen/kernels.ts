/**
 * Kernel templates: the loop structure around a fused expression.
 * - elementwise: a grid-stride loop over the output (several outputs when kernels were merged);
 * - rowwise: one invocation per row; each row reduction is a loop over the row, then a last loop
 *   writes the row (single-kernel softmax / layerNorm);
 * - reduce: one invocation per output, looping over the reduced axes (row reductions of its
 *   prologue first), then the epilogue;
 * - matmul: each invocation owns a TM×TN register tile, operands read through their views, and
 *   stores it through one copy of the epilogue per tile row (tile_epilogue.ts);
 * - scatter: each invocation owns one column of the operand, so duplicate indices never race and
 *   the accumulation order matches the CPU reference; in place, it touches only updated rows.
 *
 * Every template respects the device's dispatch limits: grid-stride kernels spread their
 * workgroups over a 2-D/3-D grid past `maxComputeWorkgroupsPerDimension`, and tile kernels fold an
 * oversized grid into one flat workgroup index. Each reports the most loop iterations one
 * invocation runs (`loopIterations`), which `lower` checks against the device's loop budget
 * (llvmpipe/lavapipe end an invocation after 65,535 iterations in total, without an error); the
 * split pass (`compiler/passes/split.ts`) keeps each loop short enough for that.
 */

import { contiguousSliceStart, stridedView, swapsLastTwo, vec4Direction } from "../views.ts";
import type { Node } from "../../dsl/mod.ts";
import { WGSL_HELPERS, wgslLiteral } from "../../dsl/primitives/wgsl.ts";
import { inlinedDepth, type KernelPlan, reducedAxes } from "../fusion.ts";
import { type BindingLayout, KernelBuilder, storageType } from "./builder.ts";
import type { MatmulTiling } from "./matmul_tiled.ts";
import type { MatmulChoice } from "./matmul_classes.ts";
import type { PackedFormat } from "./packed.ts";
import type { ShapeBuffer } from "./shape_params.ts";
import { storeTile, tileEpilogueIterations } from "./tile_epilogue.ts";

export interface GeneratedKernel {
  wgsl: string;
  /** Slots bound, in binding order (a slot bound in windows once per window); outputs last. */
  slots: number[];
  /** Offset of each binding into its buffer in 4-byte units (0 for a buffer bound whole). */
  offsets: number[];
  /** Slots the kernel writes (its outputs). */
  written: number[];
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  /** Most loop iterations (of all loops together) that one invocation runs. */
  loopIterations: number;
  /** What this kernel does for its plan, when the plan needs more than one (e.g. "copy"). */
  part?: string;
  /** A matmul part's own multiply-adds, where a plan's products are split over several kernels. */
  multiplyAdds?: number;
}

/** Tuning knobs of the WGSL kernel templates (workgroup sizes, tiles, vectorisation). */
export interface CodegenOptions {
  /** Cap on workgroups of grid-stride kernels (llvmpipe pays ≈1 µs per workgroup). */
  maxWorkgroups: number;
  /** Register tile of generic matmul kernels. */
  matmulTile: { rows: number; cols: number; workgroup: [number, number] };
  /** Use the vectorised matmul kernels when operand layouts allow. */
  vectorizedMatmul: boolean;
  /** Rows per invocation of the vectorised NN matmul. */
  matmulRowBlock: number;
  /** vec4 column groups per invocation of the vectorised NN matmul. */
  matmulColumnGroups: number;
  /** Rows × columns per invocation of the vectorised NT matmul (x·Wᵀ; columns a multiple of 4). */
  matmulNtTile: { rows: number; cols: number };
  /** Read x·Wᵀ's W in place with the NT kernel wherever it applies (else W is copied for NN). */
  matmulNtInPlace: boolean;
  /** Read Xᵀ·Y's X in place with the TN kernel wherever it applies (else Xᵀ is copied for NN). */
  matmulTnInPlace: boolean;
  /**
   * Read an operand that is a strided view of a buffer (attention heads split from, or merged
   * into, [b, t, h·d]: a batch-axis permutation) in place with the vec4 kernel, where its
   * contiguous axis and every other stride allow vec4 loads, instead of copying it first.
   */
  matmulStridedOperands: boolean;
  /**
   * Sum products of one shape that meet through adds in one kernel (fusion option
   * `sumProducts`): the register-tile kernels accumulate each into the same tile, the
   * shared-memory kernel runs each product's tiled contraction in turn into the same block.
   */
  matmulSumProducts: boolean;
  /**
   * Compute a product beside another whose epilogue reads it at the same index (fusion option
   * `coProducts`: the up projection beside the gate), each into accumulators of its own.
   */
  matmulCoProducts: boolean;
  /**
   * Invocations of a workgroup that owns one row of a row-wise kernel or row reduction
   * (rows_workgroup.ts; 0: one invocation per row, the CPU adapter's choice).
   */
  rowWorkgroup: number;
  /**
   * Those row reductions combine each subgroup's partial results with `subgroupAdd`/`subgroupMax`
   * and meet in workgroup memory once (two barriers, not a tree of log₂ size). Needs a device
   * granted `subgroups`: `jit` turns it off on any other.
   */
  subgroupReductions: boolean;
  /**
   * f16 intermediates and outputs in 16-bit words, written through `array<f16>` bindings (half
   * the bytes; read back as packed words). Needs `shader-f16`: `jit` turns it on where the device
   * was granted it. Off: f32 words holding half values.
   */
  halfStorage: boolean;
  /**
   * Longest contraction of a product computed inside the row-wise kernel that alone reads it
   * (fusion option `inlineProducts`; 0: none).
   */
  inlineProducts: number;
  /**
   * Recompute a short elementwise chain over one buffer where it is read instead of storing it
   * (fusion option `recompute`: a gate's σ(g) and silu(g) in the backward pass).
   */
  recomputeElementwise: boolean;
  /**
   * Compute reductions of one space over the same axes in one kernel (fusion rule 11: a
   * log-sum-exp and the target's log-probability over a row of logits).
   */
  siblingReductions: boolean;
  /**
   * Count an output written over a donated input as one binding when merging elementwise kernels
   * (fusion option `donated`): an optimizer's moments updated in place take one binding each, so
   * more of them share a dispatch. The choice on GPUs; on CPU adapters the wider kernels are new
   * pipelines to compile.
   */
  inPlaceBindings: boolean;
  /**
   * Most multiply-adds the unrolled k-loop body of a vectorised matmul may hold; larger tiles
   * get fewer rows (then column groups). llvmpipe compiles a kernel at its first run, in time
   * that grows with this body; bodies past 1024 ran no faster there (32 rows vs 16).
   */
  matmulMaxUnroll: number;
  /**
   * Products of fewer multiply-adds than this get `matmulCompactUnroll` instead of
   * `matmulMaxUnroll`: their run time is small whatever the tile, their compile time is not.
   */
  matmulCompactWork: number;
  /** The unroll budget of products under `matmulCompactWork`. */
  matmulCompactUnroll: number;
  /**
   * Store a register tile through its epilogue in a loop over the tile's rows, the epilogue
   * emitted once (tile_epilogue.ts), instead of once per row.
   */
  matmulEpilogueRowLoop: boolean;
  /** Workgroup of the vectorised matmul kernels (columns, rows). */
  matmulWorkgroup: [number, number];
  /**
   * Number a vectorised matmul's tiles row by row along x (one-row workgroups only), so that
   * no lane idles where a row of tiles does not fill whole workgroups.
   */
  matmulFlatLanes: boolean;
  /**
   * Shared-memory matmul tilings to choose from, largest first (empty: register-tile kernels
   * only, the choice on CPU adapters).
   */
  matmulTilings: MatmulTiling[];
  /** A tiling is chosen only if it still gives this many workgroups (else a smaller one). */
  matmulMinWorkgroups: number;
  /** The device's maxComputeWorkgroupsPerDimension. */
  maxWorkgroupsPerDimension: number;
  /**
   * Kernels of a program that differ only in sizes read them from a uniform buffer and share one
   * pipeline (shape_params.ts).
   */
  shareShapes: boolean;
  /**
   * With `shareShapes`, elementwise, row-wise and reduction kernels over at most this many
   * elements read their divisors and moduli from the uniform buffer too (shape_params.ts), so that
   * kernels differing only in index arithmetic share a pipeline; 0: never.
   */
  liftDivisorsUpTo: number;
  /**
   * Matmul kernels of a program that differ only in their fused epilogue (and sizes) share one
   * pipeline, each epilogue chosen by a uniform (epilogue_variants.ts).
   */
  shareEpilogues: boolean;
  /**
   * Matmul kernels of at most this many multiply-adds may read the sizes of their main loop (its
   * bound, strides, tile counts, clamps) from the sizes buffer when they share a pipeline with
   * kernels of other sizes (`shareShapes`, `shareEpilogues`); larger ones keep them as literals
   * and share a pipeline only with kernels of the same products' shapes and grid
   * (`Kernel.loopKey`). Infinity: any.
   */
  liftMatmulLoopsUpTo: number;
  /**
   * Where a kernel that shares its text reads its sizes: a uniform buffer, or a read-only storage
   * buffer (shape_params.ts `ShapeBuffer`: on llvmpipe and lavapipe, where a uniform the code
   * branches on makes Mesa compile a variant per value set, and again at each switch between them).
   */
  shapeBuffer: ShapeBuffer;
  /**
   * Independent kernels of a program that share a pipeline run as one dispatch, each workgroup
   * finding its member in a uniform (kernel_groups.ts, schedule.ts).
   */
  groupKernels: boolean;
  /**
   * Tunables chosen per matmul shape class by the autotuner (matmul_classes.ts,
   * runtime/autotune.ts), applied to the products of that class over the settings above.
   */
  matmulTuned?: ReadonlyMap<string, MatmulChoice>;
  /**
   * Loop iterations one invocation may run in total (Infinity when the device sets no bound;
   * 65,535 on Mesa's llvmpipe and lavapipe, which stop the invocation silently past it).
   */
  maxLoopIterations: number;
}

export interface KernelContext {
  buffers: ReadonlySet<Node>;
  slotOf: (n: Node) => number;
  slotDtype: (slot: number) => string;
  /** Windowed bindings of buffers larger than one binding may be (absent: all bound whole). */
  layout?: BindingLayout;
  /** The 16-bit format of a slot holding a packed f32 input (absent: none is packed). */
  packedOf?: (slot: number) => PackedFormat | undefined;
}

/** A builder for `plan`'s kernel in `ctx`. */
export function builderFor(plan: KernelPlan, ctx: KernelContext): KernelBuilder {
  return new KernelBuilder(ctx.buffers, ctx.slotOf, plan.roots, ctx.layout, ctx.packedOf);
}

const WORKGROUP = 64;

function header(
  b: KernelBuilder,
  roots: readonly Node[],
  ctx: KernelContext,
  body: readonly string[],
): string {
  const lines: string[] = [...b.moduleDecls];
  const done = new Set<string>();
  const addHelper = (name: string) => {
    if (done.has(name)) return;
    const src = b.helpers.get(name) ?? WGSL_HELPERS[name as keyof typeof WGSL_HELPERS];
    // Helpers a helper calls come first (WGSL allows any order; this keeps listings readable).
    for (const dep of Object.keys(WGSL_HELPERS)) {
      if (dep !== name && src.includes(`${dep}(`)) addHelper(dep);
    }
    done.add(name);
    lines.push(src);
  };
  [...b.helpers.keys()].forEach(addHelper);
  // Helpers the body calls without a primitive's rule asking for them (literals, f16 stores).
  for (const name of Object.keys(WGSL_HELPERS)) {
    if (body.some((l) => l.includes(`${name}(`))) addHelper(name);
  }
  for (const [slot, first] of b.bindingOfSlot) {
    const element = b.readElement(slot, ctx.slotDtype(slot));
    for (let w = first; w < first + b.bindingsOf(slot); w++) {
      lines.push(`@group(0) @binding(${w}) var<storage, read> b${w}: array<${element}>;`);
    }
  }
  let binding = b.readBindingCount;
  roots.forEach((r, k) => {
    const element = b.halfOutput(k) ? "f16" : storageType(r.dtype);
    for (const name of b.outputNames(k)) {
      lines.push(
        `@group(0) @binding(${binding++}) var<storage, read_write> ${name}: array<${element}>;`,
      );
    }
  });
  return lines.join("\n");
}

export function finish(
  b: KernelBuilder,
  plan: KernelPlan,
  ctx: KernelContext,
  body: string[],
  dispatch: [number, number, number],
  workgroupSize: [number, number, number],
  loopIterations: number,
): GeneratedKernel {
  const subgroups = body.some((l) => /\bsg_(lane|size)\b/.test(l));
  const builtins = [
    "@builtin(global_invocation_id) gid: vec3<u32>",
    "@builtin(num_workgroups) nwg: vec3<u32>",
    // Only kernels spread over a multi-dimensional grid re-derive their ids from these.
    ...(body.some((l) => /\b(wid|lid)\./.test(l))
      ? ["@builtin(workgroup_id) wid: vec3<u32>", "@builtin(local_invocation_id) lid: vec3<u32>"]
      : []),
    ...(subgroups
      ? ["@builtin(subgroup_invocation_id) sg_lane: u32", "@builtin(subgroup_size) sg_size: u32"]
      : []),
  ];
  // f16 outputs in 16-bit words are declared array<f16> (shader-f16).
  const half = plan.roots.some((_, k) => b.halfOutput(k));
  const enables = `${half ? "enable f16;\n" : ""}${subgroups ? "enable subgroups;\n" : ""}`;
  const wgsl = `${enables}${header(b, plan.roots, ctx, body)}
@compute @workgroup_size(${workgroupSize.join(", ")})
fn main(${builtins.join(", ")}) {
${body.map((l) => "  " + l).join("\n")}
}
`;
  const slots: number[] = [], offsets: number[] = [];
  const bindWindows = (slot: number) => {
    for (const offset of b.bindingOffsets(slot)) slots.push(slot), offsets.push(offset);
  };
  [...b.bindingOfSlot].sort((x, y) => x[1] - y[1]).forEach(([slot]) => bindWindows(slot));
  b.outputSlots.forEach(bindWindows);
  return {
    wgsl,
    slots,
    offsets,
    written: [...new Set(b.outputSlots)],
    dispatch,
    workgroupSize,
    loopIterations,
  };
}

/**
 * A physical dispatch of at least `groups` workgroups within `maxPerDim` per dimension (x first,
 * then y, then z).
 */
export function spreadWorkgroups(groups: number, maxPerDim: number): [number, number, number] {
  if (groups <= maxPerDim) return [Math.max(1, groups), 1, 1];
  const rows = Math.ceil(groups / maxPerDim);
  if (rows <= maxPerDim) return [maxPerDim, rows, 1];
  const layers = Math.ceil(rows / maxPerDim);
  if (layers > maxPerDim) {
    throw new Error(
      `codegen: ${groups} workgroups exceed the device's grid of ${maxPerDim}³ ` +
        "(maxComputeWorkgroupsPerDimension)",
    );
  }
  return [maxPerDim, maxPerDim, layers];
}

/** The flat workgroup index of a dispatch spread over several dimensions (WGSL, u32). */
export const FLAT_WORKGROUP = "((wid.z * nwg.y + wid.y) * nwg.x + wid.x)";

/** Emits `head`, then the statements of `inner` (a new scope) indented, then `}`. */
export function block(b: KernelBuilder, head: string, inner: () => void): void {
  b.line(head);
  b.openScope();
  inner();
  b.closeScope().forEach((l) => b.line("  " + l));
  b.line("}");
}

/**
 * A grid-stride loop over `count` items, each running `perItem` loop iterations of its own;
 * returns the dispatch and the loop iterations per invocation. Enough workgroups are launched that
 * no invocation exceeds the device's loop budget, spread over y and z past the per-dimension cap.
 */
function gridStride(
  b: KernelBuilder,
  count: number,
  opts: CodegenOptions,
  perItem: number,
  emit: (i: string) => void,
): { dispatch: [number, number, number]; loopIterations: number } {
  const itemsPerInvocation = Math.floor((opts.maxLoopIterations - 1) / (perItem + 1));
  if (itemsPerInvocation < 1) {
    throw new Error(
      `codegen: one item needs ${perItem} loop iterations; the device runs at most ` +
        `${opts.maxLoopIterations} per invocation`,
    );
  }
  const all = Math.ceil(count / WORKGROUP);
  const needed = Math.ceil(Math.ceil(count / itemsPerInvocation) / WORKGROUP);
  const gridCap = opts.maxWorkgroupsPerDimension ** 3;
  const groups = Math.max(1, Math.min(all, Math.max(opts.maxWorkgroups, needed), gridCap));
  const dispatch = spreadWorkgroups(groups, opts.maxWorkgroupsPerDimension);
  const threads = dispatch[0] * dispatch[1] * dispatch[2] * WORKGROUP;
  if (count + threads > 2 ** 31 - 1) {
    throw new Error(`codegen: ${count} items overflow a 32-bit grid-stride index`);
  }
  if (dispatch[1] === 1 && dispatch[2] === 1) {
    b.line(`let stride = i32(nwg.x) * ${WORKGROUP}i;`);
    block(b, `for (var i = i32(gid.x); i < ${count}i; i += stride) {`, () => emit("i"));
  } else {
    b.line(`let stride = i32(nwg.x * nwg.y * nwg.z) * ${WORKGROUP}i;`);
    b.line(`let first = i32(${FLAT_WORKGROUP}) * ${WORKGROUP}i + i32(lid.x);`);
    block(b, `for (var i = first; i < ${count}i; i += stride) {`, () => emit("i"));
  }
  return { dispatch, loopIterations: Math.ceil(count / threads) * (perItem + 1) };
}

/** `finish` for a kernel whose body is one `gridStride` loop. */
function finishGridStride(
  b: KernelBuilder,
  plan: KernelPlan,
  ctx: KernelContext,
  grid: { dispatch: [number, number, number]; loopIterations: number },
): GeneratedKernel {
  const body = b.closeScope();
  return finish(b, plan, ctx, body, grid.dispatch, [WORKGROUP, 1, 1], grid.loopIterations);
}

/**
 * Maps a logical grid of workgroups onto the device: as it is when every dimension fits, else
 * folded into one flat index over a spread dispatch, from which `gid` is re-derived inside a
 * nested block (WGSL cannot redeclare a parameter in the function's own scope).
 */
export function tileGrid(
  logical: [number, number, number],
  workgroup: [number, number, number],
  opts: CodegenOptions,
  body: string[],
): { dispatch: [number, number, number]; body: string[] } {
  const max = opts.maxWorkgroupsPerDimension;
  if (logical.every((d) => d <= max)) return { dispatch: logical, body };
  const [x, y] = logical;
  const total = logical[0] * logical[1] * logical[2];
  const [wx, wy] = workgroup;
  return {
    dispatch: spreadWorkgroups(total, max),
    body: [
      `let flat_wg = ${FLAT_WORKGROUP};`,
      `if (flat_wg >= ${total}u) { return; }`,
      "{",
      `  let gid = vec3<u32>((flat_wg % ${x}u) * ${wx}u + lid.x, ((flat_wg / ${x}u) % ${y}u) * ${wy}u + lid.y, flat_wg / ${
        x * y
      }u);`,
      ...body.map((l) => "  " + l),
      "}",
    ],
  };
}

/** Merges an outer index (non-reduced axes) and a row index (reduced axes) into a full index. */
export function mergeIndex(
  rank: number,
  axes: readonly number[],
  outer: readonly string[],
  row: readonly string[],
): string[] {
  const full: string[] = [];
  let o = 0, r = 0;
  for (let d = 0; d < rank; d++) full.push(axes.includes(d) ? row[r++] : outer[o++]);
  return full;
}

/** Accumulates reduction `red` over its reduced axes at `outer`; returns the result's name. */
function reduceLoop(b: KernelBuilder, red: Node, outer: readonly string[]): string {
  const input = red.inputs[0];
  const axes = reducedAxes(red);
  const rowShape = axes.map((a) => input.shape[a]);
  const count = rowShape.reduce((p, d) => p * d, 1);
  const t = storageType(input.dtype);
  const acc = b.fresh("acc");
  const arg = b.fresh("arg");
  const lowest = t === "f32" ? wgslLiteral(-Infinity, "f32") : "i32(-2147483647 - 1)";
  b.line(`var ${acc}: ${t} = ${red.op === "sum" ? (t === "f32" ? "0.0f" : "0i") : lowest};`);
  if (red.op === "argmax") b.line(`var ${arg}: i32 = 0i;`);
  const r = b.fresh("r");
  block(b, `for (var ${r} = 0i; ${r} < ${count}i; ${r}++) {`, () => {
    const full = mergeIndex(input.shape.length, axes, outer, b.unravel(r, rowShape));
    const v = b.valueAt(input, full);
    if (red.op === "sum") b.line(`${acc} = ${acc} + ${v};`);
    else if (red.op === "max") {
      if (t === "f32") {
        b.helpers.set("max_nan", WGSL_HELPERS.max_nan);
        b.line(`${acc} = max_nan(${acc}, ${v});`);
      } else b.line(`${acc} = max(${acc}, ${v});`);
    } else {
      // First maximum wins; a NaN counts as the maximum (numpy), as in the CPU reference.
      if (t === "f32") b.helpers.set("is_nan", WGSL_HELPERS.is_nan);
      const better = t === "f32"
        ? `${r} == 0i || (!is_nan(${acc}) && (${v} > ${acc} || is_nan(${v})))`
        : `${r} == 0i || ${v} > ${acc}`;
      b.line(`if (${better}) { ${acc} = ${v}; ${arg} = ${r}; }`);
    }
  });
  return red.op === "argmax" ? arg : acc;
}

/** Elements one reduction loops over. */
function reducedCount(red: Node): number {
  return reducedAxes(red).reduce((p, a) => p * red.inputs[0].shape[a], 1);
}

/** Loop iterations of the row phases of `plan` (one loop per row reduction). */
function rowPhaseIterations(plan: KernelPlan): number {
  return plan.rowReductions.reduce((n, red) => n + reducedCount(red), 0);
}

/**
 * Loop iterations each element of a row-wise kernel costs: 1, plus the contraction of every product
 * computed inline (fusion rule 10) in its expression.
 */
export function elementIterations(plan: KernelPlan): number {
  return 1 + inlinedDepth(plan);
}

/** Computes each row reduction at `outer` and seeds its value for the code that follows. */
function rowPhases(b: KernelBuilder, plan: KernelPlan, outer: readonly string[]): void {
  for (const red of plan.rowReductions) b.seed(red, outer, reduceLoop(b, red, outer));
}

export function storeRoots(
  b: KernelBuilder,
  roots: readonly Node[],
  index: readonly string[] | ((root: Node) => readonly string[]),
  flat: string,
) {
  // All values first: an output may reuse the buffer another output still reads (in place).
  const values = roots.map((root) =>
    b.valueAt(root, typeof index === "function" ? index(root) : index)
  );
  roots.forEach((root, k) => b.store(k, flat, b.storeValue(values[k], root.dtype)));
}

export function generateElementwise(
  plan: KernelPlan,
  ctx: KernelContext,
  opts: CodegenOptions,
): GeneratedKernel {
  const b = builderFor(plan, ctx);
  const shape = plan.roots[0].shape;
  const grid = gridStride(b, plan.roots[0].size, opts, 0, (i) => {
    storeRoots(b, plan.roots, b.unravel(i, shape), i);
  });
  return finishGridStride(b, plan, ctx, grid);
}

export function generateRowwise(
  plan: KernelPlan,
  ctx: KernelContext,
  opts: CodegenOptions,
): GeneratedKernel {
  const b = builderFor(plan, ctx);
  const shape = plan.roots[0].shape;
  const axes = plan.rowAxes;
  const outerShape = shape.filter((_, d) => !axes.includes(d));
  const rowShape = axes.map((a) => shape[a]);
  const rows = outerShape.reduce((p, d) => p * d, 1);
  const rowLength = rowShape.reduce((p, d) => p * d, 1);
  const perRow = (rowPhaseIterations(plan) + rowLength) * elementIterations(plan);
  const grid = gridStride(b, rows, opts, perRow, (i) => {
    const outer = b.unravel(i, outerShape);
    rowPhases(b, plan, outer);
    block(b, `for (var w = 0i; w < ${rowLength}i; w++) {`, () => {
      const full = mergeIndex(shape.length, axes, outer, b.unravel("w", rowShape));
      storeRoots(b, plan.roots, full, b.bind(b.flatten(full, shape)));
    });
  });
  return finishGridStride(b, plan, ctx, grid);
}

export function generateReduce(
  plan: KernelPlan,
  ctx: KernelContext,
  opts: CodegenOptions,
): GeneratedKernel {
  const b = builderFor(plan, ctx);
  const root = plan.roots[0];
  const anchor = plan.anchor!;
  const perOutput = rowPhaseIterations(plan) + reducedCount(anchor);
  const grid = gridStride(b, root.size, opts, perOutput, (i) => {
    // The root may differ from the anchor by size-1 axes: same flat index, own multi-index.
    const anchorIndex = b.unravel(i, anchor.shape);
    rowPhases(b, plan, anchorIndex);
    b.seed(anchor, anchorIndex, reduceLoop(b, anchor, anchorIndex));
    // Sibling reductions' roots (rule 11) may differ from each other by size-1 axes too.
    storeRoots(b, plan.roots, (r) => b.unravel(i, r.shape), i);
  });
  return finishGridStride(b, plan, ctx, grid);
}

/** A (batched) matmul's sizes: output M×N, contraction K, and the batch axes. */
export function matmulDims(mm: Node) {
  const r = mm.shape.length;
  const batchShape = mm.shape.slice(0, r - 2);
  return {
    M: mm.shape[r - 2],
    N: mm.shape[r - 1],
    K: mm.inputs[0].shape[r - 1],
    batchShape,
    batch: batchShape.reduce((p, d) => p * d, 1),
  };
}

/**
 * The buffer under `x` when `x` reads a contiguous block of that buffer in row-major order: the
 * buffer, reshapes of it, or a slice of a contiguous block (rows of a table) at element `offset`;
 * possibly under a last-two-axes transpose.
 */
export function bufferOperand(
  x: Node,
  ctx: KernelContext,
): { node: Node; transposed: boolean; offset: number } | undefined {
  const base = (n: Node): { node: Node; offset: number } | undefined => {
    if (ctx.buffers.has(n)) return { node: n, offset: 0 };
    if (n.op === "reshape") return base(n.inputs[0]);
    const start = n.op === "slice" ? contiguousSliceStart(n) : undefined;
    const inner = start === undefined ? undefined : base(n.inputs[0]);
    return inner && { node: inner.node, offset: inner.offset + start! };
  };
  const direct = base(x);
  if (direct) return { ...direct, transposed: false };
  const source = x.op === "transpose" && swapsLastTwo(x) ? base(x.inputs[0]) : undefined;
  return source ? { ...source, transposed: true } : undefined;
}

/** A matmul operand the vec4 kernel reads in place (see `inPlaceOperand`). */
export interface InPlaceOperand {
  node: Node;
  offset: number;
  /** Element strides of the operand's axes in its buffer. */
  strides: number[];
  /** Read along its columns (its rows axis contiguous): Xᵀ of TN, Wᵀ of NT. */
  transposed: boolean;
  /** A contiguous block in row-major order or its last-two-axes transpose (`bufferOperand`). */
  standard: boolean;
}

/**
 * The buffer a matmul operand reads in place: a contiguous block (or its transpose, see
 * `bufferOperand`), or with `strided` any strided view the vec4 kernel can load from.
 */
export function inPlaceOperand(
  x: Node,
  ctx: KernelContext,
  strided: boolean,
): InPlaceOperand | undefined {
  const view = stridedView(x, (n) => ctx.buffers.has(n));
  if (!view) return undefined;
  const standard = bufferOperand(x, ctx);
  if (standard) return { ...standard, strides: view.strides, standard: true };
  const direction = strided ? vec4Direction(x, view) : undefined;
  if (!direction) return undefined;
  return {
    node: view.source,
    offset: view.offset,
    strides: view.strides,
    transposed: direction === "columns",
    standard: false,
  };
}

export function generateMatmul(
  plan: KernelPlan,
  ctx: KernelContext,
  opts: CodegenOptions,
): GeneratedKernel {
  const b = builderFor(plan, ctx);
  const mm = plan.anchor!;
  const products = [mm, ...(plan.terms ?? [])];
  const { M, N, batchShape, batch } = matmulDims(mm);
  const TM = Math.min(opts.matmulTile.rows, M), TN = Math.min(opts.matmulTile.cols, N);
  const [wx, wy] = opts.matmulTile.workgroup;
  const t = storageType(mm.dtype);

  b.line(`let col0 = i32(gid.x) * ${TN}i;`);
  b.line(`let row0 = i32(gid.y) * ${TM}i;`);
  b.line(`if (col0 >= ${N}i || row0 >= ${M}i || i32(gid.z) >= ${batch}i) { return; }`);
  const bIndex = b.unravel("i32(gid.z)", batchShape);
  const rows = Array.from({ length: TM }, (_, i) => b.bind(`min(row0 + ${i}i, ${M - 1}i)`));
  const cols = Array.from({ length: TN }, (_, j) => b.bind(`min(col0 + ${j}i, ${N - 1}i)`));
  // Accumulators per product group: the anchor with the products summed into it, then each
  // co-product (`KernelPlan.coProducts`).
  const groups = [products, ...(plan.coProducts ?? []).map((co) => [co])];
  const tiles = groups.map((_, g) =>
    rows.map((_, i) => cols.map((_, j) => g === 0 ? `c${i}_${j}` : `co${g}_${i}_${j}`))
  );
  tiles.flat(2).forEach((c) => b.line(`var ${c}: ${t} = ${t === "f32" ? "0.0f" : "0i"};`));
  groups.forEach((group, g) => {
    for (const product of group) {
      const [a, bm] = product.inputs;
      block(b, `for (var k = 0i; k < ${matmulDims(product).K}i; k++) {`, () => {
        const av = rows.map((row) => b.valueAt(a, [...bIndex, row, "k"]));
        const bv = cols.map((col) => b.valueAt(bm, [...bIndex, "k", col]));
        tiles[g].forEach((row, i) =>
          row.forEach((c, j) =>
            b.line(
              t === "f32"
                ? `${c} = fma(${av[i]}, ${bv[j]}, ${c});`
                : `${c} = ${c} + ${av[i]} * ${bv[j]};`,
            )
          )
        );
      });
    }
  });
  storeTile(b, {
    mm,
    terms: plan.terms ?? [],
    coProducts: (plan.coProducts ?? []).map((co, c) => ({ mm: co, accumulators: tiles[c + 1] })),
    roots: plan.roots,
    batchIndex: bIndex,
    accumulators: tiles[0],
    width: 1,
    element: t,
    firstRow: "row0",
    col: (j) => `(col0 + ${j})`,
    consecutiveCols: true,
    rowEnd: M,
    colEnd: N,
    rowLoop: opts.matmulEpilogueRowLoop,
  });
  const logical: [number, number, number] = [
    Math.ceil(Math.ceil(N / TN) / wx),
    Math.ceil(Math.ceil(M / TM) / wy),
    batch,
  ];
  const grid = tileGrid(logical, [wx, wy, 1], opts, b.closeScope());
  const depths = groups.flat().reduce((n, p) => n + matmulDims(p).K, 0);
  const loops = depths + tileEpilogueIterations(TM, TN);
  return finish(b, plan, ctx, grid.body, grid.dispatch, [wx, wy, 1], loops);
}

/** Copies the scatter's operand into its output: the first half of a scatter split in two. */
function scatterCopy(plan: KernelPlan, ctx: KernelContext, opts: CodegenOptions): GeneratedKernel {
  const b = builderFor(plan, ctx);
  const root = plan.roots[0];
  const grid = gridStride(b, root.size, opts, 0, (i) => {
    b.store(0, i, b.storeValue(b.valueAt(root.inputs[0], b.unravel(i, root.shape)), root.dtype));
  });
  return { ...finishGridStride(b, plan, ctx, grid), part: "copy" };
}

/** Operands larger than this are copied by a kernel of their own, in parallel over all elements. */
const SCATTER_FUSED_COPY_MAX = 1 << 20;

/**
 * One or two kernels: when the operand is not updated in place and is large (or its rows would
 * push one invocation past the loop budget), a parallel copy kernel runs first and the scatter
 * kernel then adds into the copy.
 */
export function generateScatter(
  plan: KernelPlan,
  ctx: KernelContext,
  opts: CodegenOptions,
): GeneratedKernel[] {
  const b = builderFor(plan, ctx);
  const root = plan.roots[0];
  const [operand, indices, updates] = root.inputs;
  const axis = root.params.axis as number;
  const n = root.shape[axis];
  const outer = root.shape.slice(0, axis), inner = root.shape.slice(axis + 1);
  const columns = [...outer, ...inner].reduce((p, d) => p * d, 1);
  const count = indices.shape.reduce((p, d) => p * d, 1);
  // In place (the memory plan gave the result the operand's buffer): no copy, only the updates.
  const inPlace = ctx.buffers.has(operand) && ctx.slotOf(operand) === ctx.slotOf(root);
  const separateCopy = !inPlace &&
    (root.size > SCATTER_FUSED_COPY_MAX || n + count + 2 >= opts.maxLoopIterations);
  const fusedCopy = !inPlace && !separateCopy;
  const grid = gridStride(b, columns, opts, (fusedCopy ? n : 0) + count, (i) => {
    const pos = b.unravel(i, [...outer, ...inner]);
    const o = pos.slice(0, outer.length), q = pos.slice(outer.length);
    if (fusedCopy) {
      block(b, `for (var r = 0i; r < ${n}i; r++) {`, () => {
        const index = [...o, "r", ...q];
        b.store(
          0,
          b.flatten(index, root.shape),
          b.storeValue(b.valueAt(operand, index), root.dtype),
        );
      });
    }
    block(b, `for (var u = 0i; u < ${count}i; u++) {`, () => {
      const tIndex = b.unravel("u", indices.shape);
      const raw = b.valueAt(indices, tIndex);
      const row = b.bind(`clamp(select(${raw}, ${raw} + ${n}i, ${raw} < 0i), 0i, ${n - 1}i)`);
      const upd = b.valueAt(updates, [...o, ...tIndex, ...q]);
      const dst = b.bind(b.flatten([...o, row, ...q], root.shape));
      const current = b.outputValue(0, dst, root.size);
      b.store(0, dst, b.storeValue(`${current} + ${upd}`, root.dtype));
    });
  });
  const scatter = finishGridStride(b, plan, ctx, grid);
  return separateCopy ? [scatterCopy(plan, ctx, opts), scatter] : [scatter];
}
