/**
 * Epilogue variants: matmul kernels of one program whose code differs only in the fused epilogue
 * (a residual add, an activation, a gate, their gradients) and in sizes share one pipeline. Its
 * text holds the product's main loop once and each member's epilogue once, chosen by a size the
 * kernel reads from its shape buffer (`epilogue_`, shape_params.ts); a binding that only another
 * member's epilogue reads is bound to a placeholder buffer (slot -1).
 *
 * Mesa's llvmpipe compiles a kernel at its first dispatch, in time that grows with its code, and
 * the unrolled main loop of a register-tile product is most of that code. The default HD-PiSSA
 * step's forward products (x·Wᵀ plain, plus a residual, through the SiLU gate, times the gate)
 * and its input gradients (plain, plus a residual, through the gate's gradient) were nine
 * pipelines of one loop or another, each ≈0.27 s to compile. Where the epilogues loop over the
 * tile's rows alike (`sameLoops`), that loop is shared too and only each row's store branches.
 */

import type { Kernel } from "../program.ts";
import { fitsWithSizes, liftGroup, literalTemplate, type SizesBinding } from "./shape_params.ts";
import { EPILOGUE_END, EPILOGUE_START, ROW_END, ROW_START } from "./tile_epilogue.ts";
import { type Binding, declaration, parseBinding } from "./bindings_text.ts";

/** A kernel cut around its epilogue. */
interface Parts {
  /** Storage bindings, in binding order, split by where they are read. */
  shared: Binding[];
  own: Binding[];
  /** Module-scope items other than bindings (helper functions, workgroup arrays). */
  items: string[];
  /** From the entry point's attributes to the epilogue, and after it. */
  entry: string;
  epilogue: string;
  tail: string;
  /**
   * The epilogue cut around its one row store, where it has exactly one: the loop over the tile's
   * rows before and after it, and the store of one row in `body`.
   */
  row?: Cut;
}

/** A text cut around the part between two marks. */
interface Cut {
  before: string;
  body: string;
  after: string;
}

/** The line of `text` holding `mark` (start and end offsets), if exactly one does. */
function markLine(text: string, mark: string): [number, number] | undefined {
  const at = text.indexOf(mark);
  if (at < 0 || text.indexOf(mark, at + 1) >= 0) return undefined;
  return [text.lastIndexOf("\n", at) + 1, text.indexOf("\n", at) + 1];
}

const mentions = (text: string, name: string) => new RegExp(`\\b${name}\\b`).test(text);

/** `text` cut at the lines holding `startMark` and `endMark` (dropped), each there once. */
function cut(text: string, startMark: string, endMark: string): Cut | undefined {
  const start = markLine(text, startMark), end = markLine(text, endMark);
  if (!start || !end || end[0] < start[1]) return undefined;
  return {
    before: text.slice(0, start[0]),
    body: text.slice(start[1], end[0]),
    after: text.slice(end[1]),
  };
}

function split(wgsl: string): Parts | undefined {
  const compute = wgsl.indexOf("\n@compute");
  const cutAt = cut(wgsl, EPILOGUE_START, EPILOGUE_END);
  if (compute < 0 || !cutAt) return undefined;
  const bindings: Binding[] = [], items: string[][] = [];
  for (const line of wgsl.slice(0, compute).split("\n")) {
    const binding = parseBinding(line);
    if (binding) bindings.push(binding);
    else if (line.startsWith("@")) return undefined; // a binding this pass does not know
    else if (/^[^\s}]/.test(line) || items.length === 0) items.push([line]);
    else items.at(-1)!.push(line);
  }
  if (bindings.some((b, i) => b.index !== i)) return undefined;
  const entry = cutAt.before.slice(compute + 1), { body: epilogue, after: tail } = cutAt;
  const main = entry + tail;
  return {
    shared: bindings.filter((b) => mentions(main, b.name)),
    own: bindings.filter((b) => !mentions(main, b.name)),
    items: items.map((lines) => lines.join("\n")).filter((item) => item.trim() !== ""),
    entry,
    epilogue,
    tail,
    row: cut(epilogue, ROW_START, ROW_END),
  };
}

const shape = (bs: readonly Binding[]) => bs.map((b) => declaration(b, 0)).join("\n");

/** A kernel of a group: its index in the program, its parts, which epilogue it has. */
interface Member {
  kernel: number;
  parts: Parts;
  variant: number;
}

/** Kernels of one main loop: their parts, and the distinct epilogues among them. */
interface Group {
  members: Member[];
  variants: Parts[];
  /** Variant index by epilogue key (own bindings, epilogue text up to literals, helpers). */
  variantOf: Map<string, number>;
}

/**
 * The kernels, with matmul kernels that share a main loop (up to sizes) but not an epilogue
 * merged into one text per main loop, as long as the merged kernel binds at most
 * `sizes.maxStorageBuffers` (its sizes' buffer included where that is a storage buffer); the
 * others unchanged. Returns new objects, in the same order.
 */
export function shareEpilogues(kernels: readonly Kernel[], sizes: SizesBinding): Kernel[] {
  const groups = new Map<string, Group>();
  kernels.forEach((k, i) => {
    const parts = k.kind === "matmul" && !k.params ? split(k.wgsl) : undefined;
    if (!parts) return;
    const key = [
      k.loopKey ?? "",
      shape(parts.shared),
      ...literalTemplate(parts.entry).pieces,
      "\u0001",
      ...literalTemplate(parts.tail).pieces,
    ].join("\u0000");
    const group: Group = groups.get(key) ?? { members: [], variants: [], variantOf: new Map() };
    groups.set(key, group);
    const epilogueKey = [
      shape(parts.own),
      ...literalTemplate(parts.epilogue).pieces,
      ...parts.items,
    ].join("\u0000");
    let variant = group.variantOf.get(epilogueKey);
    if (variant === undefined) {
      variant = group.variants.push(parts) - 1;
      group.variantOf.set(epilogueKey, variant);
    }
    group.members.push({ kernel: i, parts, variant });
  });
  const out = kernels.map((k) => ({ ...k }));
  for (const group of groups.values()) {
    for (const variants of within(group, sizes)) {
      if (variants.length < 2) continue;
      merge(out, group, variants, sizes);
    }
  }
  return out;
}

/** The group's variants in runs whose merged kernel stays within the binding limit. */
function within(group: Group, sizes: SizesBinding): number[][] {
  const shared = group.variants[0].shared.length;
  const runs: number[][] = [[]];
  let bound = shared;
  group.variants.forEach((v, i) => {
    const fits = fitsWithSizes(bound + v.own.length, sizes);
    if (!fits && runs.at(-1)!.length > 0) runs.push([]), bound = shared;
    runs.at(-1)!.push(i);
    bound += v.own.length;
  });
  return runs;
}

/** Helper functions two variants define differently (then they cannot share a text). */
function clash(items: readonly string[]): boolean {
  const names = items.map((item) => /^fn (\w+)/.exec(item)?.[1]).filter((n) => n !== undefined);
  return new Set(names).size !== names.length;
}

/**
 * Whether the variants' epilogues loop over the tile's rows alike (the same code up to sizes,
 * around one row store each, reading no binding of their own): then the row loop, with its
 * chains of selects that pick each row's accumulators, is emitted once, and each variant's
 * branch holds only its loop over the row's columns. On llvmpipe the gated MLP's product with
 * five epilogues compiled in ≈0.45 s instead of ≈1.1 s, at the same step speed (paired ratios
 * 1.01 and 0.99 over 40 steps); a branch per element instead compiled no faster and ran ≈5 %
 * slower.
 */
function sameLoops(group: Group, variants: readonly number[]): boolean {
  const loops = variants.map((v) => {
    const { row, own } = group.variants[v];
    if (!row || own.some((b) => mentions(row.before + row.after, b.name))) return;
    return [
      ...literalTemplate(row.before).pieces,
      "\u0001",
      ...literalTemplate(row.after).pieces,
    ].join("\u0000");
  });
  return loops[0] !== undefined && loops.every((l) => l === loops[0]);
}

/** Gives the members of `variants` one text: the main loop once, each epilogue once. */
function merge(
  out: Kernel[],
  group: Group,
  variants: readonly number[],
  sizes: SizesBinding,
): void {
  const members = group.members.filter((m) => variants.includes(m.variant));
  const items = [...new Set(variants.flatMap((v) => group.variants[v].items))];
  if (clash(items)) return;
  const shared = group.variants[variants[0]].shared;
  // Each variant's own bindings get names of their own, numbered after the shared ones.
  const rename = (v: number, name: string) => `v${v}_${name}`;
  const declarations = shared.map((b, i) => declaration(b, i));
  const layout: { variant?: number; name: string }[] = shared.map((b) => ({ name: b.name }));
  for (const v of variants) {
    for (const b of group.variants[v].own) {
      declarations.push(declaration(b, layout.length, rename(v, b.name)));
      layout.push({ variant: v, name: b.name });
    }
  }
  // The merged text as pieces around literals; each member's values (undefined: another
  // variant's epilogue, code that member never runs).
  const pieces: string[] = [[...items, ...declarations, ""].join("\n")];
  const values: (number | undefined)[][] = members.map(() => []);
  const fixed = (text: string) => pieces[pieces.length - 1] += text;
  const templated = (text: (m: Member) => string | undefined) => {
    const templates = members.map((m) => {
      const t = text(m);
      return t === undefined ? undefined : literalTemplate(t);
    });
    const first = templates.find((t) => t !== undefined)!;
    fixed(first.pieces[0]);
    pieces.push(...first.pieces.slice(1));
    values.forEach((v, j) => v.push(...first.values.map((_, i) => templates[j]?.values[i])));
  };
  // A member's epilogue code (all of it, or its row store), indented into its branch and
  // with its own bindings renamed.
  const branch = (m: Member, text: string) =>
    m.parts.own.reduce(
      (t, b) => t.replace(new RegExp(`\\b${b.name}\\b`, "g"), rename(m.variant, b.name)),
      text.replace(/^(?=.)/gm, "  "),
    );
  const choose = (indent: string, code: (m: Member) => string) => {
    variants.forEach((v, e) => {
      fixed(`${indent}${e === 0 ? "" : "} else "}if (epilogue_ == ${e}i) {\n`);
      templated((m) => m.variant !== v ? undefined : branch(m, code(m)));
    });
    fixed(`${indent}}\n`);
  };
  templated((m) => m.parts.entry);
  const indent = /^\s*/.exec(members[0].parts.epilogue)![0];
  templated((m) => `${indent}let epilogue_ = ${variants.indexOf(m.variant)}i;\n`);
  if (sameLoops(group, variants)) {
    templated((m) => m.parts.row!.before);
    choose(/^\s*/.exec(members[0].parts.row!.body)![0], (m) => m.parts.row!.body);
    templated((m) => m.parts.row!.after);
  } else choose(indent, (m) => m.parts.epilogue);
  templated((m) => m.parts.tail);
  const lifted = liftGroup({ pieces }, values, layout.length, sizes.buffer);
  members.forEach((m, j) => {
    const k = out[m.kernel];
    const at = (name: string) => m.parts.shared.concat(m.parts.own).find((b) => b.name === name)!;
    const origin = layout.map((l) =>
      l.variant === undefined || l.variant === m.variant ? at(l.name).index : -1
    );
    Object.assign(out[m.kernel], {
      wgsl: lifted.wgsl,
      params: lifted.params[j],
      bindings: layout.length,
      slots: origin.map((i) => (i < 0 ? -1 : k.slots[i])),
      ranges: k.ranges && origin.map((i) => (i < 0 ? undefined : k.ranges![i])),
    });
  });
}
