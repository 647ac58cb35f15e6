/**
 * KernelBuilder: turns the fused expression of a kernel into WGSL statements. Values are computed
 * on demand at a multi-index (`valueAt`), recursively through each primitive's inline emitter, and
 * memoised per index within a scope, so a value used twice at the same index is computed once.
 * Buffers are read through their binding; a buffer that is also the kernel's output (an in-place
 * update) is read through the output binding, as WebGPU forbids binding it twice.
 */

import { type DType, getPrimitive, isFloat, type Node } from "../../dsl/mod.ts";
import type { WgslEmitContext } from "../../dsl/primitive.ts";
import { wgslLiteral } from "../../dsl/primitives/wgsl.ts";
import { isSplat } from "../fusion.ts";
import { PACKED_HELPERS, type PackedFormat, packedHelperNames } from "./packed.ts";

/** The WGSL type a value of `dtype` has in a kernel (f16 values are held and stored as f32). */
export function storageType(dtype: DType): string {
  return isFloat(dtype) ? "f32" : "i32";
}

/** Ops whose f16 result is one of their f16 operands' values (or its negation): no rounding. */
const HALF_PRESERVING = new Set([
  "reshape",
  "transpose",
  "broadcast",
  "slice",
  "concat",
  "gather",
  "neg",
  "abs",
  "maximum",
  "where",
  "stopGradient",
  "checkpointBarrier",
  "cast", // a cast to f16 rounds itself
]);

export function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/**
 * How a buffer slot is bound: whole, or as consecutive windows of `windowElements` elements when
 * it is larger than the device lets one binding be (each window is a binding of its own, at an
 * offset into the same buffer).
 */
export interface BindingLayout {
  /** Elements per window (a multiple of the offset alignment). */
  windowElements: number;
  /** Elements of the device's binding offset alignment (a range binding starts at a multiple). */
  alignElements: number;
  /** Elements of the slot's buffer. */
  elementsOf(slot: number): number;
}

/** Bindings `slot` takes under `layout` (1 when it fits one binding or nothing is windowed). */
export function slotWindows(layout: BindingLayout | undefined, slot: number): number {
  return windowCount(layout?.elementsOf(slot) ?? 0, layout?.windowElements);
}

/** Number of bindings a buffer of `elements` takes in windows of `windowElements` (none: 1). */
export function windowCount(elements: number, windowElements: number | undefined): number {
  return windowElements ? Math.max(1, Math.ceil(elements / windowElements)) : 1;
}

export class KernelBuilder {
  private readonly scopes: { lines: string[]; memo: Map<string, string> }[] = [];
  private counter = 0;
  readonly helpers = new Map<string, string>();
  /** Binding slot → the first binding index of its windows in this kernel (reads only). */
  readonly bindingOfSlot = new Map<number, number>();
  /** Bindings taken by reads so far (windows included). */
  private readBindings = 0;
  /** Module-scope declarations of the kernel (workgroup memory). */
  readonly moduleDecls: string[] = [];
  /**
   * Read slots bound as one range instead of all their windows: slot → first element of the
   * range (a kernel that reads only a contiguous part of a windowed buffer, such as one part of
   * a matmul over a vocabulary-sized table).
   */
  readonly rangeBase = new Map<number, number>();
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
    /** Windowed bindings of buffers over the device's binding size (none: all whole). */
    readonly layout?: BindingLayout,
    /** The 16-bit format of a slot holding a packed f32 input (packed.ts); none: 4 bytes each. */
    private readonly packedOf: (slot: number) => PackedFormat | undefined = () => undefined,
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

  /**
   * Pre-sets the value of `node` at `index` (e.g. an accumulator) in the current scope. An f16
   * node's value is rounded to half here, as every f16 result is (`halfValue`).
   */
  seed(node: Node, index: readonly string[], value: string): void {
    const v = node.dtype === "f16" ? this.bind(`f16_round(${value})`) : value;
    this.scopes[this.scopes.length - 1].memo.set(this.key(node, index), v);
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

  /** Windows (bindings) of a slot: 1 unless it is larger than one binding may be. */
  windowsOf(slot: number): number {
    return slotWindows(this.layout, slot);
  }

  /** Elements per 4-byte storage unit of a slot: 2 for a packed one, else 1. */
  private perWord(slot: number): number {
    return this.packedOf(slot) ? 2 : 1;
  }

  /** Bindings of a read or written slot in this kernel: its windows, or 1 when bound as a range. */
  bindingsOf(slot: number): number {
    return this.rangeBase.has(slot) ? 1 : this.windowsOf(slot);
  }

  /** 4-byte offset of each binding of `slot` into its buffer (windows, or the range's base). */
  bindingOffsets(slot: number): number[] {
    const base = this.rangeBase.get(slot);
    if (base !== undefined) return [base / this.perWord(slot)];
    const w = this.layout?.windowElements ?? 0;
    return Array.from({ length: this.windowsOf(slot) }, (_, i) => i * w);
  }

  /**
   * Binds `node`'s buffer so that elements [lo, hi) can be indexed directly: whole when it fits
   * one binding, else as one range starting at an aligned offset at or below `lo`. Returns the
   * binding's name and the element its index 0 stands for, or undefined when [lo, hi) is wider
   * than a binding may be or the buffer is already bound another way in this kernel.
   */
  rangeName(node: Node, lo: number, hi: number): { name: string; base: number } | undefined {
    const slot = this.slotOf(node);
    if (this.windowsOf(slot) === 1) return { name: this.bufferName(node), base: 0 };
    if (this.outputSlots.includes(slot)) return undefined;
    // Windows and alignment count 4-byte units: a packed slot holds two elements in each.
    const per = this.perWord(slot);
    const windowElements = this.layout!.windowElements * per;
    const alignElements = this.layout!.alignElements * per;
    const base = Math.floor(lo / alignElements) * alignElements;
    const known = this.rangeBase.get(slot);
    if (known !== undefined) {
      const fits = lo >= known && hi <= known + windowElements;
      return fits ? { name: `b${this.bindingOfSlot.get(slot)}`, base: known } : undefined;
    }
    if (this.bindingOfSlot.has(slot) || hi - base > windowElements) return undefined;
    const b = this.readBindings++;
    this.bindingOfSlot.set(slot, b);
    this.rangeBase.set(slot, base);
    return { name: `b${b}`, base };
  }

  /** Whether `node`'s buffer is bound whole (a single binding), so it can be indexed directly. */
  isWhole(node: Node): boolean {
    return this.windowsOf(this.slotOf(node)) === 1;
  }

  /** WGSL names of the storage bindings (windows) of a buffer node, registering a read. */
  bufferNames(node: Node): string[] {
    const slot = this.slotOf(node);
    const windows = this.windowsOf(slot);
    if (this.rangeBase.has(slot)) throw new Error(`codegen: ${node.op} is bound as a range`);
    const o = this.outputSlots.indexOf(slot);
    if (o >= 0) return this.outputNames(o);
    let b = this.bindingOfSlot.get(slot);
    if (b === undefined) {
      b = this.readBindings;
      this.bindingOfSlot.set(slot, b);
      this.readBindings += windows;
    }
    return Array.from({ length: windows }, (_, w) => `b${b! + w}`);
  }

  /** WGSL name of the storage binding for a buffer bound whole (registering it). */
  bufferName(node: Node): string {
    const names = this.bufferNames(node);
    if (names.length !== 1) throw new Error(`codegen: ${node.op} is bound in windows`);
    return names[0];
  }

  /** Names of output `k`'s bindings: out{k}, or out{k}_{w} per window. */
  outputNames(k: number): string[] {
    const windows = this.windowsOf(this.outputSlots[k]);
    return windows === 1 ? [`out${k}`] : Array.from({ length: windows }, (_, w) => `out${k}_${w}`);
  }

  /**
   * A load of element `flat` of a buffer of `elements` bound as `names` (windows selected by the
   * index: every window is read at a clamped, in-bounds index and the right value selected).
   * `perWord`: elements per 4-byte unit of the binding's array (2 for `array<f16>`).
   */
  load(names: readonly string[], flat: string, elements: number, perWord = 1): string {
    if (names.length === 1) return `${names[0]}[${flat}]`;
    const f = this.bind(flat);
    const w = this.layout!.windowElements * perWord;
    let value = "";
    names.forEach((name, j) => {
      const last = Math.min(w, elements - j * w) - 1;
      const at = j === 0 ? `min(${f}, ${last}i)` : `clamp(${f} - ${j * w}i, 0i, ${last}i)`;
      const read = this.bind(`${name}[${at}]`);
      value = j === 0 ? read : `select(${value}, ${read}, ${f} >= ${j * w}i)`;
    });
    return value;
  }

  /** Whether output `k` is written as `array<f16>` (an f16 slot in 16-bit words). */
  halfOutput(k: number): boolean {
    return this.packedOf(this.outputSlots[k]) !== undefined;
  }

  /** Element `flat` of output `k` as the kernel computes with it (an f16 element widened). */
  outputValue(k: number, flat: string, elements: number): string {
    if (!this.halfOutput(k)) return this.load(this.outputNames(k), flat, elements);
    return `f32(${this.load(this.outputNames(k), flat, elements, 2)})`;
  }

  /** A store of `value` into element `flat` of output `k`. */
  store(k: number, flat: string, raw: string): void {
    const names = this.outputNames(k);
    const half = this.halfOutput(k);
    // An f16 value is already rounded (storeValue): the conversion is exact.
    const value = half ? `f16(${raw})` : raw;
    if (names.length === 1) {
      this.line(`${names[0]}[${flat}] = ${value};`);
      return;
    }
    const f = this.bind(flat);
    const w = this.layout!.windowElements * (half ? 2 : 1);
    names.forEach((name, j) => {
      const guard = j === 0
        ? `if (${f} < ${w}i) {`
        : j === names.length - 1
        ? "} else {"
        : `} else if (${f} < ${(j + 1) * w}i) {`;
      this.line(guard);
      this.line(`  ${name}[${j === 0 ? f : `${f} - ${j * w}i`}] = ${value};`);
    });
    this.line("}");
  }

  /** Total read bindings (windows included). */
  get readBindingCount(): number {
    return this.readBindings;
  }

  /** Element `flat` (row-major) of buffer node `node`, as a WGSL value of its dtype. */
  private readFlat(node: Node, flatIndex: string): string {
    const slot = this.slotOf(node);
    const base = this.rangeBase.get(slot);
    const flat = base === undefined ? flatIndex : `(${flatIndex} - ${base}i)`;
    const name = base === undefined ? undefined : `b${this.bindingOfSlot.get(slot)}`;
    const format = this.packedOf(slot);
    const output = this.outputSlots.indexOf(slot);
    const raw = format && output >= 0
      ? this.outputValue(output, flat, node.size) // read in place through its array<f16>
      : format
      ? this.packedRead(node, format, this.bind(flat), name)
      : this.vec4Slots.has(slot)
      ? `${name ?? this.bufferName(node)}[${this.bind(flat)} / 4i][${this.bind(flat)} % 4i]`
      : name !== undefined
      ? `${name}[${flat}]`
      : this.load(this.bufferNames(node), flat, node.size);
    return this.bind(node.dtype === "bool" ? `(${raw} != 0i)` : raw);
  }

  /**
   * A product's element computed where it is read (fusion rule 10: a short contraction inlined
   * into a row-wise kernel): a loop over the contraction, operands read through their views.
   */
  private dotProduct(node: Node, index: readonly string[]): string {
    const [a, b] = node.inputs;
    const r = index.length;
    const batch = index.slice(0, r - 2), [i, j] = index.slice(r - 2);
    const t = storageType(node.dtype);
    const acc = this.fresh("dot"), k = this.fresh("k");
    this.line(`var ${acc}: ${t} = ${t === "f32" ? "0.0f" : "0i"};`);
    this.line(`for (var ${k} = 0i; ${k} < ${a.shape[r - 1]}i; ${k}++) {`);
    this.openScope();
    const x = this.valueAt(a, [...batch, i, k]), y = this.valueAt(b, [...batch, k, j]);
    this.line(t === "f32" ? `${acc} = fma(${x}, ${y}, ${acc});` : `${acc} = ${acc} + ${x} * ${y};`);
    this.closeScope().forEach((l) => this.line("  " + l));
    this.line("}");
    return acc;
  }

  /** The value of `node` at a multi-index, as a WGSL expression of its dtype. */
  valueAt(node: Node, index: readonly string[]): string {
    const key = this.key(node, index);
    const known = this.lookup(key);
    if (known !== undefined) return known;
    let value: string;
    const stored = (n: Node) => this.buffers.has(n) && !this.roots.has(n);
    let source = node;
    while (source.op === "reshape" && !stored(source)) source = source.inputs[0];
    if (stored(source)) {
      // A buffer, or a reshape of one: the same flat element (no round trip through the shapes).
      value = this.readFlat(source, this.flatten(index, node.shape));
    } else if (isSplat(node)) {
      value = this.splatLiteral(node);
    } else if (node.op === "matmul") {
      value = this.halfValue(node, this.dotProduct(node, index));
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
      value = this.halfValue(node, this.bind(rule.emit(ctx)));
    }
    this.scopes[this.scopes.length - 1].memo.set(key, value);
    return value;
  }

  /**
   * An f16 node's value rounded to half: kernels compute in f32, and rounding each f16 op's
   * result (as the CPU reference and PyTorch's eager half kernels do) keeps fused kernels equal
   * to unfused ones. Ops that only move or pick f16 values skip it.
   */
  private halfValue(node: Node, value: string): string {
    if (node.dtype !== "f16" || HALF_PRESERVING.has(node.op)) return value;
    return this.bind(`f16_round(${value})`);
  }

  /**
   * Element `flat` of a packed input, widened to f32: from its vec2<u32> where the slot is read
   * as vectors, else from its word (`name`: the range binding, if the slot is bound as one).
   */
  private packedRead(
    node: Node,
    format: PackedFormat,
    flat: string,
    name: string | undefined,
  ): string {
    const h = packedHelperNames(format);
    const slot = this.slotOf(node);
    if (this.vec4Slots.has(slot)) {
      this.helpers.set(h.four, PACKED_HELPERS[format].four);
      return `${h.four}(${name ?? this.bufferName(node)}[${flat} / 4i])[${flat} % 4i]`;
    }
    this.helpers.set(h.one, PACKED_HELPERS[format].one);
    const word = `${flat} / 2i`;
    const w = name !== undefined
      ? `${name}[${word}]`
      : this.load(this.bufferNames(node), word, Math.ceil(node.size / 2));
    return `${h.one}(${w}, (${flat} & 1i) == 1i)`;
  }

  /**
   * A vec4<f32> load at vec4 index `index` of `node`'s binding `name` (a slot in `vec4Slots`):
   * the vec4 itself, or four packed elements widened.
   */
  vec4Read(node: Node, name: string, index: string): string {
    const format = this.packedOf(this.slotOf(node));
    if (!format) return `${name}[${index}]`;
    const h = packedHelperNames(format).four;
    this.helpers.set(h, PACKED_HELPERS[format].four);
    return `${h}(${name}[${index}])`;
  }

  /** The WGSL element type of read slot `slot`'s bindings (`scalar`: its storage type). */
  readElement(slot: number, scalar: string): string {
    if (!this.vec4Slots.has(slot)) return scalar;
    return this.packedOf(slot) ? "vec2<u32>" : "vec4<f32>";
  }

  private splatLiteral(node: Node): string {
    let n = node;
    while (n.op !== "constant") n = n.inputs[0];
    const v = (n.params.value as { data: ArrayLike<number> }).data[0];
    return wgslLiteral(v, node.dtype);
  }

  /** WGSL to store a value of `dtype` into the output buffer (an f16 value rounds to half). */
  storeValue(value: string, dtype: DType): string {
    if (dtype === "f16") return `f16_round(${value})`;
    return dtype === "bool" ? `select(0i, 1i, ${value})` : value;
  }
}
