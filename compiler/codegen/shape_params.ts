/**
 * Shape parameters: kernels of one program that differ only in their sizes and strides share one
 * pipeline. A kernel's WGSL spells every size as a literal (so the shader compiler folds them);
 * where two or more kernels of a program have the same text once those literals are read from a
 * small buffer instead (a uniform, or read-only storage on CPU adapters: `ShapeBuffer`), they get
 * that text and each its own values. Mesa compiles a pipeline
 * in time that grows with its text (≈15 ms per KB for the unrolled matmuls, perf-notes.md), and
 * the same matmul recurs at a few shapes in every transformer step: this is where the first step
 * spends most of its time on a CPU adapter.
 *
 * Only literals that differ between the kernels of a group are lifted: those they all have
 * (tile offsets, unroll steps, lanes) are the structure and stay constants. Bare divisors and
 * moduli are not lifted: a division by a constant is a multiply and a shift, by a uniform a real
 * division. Code that divides once per invocation writes its divisor in parentheses,
 * `tile / (9i)`, which marks it liftable. A kernel that shares with no other keeps its literals,
 * so lifting never costs a kernel speed for nothing; on lavapipe the default HD-PiSSA step ran as
 * fast lifted (paired ratios 0.96–1.01 over 25 steps).
 */

/** The array a lifted kernel reads its sizes from (`shape_3` is its fourth size). */
export const SHAPE_BUFFER = "shape_";

/**
 * The kind of buffer that array lives in. A uniform suits GPUs. On Mesa's llvmpipe and lavapipe
 * a uniform that a loop bound or branch reads is inlined: Mesa compiles a variant of the pipeline
 * for each set of values, and again at each switch between two sets (about 5 ms per dispatch for
 * a transformer's product, measured alternating two members of one text), so a shared text ran
 * 2–7× slower than its own copies. A read-only storage buffer is read as data: one compile per
 * text, and it costs a storage binding.
 */
export type ShapeBuffer = "uniform" | "storage";

/** How lifted kernels read their sizes, and the storage bindings a kernel may have in all. */
export interface SizesBinding {
  buffer: ShapeBuffer;
  maxStorageBuffers: number;
}

/** Storage buffers a kernel binds: its own, and its sizes' where they are in storage. */
export const storageBindings = (k: { bindings: number; wgsl: string; params?: unknown }) =>
  k.bindings + (k.params && k.wgsl.includes(`var<storage, read> ${SHAPE_BUFFER}:`) ? 1 : 0);

/** Whether a kernel with `bindings` storage buffers of its own, and its sizes' buffer, fits. */
export const fitsWithSizes = (bindings: number, sizes: SizesBinding) =>
  bindings + (sizes.buffer === "storage" ? 1 : 0) <= sizes.maxStorageBuffers;

/** What `shareShapes` reads of a kernel: its text and the storage bindings it already has. */
export interface ShapedKernel {
  wgsl: string;
  /** Storage buffers bound (the shape buffer goes after them). */
  bindings: number;
  /** Values of the shape buffer, where the kernel reads one. */
  params?: Int32Array<ArrayBuffer>;
  /**
   * Its divisors and moduli may be lifted too: a kernel over so few elements that a real division
   * per index costs less than compiling another pipeline (`SMALL_KERNEL_ELEMENTS`).
   */
  liftDivisors?: boolean;
  /**
   * Where set, the kernel shares a text only with kernels of the same key (a large product's
   * shapes and grid, `liftMatmulLoopsUpTo`): lifted, a main loop's bounds, strides and clamps
   * hide from the shader compiler's value ranges, which cost the default steps 2–4% on llvmpipe.
   */
  loopKey?: string;
}

/**
 * The default `liftDivisorsUpTo`: elementwise, row-wise and reduction kernels over at most this
 * many elements lift their divisors too. On llvmpipe each distinct pipeline costs 20–100 ms to
 * compile at its first dispatch, and the Adam and merge kernels of a rank-r adapter (a few
 * thousand elements each) recur at a few shapes that differ only in their index arithmetic.
 */
export const SMALL_KERNEL_ELEMENTS = 1 << 16;

/** i32 literals (`144i`) not part of an identifier or a float. */
const I32_LITERAL = /(?<![\w.])(\d+)i\b/g;

/** A kernel's text cut at its liftable literals: `pieces` around them, and their values. */
interface Template {
  pieces: string[];
  values: number[];
}

/**
 * The i32 literals in the body of `wgsl`'s entry point that are not divisors or moduli (but for
 * one in parentheses), and the text around them; undefined where there is none.
 */
export function shapeTemplate(wgsl: string, liftDivisors = false): Template | undefined {
  const entry = wgsl.indexOf("\nfn main(");
  if (entry < 0) return undefined;
  const t = literalTemplate(wgsl, entry, liftDivisors);
  return t.values.length ? t : undefined;
}

/**
 * `text` cut at its liftable literals from `from` on (see `shapeTemplate`); with `liftDivisors`,
 * bare divisors and moduli too.
 */
export function literalTemplate(text: string, from = 0, liftDivisors = false): Template {
  const pieces: string[] = [], values: number[] = [];
  let last = 0;
  for (const m of text.slice(from).matchAll(I32_LITERAL)) {
    const at = from + m.index!, value = Number(m[1]);
    if (value > 0x7fffffff || (!liftDivisors && /[/%]\s*$/.test(text.slice(at - 3, at)))) {
      continue;
    }
    pieces.push(text.slice(last, at));
    values.push(value);
    last = at + m[0].length;
  }
  pieces.push(text.slice(last));
  return { pieces, values };
}

/**
 * One text for kernels of one template: a literal the same in every member stays (tile offsets,
 * unroll steps, lanes: the structure); the others are read from `shape_` (bound at `binding`),
 * occurrences equal in every member from one slot, and each member gets its slot values. A
 * member's undefined value is a literal of code it never runs (another member's epilogue,
 * epilogue_variants.ts): it agrees with any value.
 */
export function liftGroup(
  t: { pieces: readonly string[] },
  members: readonly (readonly (number | undefined)[])[],
  binding: number,
  buffer: ShapeBuffer,
): { wgsl: string; params: Int32Array<ArrayBuffer>[] } {
  const slotOfKey = new Map<string, number>();
  const constants: number[] = [];
  const slots = t.pieces.slice(1).map((_, i) => {
    const defined = new Set(members.map((v) => v[i]).filter((x) => x !== undefined));
    if (defined.size <= 1) {
      constants[i] = [...defined][0] ?? 0;
      return undefined;
    }
    const key = members.map((v) => v[i] ?? "*").join(",");
    if (!slotOfKey.has(key)) slotOfKey.set(key, slotOfKey.size);
    return slotOfKey.get(key)!;
  });
  const n = slotOfKey.size, vec4s = Math.ceil(n / 4);
  const lanes = ["x", "y", "z", "w"];
  let text = t.pieces[0];
  slots.forEach((s, i) =>
    text += `${s === undefined ? `${constants[i]}i` : `${SHAPE_BUFFER}${s}`}${t.pieces[i + 1]}`
  );
  // The buffer is declared before the entry point's attributes, and each size is loaded once at
  // the top of its body: llvmpipe does not hoist loads out of loops.
  const attrs = text.indexOf("\n@compute");
  const open = text.indexOf("{\n", text.indexOf("\nfn main(")) + 2;
  const space = buffer === "uniform" ? "uniform" : "storage, read";
  const decl = `\n@group(0) @binding(${binding}) var<${space}> ${SHAPE_BUFFER}: ` +
    `array<vec4<i32>, ${vec4s}>;`;
  const lets = Array.from(
    { length: n },
    (_, s) => `  let ${SHAPE_BUFFER}${s} = ${SHAPE_BUFFER}[${s >> 2}].${lanes[s & 3]};\n`,
  );
  const wgsl = text.slice(0, attrs) + decl + text.slice(attrs, open) + lets.join("") +
    text.slice(open);
  const params = members.map((v) => {
    const p = new Int32Array(4 * vec4s);
    slots.forEach((s, i) => s !== undefined && (p[s] = v[i] ?? 0));
    return p;
  });
  return { wgsl, params };
}

/**
 * The kernels, with those that share a structure (same text up to liftable literals, same
 * bindings) with a kernel of other sizes lifted to one text per structure; the others unchanged
 * (and those with no room for the sizes' buffer). Returns new objects, in the same order.
 */
export function shareShapes<K extends ShapedKernel>(
  kernels: readonly K[],
  sizes: SizesBinding = { buffer: "uniform", maxStorageBuffers: Infinity },
): K[] {
  const templates = kernels.map((k) =>
    k.params || !fitsWithSizes(k.bindings, sizes)
      ? undefined
      : shapeTemplate(k.wgsl, k.liftDivisors)
  );
  const groups = new Map<string, number[]>();
  templates.forEach((t, i) => {
    if (!t) return;
    const key = [kernels[i].bindings, kernels[i].loopKey ?? "", ...t.pieces].join("\u0000");
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key)!.push(i);
  });
  const out = kernels.map((k) => ({ ...k }));
  for (const members of groups.values()) {
    // Lifting pays only where it merges different texts into one pipeline.
    if (new Set(members.map((i) => kernels[i].wgsl)).size < 2) continue;
    const t = templates[members[0]]!;
    const lifted = liftGroup(
      t,
      members.map((i) => templates[i]!.values),
      kernels[members[0]].bindings,
      sizes.buffer,
    );
    members.forEach((i, j) =>
      Object.assign(out[i], { wgsl: lifted.wgsl, params: lifted.params[j] })
    );
  }
  return out;
}
