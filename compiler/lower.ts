/** Lowering: Graph → Program (optimise, fuse, plan memory, generate WGSL per kernel). */

import type { Graph, Node } from "../dsl/mod.ts";
import {
  type CodegenOptions,
  generateElementwise,
  generateMatmul,
  generateReduce,
  generateRowwise,
  generateScatter,
  type KernelContext,
} from "./codegen/kernels.ts";
import { type KernelPlan, planFusion } from "./fusion.ts";
import { planMemory } from "./memory_plan.ts";
import { optimize } from "./passes/mod.ts";
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
}

/** The codegen settings `lower` uses where `LowerOptions` does not override them. */
export const DEFAULT_CODEGEN: CodegenOptions = {
  maxWorkgroups: 65535,
  matmulTile: { rows: 4, cols: 4, workgroup: [8, 8] },
  vectorizedMatmul: true,
  matmulRowBlock: 32,
  matmulColumnGroups: 8,
  matmulWorkgroup: [8, 1],
};

function kernelName(plan: KernelPlan): string {
  const ops = plan.fused.map((n) => n.op);
  const main = plan.anchor?.op ?? ops.filter((o) => !VIEWS.has(o)).at(-1) ?? ops.at(-1) ?? "copy";
  return `${plan.kind}_${main}_${plan.roots[0].id}`;
}

const VIEWS = new Set(["reshape", "broadcast", "transpose", "slice", "pad", "concat"]);

/** Compiles a graph to a Program: optimise, fuse into kernels, plan buffers, generate WGSL. */
export function lower(graph: Graph, opts: LowerOptions): Program {
  const g = opts.optimize === false ? graph : optimize(graph);
  const plans = planFusion(g, { maxStorageBuffers: opts.maxStorageBuffers, fuse: opts.fuse });
  const memory = planMemory(g, plans, { donate: opts.donate, reuse: opts.fuse !== false });
  const buffers = new Set<Node>(memory.slotOf.keys());
  const codegen: CodegenOptions = { ...DEFAULT_CODEGEN, ...opts };
  const ctx: KernelContext = {
    buffers,
    slotOf: (n) => {
      const s = memory.slotOf.get(n);
      if (s === undefined) throw new Error(`lower: ${n.op} has no buffer slot`);
      return s;
    },
    slotDtype: (s) => memory.slots[s].element,
  };
  const generators = {
    elementwise: generateElementwise,
    rowwise: generateRowwise,
    reduce: generateReduce,
    matmul: generateMatmul,
    scatter: generateScatter,
  };
  const kernels: Kernel[] = plans.filter((p) => p.roots[0].size > 0).map((plan) => {
    const gen = generators[plan.kind](plan, ctx, codegen);
    return {
      name: kernelName(plan),
      kind: plan.kind,
      ops: plan.fused.map((n) => n.op),
      bindings: gen.slots.length,
      slots: gen.slots,
      wgsl: gen.wgsl,
      dispatch: gen.dispatch,
      workgroupSize: gen.workgroupSize,
      output: plan.roots.map((r) => `${r.dtype}[${r.shape.join(",")}]`).join(" "),
    };
  });
  for (const k of kernels) {
    if (k.bindings > opts.maxStorageBuffers) {
      throw new Error(
        `lower: kernel ${k.name} binds ${k.bindings} buffers (limit ${opts.maxStorageBuffers})`,
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
