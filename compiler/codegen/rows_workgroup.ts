/**
 * Row reductions for GPUs: one workgroup per row. The generic row-wise and reduction kernels give
 * each row to one invocation, which loops over it: right for a CPU adapter (an invocation is a SIMD
 * lane; a row per lane keeps lanes independent), but on a GPU a few thousand rows fill a few
 * thousand threads, and a warp's loads land in as many rows (uncoalesced). Here a workgroup owns a
 * row: its invocations read consecutive elements, each phase's partial results meet in workgroup
 * memory (a tree of halvings), and every invocation then reads the row's value, so a softmax or
 * norm stores its row cooperatively and a reduction's first invocation stores the result. The
 * summation order differs from the serial loop's (as on any GPU reduction).
 *
 * Taken where the reduced axes are the innermost (contiguous) ones and every reduction is a sum or
 * a max; column sums (a bias gradient over tokens) keep one invocation per output, whose loads are
 * coalesced across outputs already.
 */

import type { Node } from "../../dsl/mod.ts";
import { WGSL_HELPERS, wgslLiteral } from "../../dsl/primitives/wgsl.ts";
import { type KernelPlan, reducedAxes } from "../fusion.ts";
import { type KernelBuilder, storageType } from "./builder.ts";
import {
  block,
  builderFor,
  type CodegenOptions,
  elementIterations,
  finish,
  FLAT_WORKGROUP,
  type GeneratedKernel,
  type KernelContext,
  mergeIndex,
  spreadWorkgroups,
  storeRoots,
} from "./kernels.ts";

/** Rows shorter than this keep one invocation per row (a workgroup would mostly idle). */
export const MIN_WORKGROUP_ROW = 32;

const product = (shape: readonly number[]) => shape.reduce((p, d) => p * d, 1);

/**
 * The kernel of a row-wise or reduction plan with one workgroup per row (`rowWorkgroup`
 * invocations at most), or undefined where the generic kernel applies (see the module comment).
 */
export function workgroupRows(
  plan: KernelPlan,
  ctx: KernelContext,
  opts: CodegenOptions,
): GeneratedKernel | undefined {
  if (!(opts.rowWorkgroup > 0) || (plan.kind !== "rowwise" && plan.kind !== "reduce")) {
    return undefined;
  }
  const reduce = plan.kind === "reduce";
  const anchor = plan.anchor;
  const reductions = [...plan.rowReductions, ...(reduce ? [anchor!] : [])];
  if (reductions.some((r) => r.op !== "sum" && r.op !== "max")) return undefined;
  // The space the rows live in: the reduction's input, or the row-wise kernel's output.
  const space = reduce ? anchor!.inputs[0].shape : plan.roots[0].shape;
  const axes = reduce ? reducedAxes(anchor!) : plan.rowAxes;
  const trailing = axes.every((a, i) => a === space.length - axes.length + i);
  const rowShape = axes.map((a) => space[a]);
  const rowLength = product(rowShape);
  if (!trailing || axes.length === 0 || rowLength < MIN_WORKGROUP_ROW) return undefined;
  // Every phase reduces this same row (a log-sum-exp's maximum, then its sum).
  const sameRow = (r: Node) =>
    reducedAxes(r).join() === axes.join() && r.inputs[0].shape.join() === space.join();
  if (!reductions.every(sameRow)) return undefined;
  const outerShape = reduce ? anchor!.shape : space.filter((_, d) => !axes.includes(d));
  const rows = product(outerShape);
  const maxDim = opts.maxWorkgroupsPerDimension;
  if (rows > maxDim ** 3) return undefined;
  const size = Math.min(opts.rowWorkgroup, 2 ** Math.floor(Math.log2(rowLength)));
  const steps = Math.log2(size);
  const perElement = elementIterations(plan);
  const loops = reductions.reduce(
    (n, r) => n + Math.ceil(product(rowOf(r)) / size) * perElement + steps,
    0,
  ) + (reduce ? 0 : Math.ceil(rowLength / size) * perElement);
  if (loops >= opts.maxLoopIterations) return undefined;

  const b = builderFor(plan, ctx);
  const dispatch = spreadWorkgroups(rows, maxDim);
  const spread = dispatch[1] > 1 || dispatch[2] > 1;
  // The row comes from uniform builtins only: the barriers below stay in uniform control flow.
  b.line(`let row = i32(${spread ? FLAT_WORKGROUP : "wid.x"});`);
  if (spread) b.line(`if (row >= ${rows}i) { return; }`);
  b.line("let lane = i32(lid.x);");
  const outer = b.unravel("row", outerShape);
  const types = new Set(reductions.map((r) => storageType(r.inputs[0].dtype)));
  types.forEach((t) => b.moduleDecls.push(`var<workgroup> row_part_${t}: array<${t}, ${size}>;`));
  for (const red of reductions) {
    b.seed(red, outer, reduceRow(b, red, outer, size, opts.subgroupReductions));
  }
  if (reduce) {
    block(
      b,
      "if (lane == 0i) {",
      () => storeRoots(b, plan.roots, (r) => b.unravel("row", r.shape), "row"),
    );
  } else {
    const shape = plan.roots[0].shape;
    block(b, `for (var w = lane; w < ${rowLength}i; w += ${size}i) {`, () => {
      const full = mergeIndex(shape.length, axes, outer, b.unravel("w", rowShape));
      storeRoots(b, plan.roots, full, b.bind(b.flatten(full, shape)));
    });
  }
  return finish(b, plan, ctx, b.closeScope(), dispatch, [size, 1, 1], loops);
}

/** The shape of the row a reduction reduces. */
function rowOf(red: Node): number[] {
  return reducedAxes(red).map((a) => red.inputs[0].shape[a]);
}

/**
 * Reduces `red` over the workgroup's row at `outer`: each invocation strides over the row, then
 * the partial results halve in workgroup memory, or with `subgroups` each subgroup's combine in
 * registers first (`subgroupPartials`). Returns the name every invocation holds it in.
 */
function reduceRow(
  b: KernelBuilder,
  red: Node,
  outer: readonly string[],
  size: number,
  subgroups: boolean,
): string {
  const input = red.inputs[0];
  const axes = reducedAxes(red);
  const rowShape = rowOf(red);
  const t = storageType(input.dtype);
  const part = `row_part_${t}`;
  const sum = red.op === "sum";
  if (!sum && t === "f32") b.helpers.set("max_nan", WGSL_HELPERS.max_nan);
  const combine = (x: string, y: string) =>
    sum ? `${x} + ${y}` : t === "f32" ? `max_nan(${x}, ${y})` : `max(${x}, ${y})`;
  const lowest = t === "f32" ? wgslLiteral(-Infinity, "f32") : "i32(-2147483647 - 1)";
  const acc = b.fresh("acc");
  b.line(`var ${acc}: ${t} = ${sum ? (t === "f32" ? "0.0f" : "0i") : lowest};`);
  const r = b.fresh("r");
  block(b, `for (var ${r} = lane; ${r} < ${product(rowShape)}i; ${r} += ${size}i) {`, () => {
    const full = mergeIndex(input.shape.length, axes, outer, b.unravel(r, rowShape));
    b.line(`${acc} = ${combine(acc, b.valueAt(input, full))};`);
  });
  if (subgroups) return subgroupPartials(b, acc, t, sum, size, combine);
  b.line(`${part}[lane] = ${acc};`);
  b.line("workgroupBarrier();");
  block(b, `for (var s = ${size / 2}i; s > 0i; s = s >> 1u) {`, () => {
    block(b, "if (lane < s) {", () => {
      b.line(`${part}[lane] = ${combine(`${part}[lane]`, `${part}[lane + s]`)};`);
    });
    b.line("workgroupBarrier();");
  });
  const value = b.fresh("row_value");
  b.line(`let ${value} = ${part}[0];`);
  // The next phase writes the array again once every invocation has read it.
  b.line("workgroupBarrier();");
  return value;
}

/**
 * The subgroup form of a row reduction's last phase: each subgroup combines its invocations'
 * partials `acc` (`subgroupAdd`, or `subgroupMax` made NaN-propagating like `max_nan`), its first
 * invocation stores the result at the subgroup's index, and every invocation combines those few in
 * order. Invocations are taken to form subgroups in consecutive runs of local index, as GPUs number
 * them (a warp is 32 consecutive threads).
 */
function subgroupPartials(
  b: KernelBuilder,
  acc: string,
  t: string,
  sum: boolean,
  size: number,
  combine: (x: string, y: string) => string,
): string {
  const part = `row_part_${t}`;
  const total = b.fresh("sg_total");
  if (sum) b.line(`let ${total} = subgroupAdd(${acc});`);
  else if (t === "f32") {
    // subgroupMax leaves NaN to the implementation; a NaN anywhere in the row makes the max NaN
    // (tested by bits, as max_nan does: a compiler may fold x != x away).
    b.line(
      `let ${total} = select(subgroupMax(${acc}), f32_bits(0x7fc00000u), ` +
        `subgroupAny(is_nan(${acc})));`,
    );
  } else b.line(`let ${total} = subgroupMax(${acc});`);
  b.line(`if (sg_lane == 0u) { ${part}[lane / i32(sg_size)] = ${total}; }`);
  b.line("workgroupBarrier();");
  const value = b.fresh("row_value"), k = b.fresh("k");
  b.line(`var ${value}: ${t} = ${part}[0];`);
  block(b, `for (var ${k} = 1i; ${k} < ${size}i / i32(sg_size); ${k}++) {`, () => {
    b.line(`${value} = ${combine(value, `${part}[${k}]`)};`);
  });
  // The next phase writes the array again once every invocation has read it.
  b.line("workgroupBarrier();");
  return value;
}
