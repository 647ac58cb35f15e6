/**
 * Shape classes of matmuls, what the autotuner (runtime/autotune.ts) chooses a kernel for: the
 * layout its operands are read in (NN, NT: x·Wᵀ, TN: Xᵀ·Y), each size rounded up to a power of
 * two, and whether it is batched. A choice is a few code-generator tunables, applied to the
 * products of its class only (`CodegenOptions.matmulTuned`).
 */

import type { Graph, Node } from "../../dsl/mod.ts";
import { type CodegenOptions, matmulDims } from "./kernels.ts";
import { swapsLastTwo } from "../views.ts";

/** The tunables a tuned choice may set for the products of one class. */
export type MatmulChoice = Partial<
  Pick<
    CodegenOptions,
    "matmulTilings" | "matmulNtTile" | "matmulRowBlock" | "matmulColumnGroups" | "matmulMaxUnroll"
  >
>;

/** How a product's operands are laid out. */
export type MatmulLayout = "nn" | "nt" | "tn";

/** One product of a class, at its own sizes: what the tuner times. */
export interface MatmulProblem {
  /** Its shape class (`matmulClass`). */
  cls: string;
  /** How its operands are laid out. */
  layout: MatmulLayout;
  /** Products in the batch (1: not batched). */
  batch: number;
  /** Output rows. */
  M: number;
  /** Output columns. */
  N: number;
  /** Contraction length. */
  K: number;
}

/** The layout `mm`'s operands are read in. */
export function matmulLayout(mm: Node): MatmulLayout {
  if (swapsLastTwo(mm.inputs[1])) return "nt";
  if (swapsLastTwo(mm.inputs[0])) return "tn";
  return "nn";
}

/** The next power of two at or above `d` (at least 4). */
const bucket = (d: number) => Math.max(4, 2 ** Math.ceil(Math.log2(Math.max(1, d))));

/** `mm`'s shape class, e.g. "nt 1024x256x256" or "nn 64x64x64 batched". */
export function matmulClass(mm: Node): string {
  const { M, N, K, batch } = matmulDims(mm);
  return `${matmulLayout(mm)} ${bucket(M)}x${bucket(N)}x${bucket(K)}${batch > 1 ? " batched" : ""}`;
}

/** One product per shape class of `graph`'s f32 matmuls (the first of each, in graph order). */
export function matmulProblems(graph: Graph): MatmulProblem[] {
  const seen = new Map<string, MatmulProblem>();
  for (const n of graph.nodes) {
    if (n.op !== "matmul" || n.dtype !== "f32" || n.shape.length < 2) continue;
    const cls = matmulClass(n);
    if (seen.has(cls)) continue;
    const { M, N, K, batch } = matmulDims(n);
    seen.set(cls, { cls, layout: matmulLayout(n), batch, M, N, K });
  }
  return [...seen.values()];
}

/** `opts` with the tuned choice for `mm`'s class applied, where one was made. */
export function tunedOptions(mm: Node, opts: CodegenOptions): CodegenOptions {
  const choice = opts.matmulTuned?.get(matmulClass(mm));
  return choice ? { ...opts, ...choice } : opts;
}
