/**
 * What one compiled training step needs on the device, read off its Program before it runs: the
 * bytes of the weights, of the adapter and optimizer state, of the batch, and of the activations
 * live at the peak, the largest single buffer, and the multiply-adds of its matmuls.
 */

import type { Program } from "../compiler/mod.ts";
import { DslError, formatAval } from "../dsl/mod.ts";
import { denoNamespace, permissionGranted } from "./host.ts";

/** A step's device memory and work (see `Trainer.plan`). */
export interface StepPlan {
  /** The model's weights (f32, or 2 bytes each where frozen weights are stored packed). */
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

/** Bytes the host can still give this process, or undefined without `--allow-sys`. */
export function availableHostBytes(): number | undefined {
  if (!permissionGranted({ name: "sys", kind: "systemMemoryInfo" })) return undefined;
  try {
    return denoNamespace()!.systemMemoryInfo().available;
  } catch {
    return undefined; // no such API: the check is skipped
  }
}

/**
 * Share of the host's available memory a CPU adapter's step may plan to take: the rest is left
 * for what the plan does not count (compiled pipelines, staging copies, the host's own arrays).
 */
export const HOST_MEMORY_SHARE = 0.8;

/**
 * Stops a step that cannot fit before it runs. On a CPU adapter (llvmpipe/lavapipe) device memory
 * is host memory: the weights and adapter state are already resident when the plan is made, so the
 * batch and the activations at the peak must fit in `HOST_MEMORY_SHARE` of what the host still
 * has. A GPU's memory size is not exposed by WebGPU; its per-buffer limits are checked at lowering.
 */
export function checkStepMemory(
  plan: StepPlan,
  opts: { cpuAdapter: boolean; availableBytes: number | undefined; op?: string },
): void {
  if (!opts.cpuAdapter || opts.availableBytes === undefined) return;
  const needed = plan.activationPeakBytes + plan.batchBytes;
  const budget = HOST_MEMORY_SHARE * opts.availableBytes;
  if (needed <= budget) return;
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
  throw new DslError(
    opts.op ?? "step",
    `the step needs ${gib(needed)} more memory at its peak (activations ${
      gib(plan.activationPeakBytes)
    }, batch ${gib(plan.batchBytes)}; largest buffer ${plan.largestBuffer.what}, ${
      gib(plan.largestBuffer.bytes)
    }) but this CPU adapter's host has ${gib(opts.availableBytes)} available (the step may ` +
      `plan ${HOST_MEMORY_SHARE * 100}% of it, ${gib(budget)}). Reduce the activations: ` +
      `recompute them per decoder block (--checkpoint-activations, ForwardOptions.checkpointBlocks), ` +
      `or lower the sequences per device (--batch), the tokens per sequence (--max-len) or the ` +
      `devices K (--devices).`,
  );
}
