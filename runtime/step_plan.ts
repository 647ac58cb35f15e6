/**
 * What one compiled training step needs on the device, read off its Program before it runs: the
 * bytes of the weights, of the adapter and optimizer state, of the batch, and of the activations
 * live at the peak, the largest single buffer, and the multiply-adds of its matmuls.
 */

import type { Program } from "../compiler/mod.ts";
import { formatAval } from "../dsl/mod.ts";

/** A step's device memory and work (see `Trainer.plan`). */
export interface StepPlan {
  /** The model's weights (f32 on the device). */
  parameterBytes: number;
  /** Adapter slices or factors and the optimizer's moments. */
  adapterStateBytes: number;
  /** The batch and the learning rate. */
  batchBytes: number;
  /** Intermediates and outputs live at once at the step's peak. */
  activationPeakBytes: number;
  /** Everything at the peak: inputs, constants, live intermediates and outputs. */
  totalBytes: number;
  /** The largest buffer the step binds, and what it holds. */
  largestBuffer: { bytes: number; what: string };
  /** 2·M·N·K summed over the step's matmuls. */
  matmulFlops: number;
  /** Kernels the step dispatches. */
  kernels: number;
  /** Distinct compute pipelines among them (what compilation scales with). */
  pipelines: number;
}

/**
 * The plan of `program`, whose inputs are, in order, `groups[0]` weight leaves, `groups[1]`
 * adapter/optimizer-state leaves, then the batch's.
 */
export function planOf(program: Program, groups: [number, number]): StepPlan {
  const inputBytes = program.inputSlots.map((s) => program.slots[s].bytes);
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const parameterBytes = sum(inputBytes.slice(0, groups[0]));
  const adapterStateBytes = sum(inputBytes.slice(groups[0], groups[0] + groups[1]));
  const batchBytes = sum(inputBytes.slice(groups[0] + groups[1]));
  const standing = sum(
    program.slots.filter((s) => s.kind === "input" || s.kind === "constant").map((s) => s.bytes),
  );
  let matmulFlops = 0;
  for (const n of program.graph.nodes) {
    if (n.op !== "matmul") continue;
    const a = n.inputs[0];
    matmulFlops += 2 * n.size * a.shape[a.shape.length - 1];
  }
  const largest = program.slots.reduce((a, b) => (b.bytes > a.bytes ? b : a));
  const owner = program.graph.inputs.find((_, i) => program.inputSlots[i] === largest.id) ??
    program.graph.nodes.find((n) => n.size * 4 === largest.bytes && n.op !== "input");
  return {
    parameterBytes,
    adapterStateBytes,
    batchBytes,
    activationPeakBytes: program.peakBytes - standing,
    totalBytes: program.peakBytes,
    largestBuffer: {
      bytes: largest.bytes,
      what: owner ? `${owner.op === "input" ? "input" : owner.op} ${formatAval(owner)}` : "?",
    },
    matmulFlops,
    kernels: program.kernels.length,
    pipelines: program.pipelineCount,
  };
}
