/**
 * The primitive record: everything about one primitive lives in one object — its shape/dtype rule,
 * its VJP, its CPU reference evaluation (and, from the compiler issue on, its WGSL emitter).
 * Transformations (autodiff, the interpreter, the compiler) are loops over graphs that look these
 * records up by name.
 */

import type { DType, Precision } from "./dtype.ts";
import { DslError } from "./errors.ts";
import { type AbstractValue, formatAval, type Params } from "./graph.ts";
import type { HostArray } from "./host_array.ts";
import type { Tensor } from "./trace.ts";

/** What a primitive's VJP rule receives besides the output cotangent. */
export interface VjpArgs<P> {
  /** The primal inputs, as traced tensors. */
  inputs: readonly Tensor[];
  /** The primal output, as a traced tensor. */
  output: Tensor;
  /** The node's static parameters. */
  params: P;
  /** Which inputs need a cotangent; rules may return null for the others. */
  needs: readonly boolean[];
}

/** Settings of a CPU reference evaluation. */
export interface EvalContext {
  /** Float precision the reference computes in (f64 for gradient checks). */
  precision: Precision;
}

/** The record of one primitive: its shape rule, VJP, CPU reference and WGSL lowering. */
// deno-lint-ignore no-explicit-any
export interface Primitive<P = any> {
  /** The op name that graph nodes refer to. */
  readonly name: string;
  /** Shape and dtype of the output; throws a DslError (see `fail`) on bad input. */
  abstractEval(inputs: readonly AbstractValue[], params: P): AbstractValue;
  /**
   * Cotangents of the inputs given the output cotangent `g`, built from traced ops (so they are
   * themselves differentiable). Absent for primitives whose outputs are not differentiable.
   */
  vjp?(g: Tensor, args: VjpArgs<P>): (Tensor | null)[];
  /** CPU reference: the oracle for every backend. Inputs already have the rule's shapes/dtypes. */
  evaluate(inputs: readonly HostArray[], params: P, ctx: EvalContext): HostArray;
  /** How the WebGPU compiler lowers it (see `WgslRule`). */
  wgsl: WgslRule<P>;
}

/**
 * The WGSL side of a primitive. `inline` primitives (elementwise math, views, gather, iota) are
 * expressions the compiler inlines into whatever kernel reads them; the others anchor a kernel
 * template of the compiler (a reduction loop, a tiled matmul, a scatter).
 */
export type WgslRule<P> =
  | {
    kind: "inline";
    /** WGSL expression of the output at `ctx.index`, reading operands through `ctx.read`. */
    emit(ctx: WgslEmitContext<P>): string;
    /** WGSL helper functions the expression calls, by name. */
    helpers?: Readonly<Record<string, string>>;
    /** Output element i reads only input elements i (all operands share the output's shape). */
    elementwise?: boolean;
  }
  | { kind: "reduce"; reduction: "sum" | "max" | "argmax" }
  | { kind: "matmul" }
  | { kind: "scatter" }
  | { kind: "constant" };

/** What an inline WGSL rule's `emit` gets to build its expression. */
export interface WgslEmitContext<P> {
  /** The output multi-index, one i32 WGSL expression per axis. */
  index: readonly string[];
  /** The node's static parameters. */
  params: P;
  /** Shapes and dtypes of the operands. */
  inputs: readonly AbstractValue[];
  /** Shape and dtype of the output. */
  output: AbstractValue;
  /** Operand `k`'s value at a multi-index (WGSL type f32, i32 or bool per its dtype). */
  read(k: number, index: readonly string[]): string;
  /** Binds `expr` to a fresh `let` and returns its name. */
  bind(expr: string): string;
  /** Row-major flat offset of an index in `shape` (i32 expression). */
  flatten(index: readonly string[], shape: readonly number[]): string;
  /** Multi-index of a flat offset in `shape`. */
  unravel(flat: string, shape: readonly number[]): string[];
  /** A WGSL literal of `value` in the given dtype. */
  literal(value: number, dtype: DType): string;
}

const registry = new Map<string, Primitive>();

export function definePrimitive<P>(p: Primitive<P>): Primitive<P> {
  if (registry.has(p.name)) throw new Error(`primitive ${p.name} defined twice`);
  registry.set(p.name, p as Primitive);
  return p;
}

/** The registered primitive called `name`; throws if there is none. */
export function getPrimitive(name: string): Primitive {
  const p = registry.get(name);
  if (!p) throw new Error(`unknown primitive ${JSON.stringify(name)}`);
  return p;
}

/** Names of all registered primitives, in registration order. */
export function primitiveNames(): string[] {
  return [...registry.keys()];
}

/** Throws the standard error of a shape/dtype rule: op name, shapes, user's call site. */
export function fail(op: string, detail: string, inputs: readonly AbstractValue[] = []): never {
  const shapes = inputs.map(formatAval);
  const suffix = shapes.length ? ` (got ${shapes.join(", ")})` : "";
  throw new DslError(op, detail + suffix, shapes);
}

export function requireDTypes(
  op: string,
  inputs: readonly AbstractValue[],
  allowed: readonly DType[],
): void {
  for (const x of inputs) {
    if (!allowed.includes(x.dtype)) fail(op, `expects ${allowed.join(" or ")} operands`, inputs);
  }
}

export type { Params };

/** Whether `op` is elementwise: output element i depends only on operand elements i. */
export function isElementwise(op: string): boolean {
  const rule = registry.get(op)?.wgsl;
  return rule?.kind === "inline" && rule.elementwise === true;
}
