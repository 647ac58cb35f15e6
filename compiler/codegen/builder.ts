/**
 * KernelBuilder: turns the fused expression of a kernel into WGSL statements. Values are computed
 * on demand at a multi-index (`valueAt`), recursively through each primitive's inline emitter, and
 * memoised per index within a scope, so a value used twice at the same index is computed once.
 * Buffers are read through their binding; a buffer that is also the kernel's output (an in-place
 * update) is read through the output binding, as WebGPU forbids binding it twice.
 */

import { type DType, getPrimitive, type Node } from "../../dsl/mod.ts";
import type { WgslEmitContext } from "../../dsl/primitive.ts";
import { wgslLiteral } from "../../dsl/primitives/wgsl.ts";
import { isSplat } from "../fusion.ts";

export function storageType(dtype: DType): string {
  return dtype === "f32" ? "f32" : "i32";
}

export function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

export class KernelBuilder {
  private readonly scopes: { lines: string[]; memo: Map<string, string> }[] = [];
  private counter = 0;
  readonly helpers = new Map<string, string>();
  /** Binding slot → binding index in this kernel (the output is the last binding). */
  readonly bindingOfSlot = new Map<number, number>();
  /** Read-only slots declared as array<vec4<f32>> (for vectorised matmul loads). */
  readonly vec4Slots = new Set<number>();
  /** Slots of the roots (the kernel's outputs), bound after the reads as out0, out1, … */
  readonly outputSlots: number[];
  private readonly roots: ReadonlySet<Node>;

  constructor(
    private readonly buffers: ReadonlySet<Node>,
    private readonly slotOf: (n: Node) => number,
    /** The nodes this kernel computes (buffers, but computed here rather than read). */
    roots: readonly Node[],
  ) {
    this.roots = new Set(roots);
    this.outputSlots = roots.map(slotOf);
    this.openScope();
  }

  openScope(): void {
    this.scopes.push({ lines: [], memo: new Map() });
  }

  /** Closes the innermost scope and returns its statements. */
  closeScope(): string[] {
    return this.scopes.pop()!.lines;
  }

  line(text: string): void {
    this.scopes[this.scopes.length - 1].lines.push(text);
  }

  /** Binds `expr` to a fresh `let` in the current scope. */
  bind(expr: string): string {
    if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(expr) || /^-?[0-9.]+[fi]?$/.test(expr)) return expr;
    // The same expression in scope is bound once (index arithmetic repeats a lot).
    const key = `=${expr}`;
    const known = this.lookup(key);
    if (known !== undefined) return known;
    const name = `t${this.counter++}`;
    this.line(`let ${name} = ${expr};`);
    this.scopes[this.scopes.length - 1].memo.set(key, name);
    return name;
  }

  fresh(prefix: string): string {
    return `${prefix}${this.counter++}`;
  }

  /** Pre-sets the value of `node` at `index` (e.g. an accumulator) in the current scope. */
  seed(node: Node, index: readonly string[], value: string): void {
    this.scopes[this.scopes.length - 1].memo.set(this.key(node, index), value);
  }

  /**
   * The memo key of `node` at `index`. An index into a size-1 axis is always 0, whatever
   * expression a template or view wrote for it (a matmul tile writes `(row0 + 0i)` where a
   * reshape that dropped the axis writes `0i`): keying it as `0i` makes both find one value.
   */
  private key(node: Node, index: readonly string[]): string {
    return `${node.id}@${index.map((ix, i) => (node.shape[i] === 1 ? "0i" : ix)).join(",")}`;
  }

  private lookup(key: string): string | undefined {
    for (let i = this.scopes.length - 1; i >= 0; i--) {
      const v = this.scopes[i].memo.get(key);
      if (v !== undefined) return v;
    }
    return undefined;
  }

  flatten(index: readonly string[], shape: readonly number[]): string {
    const st = strides(shape);
    const terms = index.flatMap((ix, i) =>
      shape[i] === 1 ? [] : [st[i] === 1 ? ix : `${ix} * ${st[i]}i`]
    );
    return terms.length === 0 ? "0i" : terms.length === 1 ? terms[0] : `(${terms.join(" + ")})`;
  }

  unravel(flat: string, shape: readonly number[]): string[] {
    const f = this.bind(flat);
    const st = strides(shape);
    // The leading non-unit axis needs no modulo. Skipping it also for leading size-1 axes keeps
    // the index expressions of shapes that differ only by size-1 axes identical (so a value
    // seeded at one, e.g. a reduction under a keepDims reshape, is found at the other).
    let leading = true;
    return shape.map((d, i) => {
      if (d === 1) return "0i";
      const q = st[i] === 1 ? f : `(${f} / ${st[i]}i)`;
      const first = leading;
      leading = false;
      return this.bind(first ? q : `(${q} % ${d}i)`);
    });
  }

  /** WGSL name of the storage binding for a buffer node (registering it). */
  bufferName(node: Node): string {
    const slot = this.slotOf(node);
    const o = this.outputSlots.indexOf(slot);
    if (o >= 0) return `out${o}`;
    let b = this.bindingOfSlot.get(slot);
    if (b === undefined) {
      b = this.bindingOfSlot.size;
      this.bindingOfSlot.set(slot, b);
    }
    return `b${b}`;
  }

  /** The value of `node` at a multi-index, as a WGSL expression of its dtype. */
  valueAt(node: Node, index: readonly string[]): string {
    const key = this.key(node, index);
    const known = this.lookup(key);
    if (known !== undefined) return known;
    let value: string;
    if (this.buffers.has(node) && !this.roots.has(node)) {
      const name = this.bufferName(node);
      const flat = this.flatten(index, node.shape);
      const raw = this.vec4Slots.has(this.slotOf(node))
        ? `${name}[${this.bind(flat)} / 4i][${this.bind(flat)} % 4i]`
        : `${name}[${flat}]`;
      value = this.bind(node.dtype === "bool" ? `(${raw} != 0i)` : raw);
    } else if (isSplat(node)) {
      value = this.splatLiteral(node);
    } else {
      const rule = getPrimitive(node.op).wgsl;
      if (rule.kind !== "inline") {
        throw new Error(`codegen: ${node.op} is not fused here but has no buffer`);
      }
      for (const [name, src] of Object.entries(rule.helpers ?? {})) this.helpers.set(name, src);
      const ctx: WgslEmitContext<Record<string, unknown>> = {
        index,
        params: node.params as Record<string, unknown>,
        inputs: node.inputs,
        output: node,
        read: (k, ix) => this.valueAt(node.inputs[k], ix),
        bind: (e) => this.bind(e),
        flatten: (ix, shape) => this.flatten(ix, shape),
        unravel: (f, shape) => this.unravel(f, shape),
        literal: wgslLiteral,
      };
      value = this.bind(rule.emit(ctx));
    }
    this.scopes[this.scopes.length - 1].memo.set(key, value);
    return value;
  }

  private splatLiteral(node: Node): string {
    let n = node;
    while (n.op !== "constant") n = n.inputs[0];
    const v = (n.params.value as { data: ArrayLike<number> }).data[0];
    return wgslLiteral(v, node.dtype);
  }

  /** WGSL to store a value of `dtype` into the output buffer. */
  storeValue(value: string, dtype: DType): string {
    return dtype === "bool" ? `select(0i, 1i, ${value})` : value;
  }
}
