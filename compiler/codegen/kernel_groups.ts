/**
 * Grouped dispatches: independent kernels of one program that share a pipeline (the same text,
 * each with its own sizes in its shape buffer) run as one dispatch. Each member keeps its own
 * bindings; the group's workgroups are numbered member after member, and a workgroup finds its
 * member, its own workgroup id and its sizes in the group's uniform buffer. A binding's reads and
 * writes go through a function that switches on the member, so the kernel's body is emitted once:
 * its compile time does not grow with the members.
 *
 * The HD-PiSSA step ends with four small products per adapted matrix (its projected gradients)
 * and a merge product per matrix, all independent of each other: 140 dispatches on the default
 * step, each costing the dispatch overhead and not much more. The schedule (compiler/schedule.ts)
 * makes such kernels adjacent and the memory plan keeps their buffers apart; this pass writes the
 * text.
 */

import type { Kernel } from "../program.ts";
import { SHAPE_BUFFER } from "./shape_params.ts";
import { type Binding, declaration, parseBinding, parseUniform } from "./bindings_text.ts";

/**
 * Most members of one dispatch: each binding access of the body is a switch over them, which a
 * GPU runs as a uniform branch (a workgroup's invocations all take one case).
 */
export const MAX_GROUP_MEMBERS = 16;

/** The uniform a grouped kernel reads: a vec4 per member (first workgroup, grid), then sizes. */
export const GROUP_BUFFER = "group_";

const ENTRY = /^@compute @workgroup_size\((\d+), (\d+), (\d+)\)\nfn main\((.*)\) \{\n/m;
/** The builtins an entry point may take, by the name the code generators give them. */
const BUILTINS = new Map([
  ["global_invocation_id", "gid"],
  ["num_workgroups", "nwg"],
  ["workgroup_id", "wid"],
  ["local_invocation_id", "lid"],
]);

/** A kernel's text cut for grouping. */
interface Shape {
  /** Storage bindings in binding order. */
  bindings: Binding[];
  /** Module-scope items other than bindings (helpers, workgroup arrays). */
  items: string[];
  workgroupSize: [number, number, number];
  /** The entry point's body, binding accesses rewritten to the member's accessors. */
  body: string;
  /** vec4s of sizes each member reads from its shape buffer (0: none). */
  sizes: number;
}

/** `text` parsed for grouping; undefined where it holds something this pass does not rewrite. */
function parse(text: string): Shape | undefined {
  const entry = ENTRY.exec(text);
  if (!entry || /\b(group_\w*|member_|flat_|grid_|local_)\b/.test(text)) return undefined;
  // An `enable` directive must open the module: such kernels keep a dispatch of their own.
  if (/^enable /m.test(text)) return undefined;
  const bindings: Shape["bindings"] = [], items: string[] = [];
  let sizes = 0;
  for (const item of text.slice(0, entry.index).split(/\n(?=@|fn |var<workgroup>|const )/)) {
    const line = item.trim();
    if (!line) continue;
    const storage = parseBinding(line), uniform = parseUniform(line);
    if (storage) {
      if (storage.index !== bindings.length || !/^array<.+>$/.test(storage.type)) return undefined;
      bindings.push(storage);
    } else if (uniform?.name === SHAPE_BUFFER) sizes = uniform.vec4s;
    else if (line.startsWith("@")) return undefined;
    else items.push(line);
  }
  for (const param of entry[4].split(",")) {
    const m = /^\s*@builtin\((\w+)\) (\w+): vec3<u32>\s*$/.exec(param);
    if (!m || BUILTINS.get(m[1]) !== m[2]) return undefined;
  }
  const close = text.lastIndexOf("}");
  const body = accessors(
    text.slice(entry.index + entry[0].length, close),
    new Set(bindings.map((b) => b.name)),
  );
  if (body === undefined) return undefined;
  const workgroupSize = [+entry[1], +entry[2], +entry[3]] as [number, number, number];
  return { bindings, items, workgroupSize, body, sizes };
}

/** The index of the bracket closing the one opened just before `from` (-1: none). */
function closing(text: string, from: number, open = "[", close = "]"): number {
  let depth = 1;
  for (let i = from; i < text.length; i++) {
    if (text[i] === open) depth++;
    else if (text[i] === close && --depth === 0) return i;
  }
  return -1;
}

/** The end of the statement starting at `from`: its `;` outside brackets (-1: none). */
function statementEnd(text: string, from: number): number {
  let depth = 0;
  for (let i = from; i < text.length; i++) {
    const c = text[i];
    if (c === "(" || c === "[") depth++;
    else if (c === ")" || c === "]") depth--;
    else if (c === ";" && depth === 0) return i;
  }
  return -1;
}

/**
 * `body` with every access to a binding in `names` made through its member's accessor: a read
 * `b0[i]` becomes `b0_(member_, i32(i))`, a store `out0[i] = v;` becomes
 * `out0_put(member_, i32(i), v);`. Undefined where a binding is used otherwise (a pointer to it,
 * a store into a component).
 */
function accessors(body: string, names: ReadonlySet<string>): string | undefined {
  let out = "", at = 0;
  const use = /\b(\w+)\b/g;
  for (let m = use.exec(body); m; m = use.exec(body)) {
    if (!names.has(m[1]) || m.index < at) continue;
    const open = m.index + m[1].length;
    if (body[open] !== "[") return undefined;
    const end = closing(body, open + 1);
    if (end < 0) return undefined;
    const index = accessors(body.slice(open + 1, end), names);
    if (index === undefined) return undefined;
    out += body.slice(at, m.index);
    const rest = body.slice(end + 1);
    const store = /^\s*([+\-*/]?)=(?!=)/.exec(rest);
    if (/^\s*\.\w+\s*[+\-*/]?=(?!=)/.test(rest)) return undefined;
    if (store) {
      const from = end + 1 + store[0].length, semi = statementEnd(body, from);
      if (semi < 0) return undefined;
      const value = accessors(body.slice(from, semi), names);
      if (value === undefined) return undefined;
      const i = `i32(${index})`;
      const v = store[1] ? `${m[1]}_(member_, ${i}) ${store[1]} (${value})` : value.trim();
      out += `${m[1]}_put(member_, ${i}, ${v})`;
      at = semi;
    } else {
      out += `${m[1]}_(member_, i32(${index}))`;
      at = end + 1;
    }
    use.lastIndex = at;
  }
  return out + body.slice(at);
}

/** The module-scope accessors of binding `b` for `members` members. */
function accessorFunctions(b: Binding, members: number): string[] {
  const element = b.type.slice("array<".length, -1);
  if (members === 0) {
    // A placeholder no member reads: one binding for all of them.
    const load = `fn ${b.name}_(member: i32, i: i32) -> ${element} { return ${b.name}_s[i]; }`;
    const store = `fn ${b.name}_put(member: i32, i: i32, v: ${element}) { ${b.name}_s[i] = v; }`;
    return b.access === "storage, read" ? [load] : [load, store];
  }
  const cases = (statement: (name: string) => string) =>
    Array.from(
      { length: members },
      (_, m) =>
        `    ${m === members - 1 ? "default" : `case ${m}i`}: { ${statement(`${b.name}_${m}`)} }`,
    );
  const load = [
    `fn ${b.name}_(member: i32, i: i32) -> ${element} {`,
    `  var v: ${element};`,
    "  switch member {",
    ...cases((name) => `v = ${name}[i];`),
    "  }",
    "  return v;",
    "}",
  ];
  if (b.access === "storage, read") return [load.join("\n")];
  const store = [
    `fn ${b.name}_put(member: i32, i: i32, v: ${element}) {`,
    "  switch member {",
    ...cases((name) => `${name}[i] = v;`),
    "  }",
    "}",
  ];
  return [load.join("\n"), store.join("\n")];
}

/**
 * One text for `members` members of kernels of shape `s`. Bindings in `shared` are placeholders
 * in every member (another epilogue's, epilogue_variants.ts): declared once, never read.
 */
function groupText(s: Shape, members: number, shared: ReadonlySet<number>): string {
  const declarations: string[] = [];
  const declare = (b: Binding, name: string) =>
    declarations.push(declaration(b, declarations.length, name));
  for (let m = 0; m < members; m++) {
    s.bindings.forEach((b, i) => !shared.has(i) && declare(b, `${b.name}_${m}`));
  }
  s.bindings.forEach((b, i) => shared.has(i) && declare(b, `${b.name}_s`));
  const uniform = `@group(0) @binding(${declarations.length}) var<uniform> ` +
    `${GROUP_BUFFER}: array<vec4<i32>, ${members * (1 + s.sizes)}>;`;
  const [x, y, z] = s.workgroupSize;
  // A workgroup's member: how many members start at or before it (they start in order).
  const member = Array.from(
    { length: members - 1 },
    (_, m) => `select(0i, 1i, flat_ >= ${GROUP_BUFFER}[${m + 1}].x)`,
  );
  const sizes = s.sizes === 0 ? s.body : s.body.replace(
    new RegExp(`\\b${SHAPE_BUFFER}\\[(\\d+)\\]`, "g"),
    (_, i) => `${GROUP_BUFFER}[${members} + member_ * ${s.sizes} + ${i}]`,
  );
  return [
    ...s.items,
    ...declarations,
    uniform,
    ...s.bindings.flatMap((b, i) => accessorFunctions(b, shared.has(i) ? 0 : members)),
    `@compute @workgroup_size(${x}, ${y}, ${z})`,
    "fn main(@builtin(workgroup_id) group_wid: vec3<u32>, " +
    "@builtin(local_invocation_id) lid: vec3<u32>) {",
    "  let flat_ = i32(group_wid.x);",
    `  let member_ = ${member.length ? member.join(" + ") : "0i"};`,
    `  let grid_ = ${GROUP_BUFFER}[member_];`,
    "  let nwg = vec3<u32>(grid_.yzw);",
    "  let local_ = u32(flat_ - grid_.x);",
    "  let wid = vec3<u32>(local_ % nwg.x, local_ / nwg.x % nwg.y, local_ / (nwg.x * nwg.y));",
    `  let gid = wid * vec3<u32>(${x}u, ${y}u, ${z}u) + lid;`,
    sizes.replace(/\n$/, ""),
    "}",
    "",
  ].join("\n");
}

/** The bindings of `k` that are placeholders (slot -1). */
const placeholders = (k: Kernel) => new Set(k.slots.flatMap((slot, b) => (slot < 0 ? [b] : [])));

/** Storage bindings a grouped dispatch of `members` members with `shared` placeholders takes. */
function groupBindings(per: number, members: number, shared: number): number {
  return shared + members * (per - shared);
}

/** A kernel standing for the members `group` of `kernels`, with `width` member slots. */
function grouped(
  kernels: readonly Kernel[],
  group: readonly number[],
  s: Shape,
  width: number,
  shared: ReadonlySet<number>,
) {
  const ks = group.map((i) => kernels[i]);
  const first = ks[0], per = s.bindings.length;
  const params = new Int32Array(4 * width * (1 + s.sizes));
  let start = 0;
  for (let m = 0; m < width; m++) {
    const k = ks[m];
    params.set(k ? [start, ...k.dispatch] : [0x7fffffff, 1, 1, 1], 4 * m);
    if (k?.params) params.set(k.params.subarray(0, 4 * s.sizes), 4 * (width + m * s.sizes));
    if (k) start += k.dispatch[0] * k.dispatch[1] * k.dispatch[2];
  }
  const own = Array.from({ length: per }, (_, b) => b).filter((b) => !shared.has(b));
  const slots: number[] = [], ranges: ([number, number] | undefined)[] = [];
  for (let m = 0; m < width; m++) {
    for (const b of own) slots.push(ks[m]?.slots[b] ?? -1), ranges.push(ks[m]?.ranges?.[b]);
  }
  for (const _ of shared) slots.push(-1), ranges.push(undefined);
  const kernel: Kernel = {
    name: `grouped${ks.length}_${first.name}`,
    kind: first.kind,
    ops: first.ops,
    bindings: slots.length,
    slots,
    written: [...new Set(ks.flatMap((k) => k.written))],
    ranges: ks.some((k) => k.ranges) ? ranges : undefined,
    wgsl: groupText(s, width, shared),
    dispatch: [start, 1, 1],
    workgroupSize: first.workgroupSize,
    output: ks.map((k) => k.output).join(" "),
    loopIterations: Math.max(...ks.map((k) => k.loopIterations)),
    multiplyAdds: ks.some((k) => k.multiplyAdds)
      ? ks.reduce((n, k) => n + (k.multiplyAdds ?? 0), 0)
      : undefined,
    params,
  };
  return kernel;
}

/** Limits a grouped dispatch must keep. */
export interface GroupLimits {
  /** Storage buffers one kernel may bind. */
  maxStorageBuffers: number;
  /** Workgroups one dimension of a dispatch may have. */
  maxWorkgroupsPerDimension: number;
}

/**
 * The kernels with each run of a planned group (consecutive kernels with the same group id, -1:
 * none) that share a text dispatched as one kernel, in runs that fit the device's limits; the
 * others unchanged. Members of a planned group must be independent: none reads or writes a buffer
 * another writes (the schedule and the memory plan see to it).
 */
export function groupKernels(
  kernels: readonly Kernel[],
  groupOf: readonly number[],
  limits: GroupLimits,
): Kernel[] {
  const shapes = new Map<string, Shape | undefined>();
  const shapeOf = (k: Kernel) => {
    if (!shapes.has(k.wgsl)) shapes.set(k.wgsl, parse(k.wgsl));
    return shapes.get(k.wgsl);
  };
  // Runs of one planned group with one text, split to fit the limits; each with the
  // placeholders all its members have.
  const runs: { members: number[]; shared: Set<number> }[] = [];
  for (let i = 0; i < kernels.length;) {
    let j = i + 1;
    while (j < kernels.length && groupOf[i] >= 0 && groupOf[j] === groupOf[i]) j++;
    const byText = new Map<string, number[]>();
    for (let k = i; k < j; k++) {
      const text = kernels[k].wgsl;
      if (!byText.has(text)) byText.set(text, []);
      byText.get(text)!.push(k);
    }
    for (const members of byText.values()) {
      const s = shapeOf(kernels[members[0]]);
      if (!s || members.length < 2) {
        members.forEach((k) => runs.push({ members: [k], shared: new Set() }));
        continue;
      }
      let run: number[] = [], shared = new Set<number>(), workgroups = 0;
      for (const k of members) {
        const n = kernels[k].dispatch.reduce((a, b) => a * b);
        const own = placeholders(kernels[k]);
        const both = run.length ? new Set([...shared].filter((b) => own.has(b))) : own;
        const bindings = groupBindings(s.bindings.length, run.length + 1, both.size);
        if (
          run.length && (bindings > limits.maxStorageBuffers || run.length >= MAX_GROUP_MEMBERS ||
            workgroups + n > limits.maxWorkgroupsPerDimension)
        ) {
          runs.push({ members: run, shared });
          run = [], shared = own, workgroups = 0;
        } else shared = both;
        run.push(k), workgroups += n;
      }
      runs.push({ members: run, shared });
    }
    i = j;
  }
  // Runs of one text and placeholders get as many member slots as the largest: one pipeline.
  const keyOf = (run: (typeof runs)[number]) =>
    `${[...run.shared].join(",")}\u0000${kernels[run.members[0]].wgsl}`;
  const width = new Map<string, number>();
  for (const run of runs) {
    width.set(keyOf(run), Math.max(width.get(keyOf(run)) ?? 0, run.members.length));
  }
  return runs.map((run) =>
    run.members.length < 2 ? kernels[run.members[0]] : grouped(
      kernels,
      run.members,
      shapeOf(kernels[run.members[0]])!,
      width.get(keyOf(run))!,
      run.shared,
    )
  );
}
