/**
 * The buffer plan: one slot per buffer node, intermediates sharing slots by liveness. A slot is
 * free for reuse after the last kernel that reads it; a kernel may also write over a donated
 * input (or a dead intermediate) that it reads only at its own output index, which is how a jitted
 * optimizer step updates parameters and moments in place.
 */

import { type Graph, isFloat, type Node } from "../dsl/mod.ts";
import type { KernelPlan } from "./fusion.ts";
import { packedBytes, type PackedFormat } from "./codegen/packed.ts";

/** What a buffer slot holds: a graph input, an array constant, a temporary, or an output. */
export type SlotKind = "input" | "constant" | "intermediate" | "output";

/** One GPU buffer of a compiled program. */
export interface BufferSlot {
  /** Index of the slot in the plan. */
  id: number;
  /** What the slot was allocated for. */
  kind: SlotKind;
  /** Bytes (at least 4: WebGPU rejects empty bindings). */
  bytes: number;
  /** Element type of the storage array (u32: words of a packed input, two elements each). */
  element: "f32" | "i32" | "u32";
  /**
   * Its 16-bit storage format (packed.ts): a packed f32 or f16 input, or an f16 intermediate or
   * output under `halfStorage` (written as `array<f16>`, read as packed words).
   */
  packed?: PackedFormat;
  /** For inputs: the graph input index; for outputs: the output indices it serves. */
  inputIndex?: number;
  /** The graph output indices this slot holds. */
  outputIndices?: number[];
  /** For constants: the node holding the value. */
  constant?: Node;
}

/** Buffer slots of a program and the slot of every buffer node. */
export interface MemoryPlan {
  /** All slots, indexed by id. */
  slots: BufferSlot[];
  /** The slot holding each buffer node. */
  slotOf: Map<Node, number>;
  /** Peak bytes of intermediates + outputs live at once, plus inputs and constants. */
  peakBytes: number;
  /** Output slots that reuse a donated input's buffer, by output index. */
  donatedOutputs: Map<number, number>;
}

export function bytesOf(n: Node): number {
  return Math.max(4, n.size * 4);
}

/** Assigns every buffer of the kernels a slot, reusing dead and donated ones when allowed. */
export function planMemory(
  graph: Graph,
  kernels: readonly KernelPlan[],
  opts: {
    donate?: ReadonlySet<number>;
    reuse?: boolean;
    /** Inputs stored packed, by input index (their slots are never reused or written). */
    packed?: ReadonlyMap<number, PackedFormat>;
    /**
     * Each kernel's group (-1: none): adjacent kernels that run as one dispatch
     * (schedule.ts). Their buffers live through the whole group, and none is written in place of
     * a buffer another member reads.
     */
    groups?: readonly number[];
    /**
     * f16 intermediates and outputs in 16-bit words (`packed: "f16"`, written as `array<f16>`,
     * which needs `shader-f16`); otherwise in f32 words holding half values.
     */
    halfStorage?: boolean;
  } = {},
): MemoryPlan {
  const slots: BufferSlot[] = [];
  const slotOf = new Map<Node, number>();
  const newSlot = (s: Omit<BufferSlot, "id">) => {
    slots.push({ ...s, id: slots.length });
    return slots.length - 1;
  };
  // f16 values are held in f32 slots (rounded to half when stored) unless an input is packed.
  const element = (n: Node) => (isFloat(n.dtype) ? "f32" : "i32") as "f32" | "i32";
  /** How a computed node is stored: 16-bit words for f16 under `halfStorage`, else 4 bytes. */
  const storage = (n: Node): Pick<BufferSlot, "bytes" | "element" | "packed"> =>
    opts.halfStorage && n.dtype === "f16"
      ? { bytes: packedBytes(n.size), element: "u32", packed: "f16" }
      : { bytes: bytesOf(n), element: element(n) };
  const sameStorage = (s: BufferSlot, want: ReturnType<typeof storage>) =>
    s.bytes === want.bytes && s.element === want.element && s.packed === want.packed;
  const donatedNodes = new Set<Node>();
  graph.inputs.forEach((n, i) => {
    const packed = opts.packed?.get(i);
    const slot = packed
      ? { bytes: packedBytes(n.size), element: "u32" as const, packed }
      : { bytes: bytesOf(n), element: element(n) };
    slotOf.set(n, newSlot({ kind: "input", ...slot, inputIndex: i }));
    if (opts.donate?.has(i)) donatedNodes.add(n);
  });
  for (const n of graph.nodes) {
    const isOutput = graph.outputs.includes(n);
    if (n.op === "constant" && (n.size > 1 || isOutput) && !slotOf.has(n)) {
      slotOf.set(
        n,
        newSlot({ kind: "constant", bytes: bytesOf(n), element: element(n), constant: n }),
      );
    }
  }

  // Last kernel reading each buffer (a group's last member, for a buffer a member reads).
  const groupOf = (t: number) => opts.groups?.[t] ?? -1;
  const end = kernels.map((_, t) => t);
  for (let t = kernels.length - 2; t >= 0; t--) {
    if (groupOf(t) >= 0 && groupOf(t + 1) === groupOf(t)) end[t] = end[t + 1];
  }
  const lastUse = new Map<Node, number>();
  kernels.forEach((k, t) => k.reads.forEach((n) => lastUse.set(n, end[t])));
  // Buffers two members of a group read: neither may write over them.
  const readInGroup = new Map<Node, number>(), sharedInGroup = new Set<Node>();
  kernels.forEach((k, t) => {
    if (groupOf(t) < 0) return;
    for (const n of new Set(k.reads)) {
      if (readInGroup.get(n) === groupOf(t)) sharedInGroup.add(n);
      readInGroup.set(n, groupOf(t));
    }
  });
  const outputIndex = new Map<Node, number[]>();
  graph.outputs.forEach((n, i) => outputIndex.set(n, [...(outputIndex.get(n) ?? []), i]));

  const free: number[] = []; // reusable intermediate slots (and dead donated inputs)
  const donatedOutputs = new Map<number, number>();
  const releasing = new Map<number, Node[]>();
  for (const [n, t] of lastUse) {
    if (outputIndex.has(n)) continue;
    const reusable = donatedNodes.has(n) || (!graph.inputs.includes(n) && n.op !== "constant");
    if (reusable) releasing.set(t, [...(releasing.get(t) ?? []), n]);
  }
  let live = 0, peak = 0;
  for (const s of slots) peak += s.bytes;
  const base = peak;
  kernels.forEach((k, t) => {
    const taken = new Set<Node>();
    for (const n of k.roots) {
      const outs = outputIndex.get(n);
      const stored = storage(n), bytes = stored.bytes;
      // In place: a donated input or dead intermediate read here only at the output index.
      const inPlace = opts.reuse === false
        ? undefined
        : k.reads.find((r) =>
          !taken.has(r) && lastUse.get(r) === end[t] && !sharedInGroup.has(r) &&
          k.identityReads.has(r) && sameStorage(slots[slotOf.get(r)!], stored) &&
          !outputIndex.has(r) &&
          (donatedNodes.has(r) || (!outs && slots[slotOf.get(r)!].kind === "intermediate"))
        );
      if (inPlace) {
        taken.add(inPlace);
        const s = slotOf.get(inPlace)!;
        slotOf.set(n, s);
        if (outs) {
          slots[s].outputIndices = outs;
          outs.forEach((o) => donatedOutputs.set(o, s));
        }
        releasing.set(end[t], (releasing.get(end[t]) ?? []).filter((x) => x !== inPlace));
        continue;
      }
      if (outs) {
        slotOf.set(n, newSlot({ kind: "output", ...stored, outputIndices: outs }));
        live += bytes;
        continue;
      }
      const j = opts.reuse === false ? -1 : free.findIndex((s) => sameStorage(slots[s], stored));
      if (j >= 0) slotOf.set(n, free.splice(j, 1)[0]);
      else slotOf.set(n, newSlot({ kind: "intermediate", ...stored }));
      live += bytes;
    }
    peak = Math.max(peak, base + live);
    for (const dead of releasing.get(t) ?? []) {
      const s = slotOf.get(dead)!;
      if (slots[s].kind === "intermediate" || donatedNodes.has(dead)) {
        free.push(s);
        if (slots[s].kind === "intermediate") live -= slots[s].bytes;
      }
    }
  });
  // Outputs that are inputs or constants get their own output slot (filled by a copy).
  graph.outputs.forEach((n, i) => {
    if (!slotOf.has(n)) throw new Error(`memory plan: output ${i} (${n.op}) has no buffer`);
  });
  return { slots, slotOf, peakBytes: peak, donatedOutputs };
}
