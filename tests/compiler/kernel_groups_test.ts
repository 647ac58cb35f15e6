/**
 * Grouped dispatches (issue 15, a third of the dispatches): independent kernels that share a
 * pipeline run as one dispatch, each workgroup finding its member. They compute what the separate
 * kernels did, bit for bit, in every kernel template; the schedule keeps every dependency; no
 * member writes a buffer another member binds; and no dispatch binds more than the device allows.
 */

import assert from "node:assert/strict";
import * as dsl from "../../mod.ts";
import {
  type CodegenOptions,
  interpret,
  jit,
  type KernelPlan,
  lower,
  type Program,
  trace,
} from "../../mod.ts";
import type { Node, Tensor } from "../../mod.ts";
import { CPU_CODEGEN } from "../../runtime/jit.ts";
import { groupKernels } from "../../compiler/codegen/kernel_groups.ts";
import { scheduleGroups } from "../../compiler/schedule.ts";
import type { Kernel } from "../../compiler/program.ts";
import { assertTreeMatches, fc } from "../runtime/jit_helpers.ts";
import { checkProperty } from "../helpers/property.ts";
import { checkProductPrograms, productInputs, traceProducts } from "../helpers/products.ts";
import { randomArray } from "../helpers/models.ts";
import { SMALL_TILING } from "../helpers/matmul_configs.ts";
import { storageBindings } from "../../compiler/codegen/shape_params.ts";

const EPILOGUES = ["plain", "tanh", "residual", "sum"] as const;
type Epilogue = (typeof EPILOGUES)[number];

/** Independent products x_i·W_i (W_i stored [n, k] when `nt`), each through its epilogue. */
function products(epilogues: readonly Epilogue[], nt: boolean) {
  return (...ts: Tensor[]) =>
    epilogues.map((e, i) => {
      const [x, w, extra] = ts.slice(3 * i, 3 * i + 3);
      const y = dsl.matmul(x, nt ? dsl.transpose(w) : w);
      if (e === "tanh") return dsl.tanh(dsl.add(y, 0.5));
      if (e === "residual") return dsl.add(y, extra);
      if (e === "sum") return dsl.sum(dsl.mul(extra, extra), [1]); // a reduction kernel
      return y;
    });
}

const grouped = (p: Program) => p.kernels.filter((k) => k.name.startsWith("grouped"));

/** Every slot a grouped kernel writes is bound once: no member reads or writes another's output. */
function assertMembersApart(p: Program, label: string) {
  for (const k of grouped(p)) {
    for (const w of k.written) {
      assert.equal(k.slots.filter((s) => s === w).length, 1, `${label}: ${k.name} slot ${w}`);
    }
  }
}

Deno.test("independent products of one template run as one dispatch and compute what they did", async () => {
  const epilogues: Epilogue[] = ["plain", "plain", "residual", "plain", "residual"];
  for (const nt of [false, true]) {
    const f = products(epilogues, nt);
    const args = productInputs(32, 16, [16, 16, 16, 32, 16], nt, 5);
    const graph = traceProducts(f, args);
    const opts = { maxStorageBuffers: 32, ...CPU_CODEGEN };
    const on = lower(graph, { ...opts, groupKernels: true });
    const off = lower(graph, { ...opts, groupKernels: false });
    assert.equal(off.kernels.length, 5);
    assert.equal(on.kernels.length, 1, `nt ${nt}: one dispatch\n${on}`);
    assert.equal(on.pipelineCount, 1);
    assert.ok(on.kernels[0].bindings <= 32);
    assertMembersApart(on, `nt ${nt}`);
    const got = await jit(f, { codegen: { groupKernels: true } })(...args);
    const separate = await jit(f, { codegen: { groupKernels: false } })(...args);
    assertTreeMatches(got, separate, { rtol: 0, atol: 0 }, `nt ${nt}: grouped vs separate`);
    assertTreeMatches(got, interpret(f, ...args), { rtol: 1e-5, atol: 1e-5 }, `nt ${nt}`);
  }
});

Deno.test("the op-by-op baseline (fuse: false) keeps one dispatch per primitive", () => {
  const f = products(["plain", "plain", "plain"], false);
  const graph = traceProducts(f, productInputs(16, 16, [16, 16, 16], false, 2));
  const opts = { ...CPU_CODEGEN, maxStorageBuffers: 32, groupKernels: true };
  assert.equal(lower(graph, { ...opts, fuse: false }).kernels.length, 3);
  assert.equal(lower(graph, opts).kernels.length, 1);
});

Deno.test("a group never binds more buffers than the device allows", () => {
  const f = products(["plain", "plain", "plain", "plain", "plain", "plain"], true);
  const graph = traceProducts(f, productInputs(16, 16, [16, 16, 16, 16, 16, 16], true, 1));
  for (const limit of [5, 6, 8, 9, 12, 32]) {
    const p = lower(graph, { ...CPU_CODEGEN, maxStorageBuffers: limit, groupKernels: true });
    assert.ok(p.kernels.every((k) => storageBindings(k) <= limit), `limit ${limit}`);
    // Three bindings a member: ⌊limit / 3⌋ members a dispatch.
    const per = Math.max(1, Math.floor(limit / 3));
    assert.equal(p.kernels.length, Math.ceil(6 / per), `limit ${limit}\n${p}`);
  }
});

Deno.test("a product that reads another's output waits for it; one that reads what a third computes moves up with it", async () => {
  // x·W1, x·W3 and x·W2 are independent; y1·W3 needs y1, and (x·W3 ⊙ t)·W2 needs the row
  // reduction t of y1, computed between them.
  const f = (x: Tensor, w1: Tensor, w2: Tensor, w3: Tensor) => {
    const y1 = dsl.matmul(x, w1);
    const t = dsl.tanh(dsl.sum(dsl.mul(y1, y1), [1], { keepDims: true }));
    const y2 = dsl.matmul(dsl.mul(dsl.matmul(x, w3), t), w2);
    const y3 = dsl.matmul(y1, w3);
    return [y2, y3, dsl.matmul(x, w2)];
  };
  const args = [0, 1, 2, 3].map((s) => randomArray([16, 16], 40 + s));
  const graph = traceProducts(f, args);
  const p = lower(graph, { ...CPU_CODEGEN, maxStorageBuffers: 32, groupKernels: true });
  const off = lower(graph, { ...CPU_CODEGEN, maxStorageBuffers: 32, groupKernels: false });
  assert.ok(p.kernels.length < off.kernels.length, `${p}\n${off}`);
  assertMembersApart(p, "chain");
  const got = await jit(f, { codegen: { ...CPU_CODEGEN, groupKernels: true } })(...args);
  const apart = await jit(f, { codegen: { ...CPU_CODEGEN, groupKernels: false } })(...args);
  assertTreeMatches(got, apart, { rtol: 0, atol: 0 }, "chain: grouped vs separate");
  assertTreeMatches(got, interpret(f, ...args), { rtol: 1e-5, atol: 1e-5 }, "chain");
});

Deno.test("a member never writes where another member reads, though that buffer dies in the group", async () => {
  // a_i = tanh(x_i) dies in y_i = a_i·W_i: y_2 could take a_1's buffer were y_1 and y_2 apart.
  const f = (...ts: Tensor[]) =>
    [0, 1, 2, 3].flatMap((i) => {
      const y = dsl.matmul(dsl.tanh(ts[2 * i]), ts[2 * i + 1]);
      return [dsl.sum(y, [0]), dsl.max(y, [1])];
    });
  const args = [0, 1, 2, 3].flatMap((i) => [
    randomArray([16, 16], 60 + 2 * i),
    randomArray([16, 16], 61 + 2 * i),
  ]);
  const graph = traceProducts(f, args);
  const p = lower(graph, { ...CPU_CODEGEN, maxStorageBuffers: 32, groupKernels: true });
  assert.ok(grouped(p).length > 0, String(p));
  assertMembersApart(p, "dying inputs");
  for (const k of grouped(p)) {
    const seen = k.slots.filter((s) => s >= 0);
    assert.equal(new Set(seen).size, seen.length, `${k.name} binds a buffer twice\n${p}`);
  }
  const got = await jit(f, { codegen: { groupKernels: true } })(...args);
  assertTreeMatches(got, interpret(f, ...args), { rtol: 1e-5, atol: 1e-5 }, "dying inputs");
});

// The kernel templates a device may get: a CPU adapter's register tiles, a GPU's small tiles,
// the shared-memory kernel (workgroup memory and barriers), the generic kernel.
const configs: [string, Partial<CodegenOptions>][] = [
  ["cpu", { ...CPU_CODEGEN, groupKernels: true }],
  ["gpu tiles", {
    matmulRowBlock: 4,
    matmulColumnGroups: 1,
    matmulWorkgroup: [16, 16],
    groupKernels: true,
  }],
  ["shared", {
    matmulTilings: [SMALL_TILING],
    matmulNtInPlace: true,
    matmulTnInPlace: true,
    groupKernels: true,
  }],
  ["generic", { vectorizedMatmul: false, groupKernels: true }],
];

Deno.test("grouped dispatches match the separate kernels and the reference at random sizes and templates", async () => {
  const groupedPrograms = await checkProductPrograms(
    EPILOGUES,
    5,
    products,
    configs,
    async ({ f, args, want, epilogues, label, codegen }) => {
      const run = jit(f, { codegen });
      const program = await run.lower(...args);
      assertMembersApart(program, label);
      const got = await run(...args);
      const separate = await jit(f, { codegen: { ...codegen, groupKernels: false } })(...args);
      assertTreeMatches(got, separate, { rtol: 0, atol: 0 }, `${epilogues} (${label})`);
      assertTreeMatches(got, want, { rtol: 1e-5, atol: 1e-5 }, `${epilogues} (${label})`);
      return grouped(program).length > 0;
    },
    10,
  );
  assert.ok(groupedPrograms >= 10, `only ${groupedPrograms} programs had a grouped dispatch`);
});

// ---------------------------------------------------------------------------------------------
// The schedule on random dependency graphs

interface FakeGraph {
  /** For each kernel, the earlier kernels it reads (by offset back from it). */
  reads: number[][];
  keys: number[];
}

function fakePlans(g: FakeGraph): KernelPlan[] {
  const roots = g.reads.map((_, i) => ({ id: i, op: "fake" }) as unknown as Node);
  return g.reads.map((back, i) => ({
    roots: [roots[i]],
    kind: "elementwise",
    rowReductions: [],
    rowAxes: [],
    fused: [],
    reads: back.filter((b) => b <= i && b > 0).map((b) => roots[i - b]),
    identityReads: new Set(),
  }));
}

Deno.test("scheduleGroups: a topological order, groups of one key without dependencies inside", () => {
  checkProperty(
    fc.property(
      fc.integer({ min: 1, max: 40 }).chain((n) =>
        fc.record({
          reads: fc.array(fc.array(fc.integer({ min: 1, max: 8 }), { maxLength: 3 }), {
            minLength: n,
            maxLength: n,
          }),
          keys: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: n, maxLength: n }),
        })
      ),
      fc.integer({ min: 2, max: 12 }),
      (g: FakeGraph, cap: number) => {
        const plans = fakePlans(g);
        const index = new Map(plans.map((p, i) => [p, i]));
        const s = scheduleGroups(plans, {
          keyOf: (_, i) => (g.keys[i] === 0 ? undefined : String(g.keys[i])),
          bindingsOf: () => 2,
          sharedOf: () => 1,
          maxStorageBuffers: cap,
          window: 16,
          maxMembers: 16,
        });
        assert.equal(s.plans.length, plans.length);
        assert.equal(new Set(s.plans).size, plans.length, "each plan once");
        const at = new Map(s.plans.map((p, t) => [p, t]));
        const producer = new Map(plans.map((p) => [p.roots[0], p]));
        s.plans.forEach((p, t) => {
          for (const r of p.reads) {
            const from = at.get(producer.get(r)!)!;
            assert.ok(from < t, "what a kernel reads is computed before it");
            if (s.groups[t] >= 0) assert.notEqual(s.groups[from], s.groups[t], "not in its group");
          }
        });
        const members = new Map<number, number[]>();
        s.groups.forEach((gr, t) => gr >= 0 && members.set(gr, [...(members.get(gr) ?? []), t]));
        for (const ts of members.values()) {
          assert.ok(ts.length >= 2 && ts.length * 2 + 1 <= cap, "within the binding cap");
          assert.ok(ts.every((t, j) => j === 0 || t === ts[j - 1] + 1), "members adjacent");
          const keys = ts.map((t) => g.keys[index.get(s.plans[t])!]);
          assert.ok(keys.every((k) => k === keys[0] && k !== 0), "one key");
        }
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("scheduleGroups: prerequisites a group pulls up form groups of their own", () => {
  // x and b1..b4 share a key, b_k reads a_k; the a's share another. Grouping x with the b's
  // moves a1..a4 up before them: as one dispatch, not four (DP-LoRA's projected gradients on a
  // GPU, 144 → 121 kernels, 2026-12-07).
  const g: FakeGraph = {
    reads: [[], [], [], [], [], [4], [4], [4], [4]],
    keys: [2, 1, 1, 1, 1, 2, 2, 2, 2],
  };
  const plans = fakePlans(g);
  const s = scheduleGroups(plans, {
    keyOf: (_, i) => String(g.keys[i]),
    bindingsOf: () => 2,
    sharedOf: () => 0,
    maxStorageBuffers: 32,
    window: 16,
    maxMembers: 16,
  });
  const order = s.plans.map((p) => plans.indexOf(p));
  assert.deepEqual(order, [1, 2, 3, 4, 0, 5, 6, 7, 8]);
  assert.deepEqual(s.groups, [0, 0, 0, 0, 1, 1, 1, 1, 1]);
});

// ---------------------------------------------------------------------------------------------
// The text transform

const KERNEL = (body: string) =>
  `fn helper(x: f32) -> f32 { return x * 2.0; }
@group(0) @binding(0) var<storage, read> b0: array<f32>;
@group(0) @binding(1) var<storage, read_write> out0: array<f32>;
@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
${body}
}
`;

function kernel(wgsl: string, slots: number[], dispatch: [number, number, number]): Kernel {
  return {
    name: "k",
    kind: "elementwise",
    ops: [],
    bindings: slots.length,
    slots,
    written: [slots.at(-1)!],
    wgsl,
    dispatch,
    workgroupSize: [64, 1, 1],
    output: "f32[4]",
    loopIterations: 1,
  };
}

Deno.test("groupKernels: reads, stores and compound stores go through the member's accessors", () => {
  const text = KERNEL(
    "  let i = i32(gid.x);\n  out0[i] = helper(b0[u32(b0[i])]);\n  out0[i] += b0[i];",
  );
  const limits = { maxStorageBuffers: 8, maxWorkgroupsPerDimension: 65535 };
  const [g] = groupKernels(
    [kernel(text, [0, 1], [2, 1, 1]), kernel(text, [2, 3], [3, 1, 1])],
    [0, 0],
    limits,
  );
  assert.equal(g.bindings, 4);
  assert.deepEqual(g.slots, [0, 1, 2, 3]);
  assert.deepEqual(g.dispatch, [5, 1, 1]);
  assert.deepEqual([...g.params!.subarray(0, 8)], [0, 2, 1, 1, 2, 3, 1, 1]);
  assert.match(g.wgsl, /out0_put\(member_, i32\(i\), helper\(b0_\(member_, i32\(u32\(b0_\(member_/);
  assert.match(g.wgsl, /out0_put\(member_, i32\(i\), out0_\(member_, i32\(i\)\) \+ \(/);
  assert.equal((g.wgsl.match(/fn helper/g) ?? []).length, 1, "helpers once");
  assert.ok(!/\bb0\[|\bout0\[/.test(g.wgsl.split("@compute")[1]), "no direct access left");
  // A binding used other than by index, or a store into a component: left apart.
  for (
    const body of [
      "  let n = arrayLength(&b0);\n  out0[0] = f32(n);",
      "  out0[0].x = 1.0;",
    ]
  ) {
    const k = kernel(KERNEL(body), [0, 1], [1, 1, 1]);
    const out = groupKernels([k, { ...k, slots: [2, 3] }], [0, 0], limits);
    assert.equal(out.length, 2, body);
  }
  // Different texts, or no planned group: left apart.
  const other = kernel(KERNEL("  out0[0] = 1.0;"), [2, 3], [1, 1, 1]);
  assert.equal(groupKernels([kernel(text, [0, 1], [1, 1, 1]), other], [0, 0], limits).length, 2);
  const k = kernel(text, [0, 1], [1, 1, 1]);
  assert.equal(groupKernels([k, { ...k, slots: [2, 3] }], [-1, -1], limits).length, 2);
});

Deno.test("the browser conformance page's grouped programs do group (tests/web/conformance.js)", () => {
  const f = (x: Tensor, w: Tensor, r: Tensor) =>
    dsl.concat([
      dsl.matmul(x, w),
      dsl.matmul(r, w),
      dsl.matmul(w, r),
      dsl.matmul(x, dsl.transpose(w)),
    ], 0);
  const graph = trace(f, ...[1, 2, 3].map(() => ({ shape: [16, 16], dtype: "f32" as const })));
  const tiled = [SMALL_TILING];
  for (const codegen of [{}, { matmulTilings: tiled }]) {
    // Chrome grants 8 storage buffers a stage unless asked for more: two members a dispatch.
    const p = lower(graph, { maxStorageBuffers: 8, ...codegen, groupKernels: true });
    assert.ok(grouped(p).length > 0, String(p));
  }
});
