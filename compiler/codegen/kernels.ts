/**
 * Kernel templates: the loop structure around a fused expression. An elementwise kernel is a
 * grid-stride loop over the output; a reduction kernel gives each invocation one output and loops
 * over the reduced axes; a matmul kernel gives each invocation a TM×TN register tile; a scatter
 * kernel gives each invocation one column of the operand (so duplicate indices never race and the
 * accumulation order matches the CPU reference).
 */

import type { Node } from "../../dsl/mod.ts";
import { WGSL_HELPERS } from "../../dsl/primitives/wgsl.ts";
import type { KernelPlan } from "../fusion.ts";
import { KernelBuilder, storageType } from "./builder.ts";

export interface GeneratedKernel {
  wgsl: string;
  /** Slots bound, in binding order; the last one is the output (read_write). */
  slots: number[];
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
}

export interface CodegenOptions {
  /** Cap on workgroups of grid-stride kernels (llvmpipe pays ≈1 µs per workgroup). */
  maxWorkgroups: number;
  /** Register tile of matmul kernels. */
  matmulTile: { rows: number; cols: number; workgroup: [number, number] };
}

const WORKGROUP = 64;

function header(b: KernelBuilder, root: Node, slotDtypes: Map<number, string>): string {
  const lines: string[] = [];
  const names = new Set<string>();
  const addHelper = (name: string) => {
    if (names.has(name)) return;
    if (name !== "is_nan" && b.helpers.get(name)?.includes("is_nan(")) addHelper("is_nan");
    names.add(name);
    lines.push(b.helpers.get(name) ?? WGSL_HELPERS[name as keyof typeof WGSL_HELPERS]);
  };
  [...b.helpers.keys()].forEach(addHelper);
  for (const [slot, binding] of b.bindingOfSlot) {
    lines.push(
      `@group(0) @binding(${binding}) var<storage, read> b${binding}: array<${
        slotDtypes.get(slot)
      }>;`,
    );
  }
  lines.push(
    `@group(0) @binding(${b.bindingOfSlot.size}) var<storage, read_write> out: array<${
      storageType(root.dtype)
    }>;`,
  );
  return lines.join("\n");
}

function slotsOf(b: KernelBuilder): number[] {
  return [...b.bindingOfSlot.keys(), b.outputSlot];
}

function indent(lines: string[], depth: number): string {
  return lines.map((l) => "  ".repeat(depth) + l).join("\n");
}

export interface KernelContext {
  buffers: ReadonlySet<Node>;
  slotOf: (n: Node) => number;
  slotDtype: (slot: number) => string;
}

function finish(
  b: KernelBuilder,
  plan: KernelPlan,
  ctx: KernelContext,
  body: string,
  dispatch: [number, number, number],
  workgroupSize: [number, number, number],
): GeneratedKernel {
  const slotDtypes = new Map([...b.bindingOfSlot.keys()].map((s) => [s, ctx.slotDtype(s)]));
  const wgsl = `${header(b, plan.root, slotDtypes)}
@compute @workgroup_size(${workgroupSize.join(", ")})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
${body}
}
`;
  return { wgsl, slots: slotsOf(b), dispatch, workgroupSize };
}

/** Grid-stride loop over `count` items; `emit(b, i)` writes the loop body for item `i`. */
function gridStride(
  b: KernelBuilder,
  count: number,
  opts: CodegenOptions,
  emit: (i: string) => void,
): { body: string; dispatch: [number, number, number] } {
  const groups = Math.max(1, Math.min(Math.ceil(count / WORKGROUP), opts.maxWorkgroups));
  b.openScope();
  emit("i");
  const inner = b.closeScope();
  const body = `  let stride = i32(nwg.x) * ${WORKGROUP}i;
  for (var i = i32(gid.x); i < ${count}i; i += stride) {
${indent(inner, 2)}
  }`;
  return { body, dispatch: [groups, 1, 1] };
}

export function generateElementwise(
  plan: KernelPlan,
  ctx: KernelContext,
  opts: CodegenOptions,
): GeneratedKernel {
  const b = new KernelBuilder(ctx.buffers, ctx.slotOf, plan.root);
  const root = plan.root;
  const { body, dispatch } = gridStride(b, root.size, opts, (i) => {
    const index = b.unravel(i, root.shape);
    const v = b.valueAt(root, index);
    b.line(`out[${i}] = ${b.storeValue(v, root.dtype)};`);
  });
  return finish(b, plan, ctx, body, dispatch, [WORKGROUP, 1, 1]);
}

export function generateReduce(
  plan: KernelPlan,
  ctx: KernelContext,
  opts: CodegenOptions,
): GeneratedKernel {
  const b = new KernelBuilder(ctx.buffers, ctx.slotOf, plan.root);
  const root = plan.root;
  const anchor = plan.anchor!;
  const input = anchor.inputs[0];
  const reduction = anchor.op as "sum" | "max" | "argmax";
  const axes: number[] = reduction === "argmax"
    ? [anchor.params.axis as number]
    : [...(anchor.params.axes as number[])];
  const reducedShape = axes.map((a) => input.shape[a]);
  const count = reducedShape.reduce((p, d) => p * d, 1);
  const t = storageType(input.dtype);
  const { body, dispatch } = gridStride(b, root.size, opts, (i) => {
    const outIndex = b.unravel(i, root.shape);
    const acc = b.fresh("acc");
    const best = b.fresh("arg");
    const lowest = input.dtype === "f32" ? "bitcast<f32>(0xff800000u)" : "i32(-2147483647 - 1)";
    if (reduction === "sum") b.line(`var ${acc}: ${t} = ${t === "f32" ? "0.0f" : "0i"};`);
    else b.line(`var ${acc}: ${t} = ${lowest};`);
    if (reduction === "argmax") b.line(`var ${best}: i32 = 0i;`);
    b.line(`for (var r = 0i; r < ${count}i; r++) {`);
    b.openScope();
    const red = b.unravel("r", reducedShape);
    const full: string[] = [];
    let o = 0, k = 0;
    for (let d = 0; d < input.shape.length; d++) {
      full.push(axes.includes(d) ? red[k++] : outIndex[o++]);
    }
    const v = b.valueAt(input, full);
    if (reduction === "sum") b.line(`${acc} = ${acc} + ${v};`);
    else if (reduction === "max") {
      if (t === "f32") {
        b.helpers.set("max_nan", WGSL_HELPERS.max_nan);
        b.line(`${acc} = max_nan(${acc}, ${v});`);
      } else b.line(`${acc} = max(${acc}, ${v});`);
    } else {
      // First maximum wins; a NaN counts as the maximum (numpy), as in the CPU reference.
      const better = t === "f32"
        ? `r == 0i || (!is_nan(${acc}) && (${v} > ${acc} || is_nan(${v})))`
        : `r == 0i || ${v} > ${acc}`;
      if (t === "f32") b.helpers.set("is_nan", WGSL_HELPERS.is_nan);
      b.line(`if (${better}) { ${acc} = ${v}; ${best} = r; }`);
    }
    const loop = b.closeScope();
    loop.forEach((l) => b.line("  " + l));
    b.line("}");
    b.seed(anchor, outIndex, reduction === "argmax" ? best : acc);
    const value = b.valueAt(root, outIndex);
    b.line(`out[${i}] = ${b.storeValue(value, root.dtype)};`);
  });
  return finish(b, plan, ctx, body, dispatch, [WORKGROUP, 1, 1]);
}

export function generateMatmul(
  plan: KernelPlan,
  ctx: KernelContext,
  opts: CodegenOptions,
): GeneratedKernel {
  const b = new KernelBuilder(ctx.buffers, ctx.slotOf, plan.root);
  const root = plan.root;
  const mm = plan.anchor!;
  const [a, bm] = mm.inputs;
  const r = mm.shape.length;
  const [M, N, K] = [mm.shape[r - 2], mm.shape[r - 1], a.shape[r - 1]];
  const batchShape = mm.shape.slice(0, r - 2);
  const batch = batchShape.reduce((p, d) => p * d, 1);
  const TM = Math.min(opts.matmulTile.rows, M), TN = Math.min(opts.matmulTile.cols, N);
  const [wx, wy] = opts.matmulTile.workgroup;
  const t = storageType(mm.dtype);
  const zero = t === "f32" ? "0.0f" : "0i";

  b.line(`let col0 = i32(gid.x) * ${TN}i;`);
  b.line(`let row0 = i32(gid.y) * ${TM}i;`);
  b.line(`if (col0 >= ${N}i || row0 >= ${M}i || i32(gid.z) >= ${batch}i) { return; }`);
  const bIndex = b.unravel("i32(gid.z)", batchShape);
  const rows = Array.from({ length: TM }, (_, i) => b.bind(`min(row0 + ${i}i, ${M - 1}i)`));
  const cols = Array.from({ length: TN }, (_, j) => b.bind(`min(col0 + ${j}i, ${N - 1}i)`));
  const accs = rows.map((_, i) => cols.map((_, j) => `c${i}_${j}`));
  accs.flat().forEach((c) => b.line(`var ${c}: ${t} = ${zero};`));
  b.line(`for (var k = 0i; k < ${K}i; k++) {`);
  b.openScope();
  const av = rows.map((row) => b.valueAt(a, [...bIndex, row, "k"]));
  const bv = cols.map((col) => b.valueAt(bm, [...bIndex, "k", col]));
  accs.forEach((row, i) =>
    row.forEach((c, j) =>
      b.line(
        t === "f32"
          ? `${c} = fma(${av[i]}, ${bv[j]}, ${c});`
          : `${c} = ${c} + ${av[i]} * ${bv[j]};`,
      )
    )
  );
  b.closeScope().forEach((l) => b.line("  " + l));
  b.line("}");
  accs.forEach((row, i) =>
    row.forEach((c, j) => {
      b.line(`if (row0 + ${i}i < ${M}i && col0 + ${j}i < ${N}i) {`);
      b.openScope();
      const index = [...bIndex, `(row0 + ${i}i)`, `(col0 + ${j}i)`];
      b.seed(mm, index, c);
      const v = b.valueAt(root, index);
      b.line(`out[${b.flatten(index, root.shape)}] = ${b.storeValue(v, root.dtype)};`);
      b.closeScope().forEach((l) => b.line("  " + l));
      b.line("}");
    })
  );
  const body = b.closeScope().map((l) => "  " + l).join("\n");
  b.openScope();
  const dispatch: [number, number, number] = [
    Math.ceil(Math.ceil(N / TN) / wx),
    Math.ceil(Math.ceil(M / TM) / wy),
    batch,
  ];
  return finish(b, plan, ctx, body, dispatch, [wx, wy, 1]);
}

export function generateScatter(
  plan: KernelPlan,
  ctx: KernelContext,
  opts: CodegenOptions,
): GeneratedKernel {
  const b = new KernelBuilder(ctx.buffers, ctx.slotOf, plan.root);
  const root = plan.root;
  const [operand, indices, updates] = root.inputs;
  const axis = root.params.axis as number;
  const n = root.shape[axis];
  const outer = root.shape.slice(0, axis), inner = root.shape.slice(axis + 1);
  const columns = [...outer, ...inner].reduce((p, d) => p * d, 1);
  const count = indices.shape.reduce((p, d) => p * d, 1);
  const { body, dispatch } = gridStride(b, columns, opts, (i) => {
    const pos = b.unravel(i, [...outer, ...inner]);
    const o = pos.slice(0, outer.length), q = pos.slice(outer.length);
    b.line(`for (var r = 0i; r < ${n}i; r++) {`);
    b.openScope();
    const index = [...o, "r", ...q];
    const v = b.valueAt(operand, index);
    b.line(`out[${b.flatten(index, root.shape)}] = ${v};`);
    b.closeScope().forEach((l) => b.line("  " + l));
    b.line("}");
    b.line(`for (var u = 0i; u < ${count}i; u++) {`);
    b.openScope();
    const tIndex = b.unravel("u", indices.shape);
    const raw = b.valueAt(indices, tIndex);
    const row = b.bind(`clamp(select(${raw}, ${raw} + ${n}i, ${raw} < 0i), 0i, ${n - 1}i)`);
    const upd = b.valueAt(updates, [...o, ...tIndex, ...q]);
    const dst = b.bind(b.flatten([...o, row, ...q], root.shape));
    b.line(`out[${dst}] = out[${dst}] + ${upd};`);
    b.closeScope().forEach((l) => b.line("  " + l));
    b.line("}");
  });
  return finish(b, plan, ctx, body, dispatch, [WORKGROUP, 1, 1]);
}
