/**
 * A Program: what a compiled function runs — kernel launches in order, and the buffer plan. Its
 * listing is what a user reads to understand what ran.
 */

import { formatAval, type Graph } from "../dsl/mod.ts";
import type { KernelKind } from "./fusion.ts";
import type { BufferSlot } from "./memory_plan.ts";

/** One kernel launch of a Program: its WGSL, bindings and dispatch size. */
export interface Kernel {
  /** Readable name: template, main op and output node id. */
  name: string;
  /** The template it was generated from. */
  kind: KernelKind;
  /** Primitives fused into this kernel, in order. */
  ops: string[];
  /** Number of storage buffers bound (the output included). */
  bindings: number;
  /**
   * Buffer slots bound, in binding order; the written ones last, except in a text several
   * epilogues share (epilogue_variants.ts), whose epilogues' bindings follow one another. -1: a
   * binding only another epilogue of that text reads, bound to a placeholder.
   */
  slots: number[];
  /** Buffer slots the kernel writes. */
  written: number[];
  /**
   * Byte range [offset, size] of each binding, where a buffer larger than the device's binding
   * limit is bound in windows (undefined: every binding is a whole buffer).
   */
  ranges?: ([number, number] | undefined)[];
  /** The compute shader source. */
  wgsl: string;
  /** Workgroups dispatched in x, y, z. */
  dispatch: [number, number, number];
  /** The shader's @workgroup_size. */
  workgroupSize: [number, number, number];
  /** Output aval, for the listing. */
  output: string;
  /** Most loop iterations one invocation runs (checked against the device's loop budget). */
  loopIterations: number;
  /**
   * Multiply-adds of the products the kernel computes (output elements × contraction), for
   * profiles; undefined where it computes none.
   */
  multiplyAdds?: number;
  /** Its divisors may be read from the shape buffer too (shape_params.ts `SMALL_KERNEL_ELEMENTS`). */
  liftDivisors?: boolean;
  /**
   * Set on a matmul past `liftMatmulLoopsUpTo` multiply-adds: it shares a text only with kernels of
   * the same key (its products' shapes and its grid), so its main loop's sizes stay literals; the
   * offsets that parts of one product or its split-K chunks differ in are still lifted
   * (shape_params.ts).
   */
  loopKey?: string;
  /**
   * Sizes the kernel reads from a uniform buffer bound after its storage buffers (binding
   * `bindings`), where it shares its text with kernels of other sizes (shape_params.ts).
   */
  params?: Int32Array<ArrayBuffer>;
}

/** A compiled function: its (optimised) graph, kernels in launch order, and buffer slots. */
export class Program {
  /** Assembles a Program; `lower` is the usual way to make one. */
  constructor(
    readonly graph: Graph,
    readonly kernels: readonly Kernel[],
    readonly slots: readonly BufferSlot[],
    /** Slot of each graph input, and of each graph output. */
    readonly inputSlots: readonly number[],
    readonly outputSlots: readonly number[],
    readonly peakBytes: number,
  ) {}

  /**
   * Compute pipelines the program needs: its distinct WGSL texts (kernels with the same text share
   * one pipeline, compiled once per device). This, not the kernel count, is what compile time
   * scales with.
   */
  get pipelineCount(): number {
    return new Set(this.kernels.map((k) => k.wgsl)).size;
  }

  /** One line per kernel: name, fused primitives, bindings, dispatch size. */
  toString(): string {
    const mib = (b: number) => `${(b / 1024).toFixed(1)} KiB`;
    const lines = [
      `Program: ${this.kernels.length} kernel(s) (${this.pipelineCount} pipeline(s)), ${this.slots.length} buffer(s), peak ${
        mib(this.peakBytes)
      }`,
    ];
    this.kernels.forEach((k, i) => {
      lines.push(
        `  #${i} ${k.name} -> ${k.output} [${k.ops.join(", ")}] bindings=${k.bindings} ` +
          `dispatch=(${k.dispatch.join(",")}) wg=(${k.workgroupSize.join(",")})`,
      );
    });
    lines.push(
      `  inputs: ${
        this.graph.inputs.map((n, i) => {
          const packed = this.slots[this.inputSlots[i]].packed;
          return `${formatAval(n)}${packed ? `:${packed}` : ""}@s${this.inputSlots[i]}`;
        }).join(" ")
      }`,
    );
    lines.push(
      `  outputs: ${
        this.graph.outputs.map((n, i) => `${formatAval(n)}@s${this.outputSlots[i]}`).join(" ")
      }`,
    );
    return lines.join("\n");
  }

  /** The listing followed by every kernel's WGSL. */
  dump(): string {
    return [
      this.toString(),
      ...this.kernels.map((k, i) => `\n// ---- #${i} ${k.name}\n${k.wgsl}`),
    ].join("\n");
  }
}
