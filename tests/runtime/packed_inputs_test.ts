/**
 * f32 inputs stored packed in 16 bits (bf16, f16) on the device: every template that reads a
 * buffer widens them in the kernel (scalar loads, vec4 matmul loads, shared-memory tile loads,
 * windowed and range bindings). Each program runs twice on the device: once with the inputs
 * packed, once in f32 holding the same rounded values; the arithmetic is the same, so the results
 * agree to a few ULPs, and the packed program binds half the bytes.
 */

import * as dsl from "../../mod.ts";
import {
  type CodegenOptions,
  type Device,
  DeviceArray,
  DslError,
  gpu,
  type HostArray,
  jit,
  type JitOptions,
  lower,
  type PackedFormat,
  roundedTo,
  type Tensor,
  toDevice,
  trace,
} from "../../mod.ts";
import assert from "node:assert/strict";
import { assertTreeMatches, checkAsyncProperty, fc, seeded, type Tol } from "./jit_helpers.ts";
import { SMALL_TILING } from "../helpers/matmul_configs.ts";

// deno-lint-ignore no-explicit-any
type Fn = (...args: any[]) => unknown;

/** The same rounded values read packed or from f32: the same arithmetic, up to fma contraction. */
const SAME: Tol = { rtol: 1e-6, atol: 1e-6, scaled: true };

const rounded = (format: PackedFormat, x: HostArray): HostArray => ({
  ...x,
  data: roundedTo(format, x.data),
});

/**
 * Runs `f` with the arguments in `packed` uploaded in `format` and again in f32 with the same
 * rounded values; returns both programs for the caller's checks on what they bind.
 */
async function checkPacked(
  f: Fn,
  args: HostArray[],
  packed: number[],
  format: PackedFormat,
  label: string,
  opts: JitOptions & { device?: Device } = {},
) {
  const device = opts.device ?? await gpu();
  const f32Args = args.map((a, i) => (packed.includes(i) ? rounded(format, a) : a));
  const packedArgs = await Promise.all(
    args.map(async (a, i) =>
      packed.includes(i) ? await toDevice(a, device, { storage: format }) as DeviceArray : a
    ),
  );
  const jitted = jit(f, { ...opts, device });
  const want = await jit(f, { ...opts, device })(...f32Args);
  const got = await jitted(...packedArgs);
  const program = await jitted.program(...packedArgs);
  const plain = await jit(f, { ...opts, device }).program(...f32Args);
  try {
    assertTreeMatches(got, want, SAME, `${label} (${format}) packed vs f32`);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${program.dump()}`);
  }
  packed.forEach((i) => {
    const slot = program.slots[program.inputSlots[i]];
    assert.equal(slot.packed, format, `${label}: input ${i} is packed`);
    assert.equal(slot.bytes, 4 * Math.max(1, Math.ceil(args[i].data.length / 2)));
  });
  assert.ok(
    program.kernels.some((k) => k.wgsl.includes(`${format}_`)),
    `${label}: some kernel widens ${format}`,
  );
  assert.ok(program.peakBytes < plain.peakBytes, `${label}: packed peak below f32's`);
  packedArgs.forEach((a) => a instanceof DeviceArray && a.destroy());
  return { program, plain };
}

const FORMATS: PackedFormat[] = ["bf16", "f16"];

Deno.test("packed inputs: elementwise, reductions and gathers widen in the kernel", async () => {
  const idx: HostArray = {
    shape: [9],
    dtype: "i32",
    data: Int32Array.from([0, 3, 39, 7, 7, 12, 1, 38, 20]),
  };
  const cases: [string, Fn, HostArray[], number[]][] = [
    // Odd sizes: the last word holds one element.
    ["tanh(3x) + y over [7, 5]", (x: Tensor, y: Tensor) => dsl.add(dsl.tanh(dsl.mul(x, 3)), y), [
      seeded([7, 5], 1),
      seeded([7, 5], 2),
    ], [0, 1]],
    ["row sums and column max over [9, 11]", (x: Tensor) => [dsl.sum(x, 1), dsl.max(x, 0)], [
      seeded([9, 11], 3, -4, 4),
    ], [0]],
    ["softmax of a packed row", (x: Tensor) => dsl.softmax(x), [seeded([5, 13], 4, -3, 3)], [0]],
    ["an embedding gather", (t: Tensor) => dsl.take(t, idx, 0), [seeded([40, 6], 5)], [0]],
    ["a transposed, sliced view", (x: Tensor) => dsl.slice(dsl.transpose(x), [1, 2], [5, 7]), [
      seeded([9, 6], 6),
    ], [0]],
  ];
  for (const format of FORMATS) {
    for (const [label, f, args, packed] of cases) await checkPacked(f, args, packed, format, label);
  }
});

Deno.test("packed inputs: matmul operands through the vec4, generic and shared-memory templates", async () => {
  const nt = (x: Tensor, w: Tensor) => dsl.matmul(x, dsl.transpose(w));
  const nn = (x: Tensor, w: Tensor) => dsl.matmul(x, w);
  const tn = (x: Tensor, w: Tensor) => dsl.matmul(dsl.transpose(x), w);
  const cases: [string, Fn, number[], number[], number[]][] = [
    ["x·Wᵀ (vec4 NT, W packed)", nt, [12, 32], [36, 32], [1]],
    ["x·Wᵀ (both packed)", nt, [12, 32], [36, 32], [0, 1]],
    ["x·Wᵀ with K = 30 (generic)", nt, [12, 30], [20, 30], [1]],
    ["x·W (vec4 NN, W packed)", nn, [12, 32], [32, 64], [1]],
    ["x·W (vec4 NN, x packed)", nn, [16, 32], [32, 64], [0]],
    ["xᵀ·W (TN, both packed)", tn, [24, 12], [24, 16], [0, 1]],
    ["x·W with odd sizes", nn, [5, 7], [7, 3], [0, 1]],
  ];
  const tiled: Partial<CodegenOptions> = {
    matmulTilings: [SMALL_TILING],
  };
  for (const format of FORMATS) {
    for (const [label, f, sa, sb, packed] of cases) {
      const args = [seeded(sa, 10), seeded(sb, 11)];
      await checkPacked(f, args, packed, format, label);
      const { program } = await checkPacked(f, args, packed, format, `${label}, tiled`, {
        codegen: tiled,
      });
      if (label === "x·W (vec4 NN, x packed)") {
        // 16 | M, N and 8 | K: the tiles load both operands as vectors, the packed one widened.
        const k = program.kernels.find((k) => k.wgsl.includes("var<workgroup>"));
        assert.ok(k?.wgsl.includes(`${format}_x4(`), `${label}: vector tile loads of packed x`);
      }
    }
  }
});

Deno.test("packed inputs over the device's binding limit: windows and range bindings", async () => {
  // 512-byte bindings: a packed [40, 16] table (1,280 bytes) takes 3 windows of 256 elements.
  const small = await gpu({ limits: { maxStorageBufferBindingSize: 512 } });
  const idx: HostArray = {
    shape: [12],
    dtype: "i32",
    data: Int32Array.from({ length: 12 }, (_, i) => (i * 7) % 40),
  };
  const head = (t: Tensor, h: Tensor) => [dsl.take(t, idx, 0), dsl.matmul(h, dsl.transpose(t))];
  // 16 KiB bindings: a packed [600, 32] table (38,400 bytes) is read by the vec4 NT kernel in
  // blocks of its rows, each bound as a range (a tied head over a vocabulary).
  const mid = await gpu({ limits: { maxStorageBufferBindingSize: 16384 } });
  const vec4: Partial<CodegenOptions> = { matmulNtTile: { rows: 16, cols: 16 } };
  for (const format of FORMATS) {
    const a = await checkPacked(
      head,
      [seeded([40, 16], 20), seeded([6, 16], 21)],
      [0],
      format,
      "windowed table",
      {
        device: small,
      },
    );
    assert.ok(a.program.kernels.some((k) => k.ranges?.some((r) => r !== undefined)), "windows");
    const b = await checkPacked(
      (h: Tensor, t: Tensor) => dsl.matmul(h, dsl.transpose(t)),
      [seeded([8, 32], 22), seeded([600, 32], 23)],
      [1],
      format,
      "tied head in row blocks",
      { device: mid, codegen: vec4 },
    );
    const ranged = b.program.kernels.filter((k) => k.ranges?.some((r) => r !== undefined));
    assert.ok(ranged.length > 0, "range bindings");
  }
  small.destroy();
  mid.destroy();
});

Deno.test("packed inputs: random shapes, both formats, values against f32 reads", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      fc.constantFrom(...FORMATS),
      fc.integer({ min: 1, max: 9 }),
      fc.integer({ min: 1, max: 40 }),
      fc.integer({ min: 1, max: 24 }),
      fc.integer({ min: 0, max: 1000 }),
      async (format, m, k, n, seed) => {
        const f = (x: Tensor, w: Tensor, c: Tensor) =>
          dsl.add(dsl.matmul(x, dsl.transpose(w)), dsl.sum(dsl.mul(c, c), 1, { keepDims: true }));
        const args = [
          seeded([m, k], seed),
          seeded([n, k], seed + 1, -2, 2),
          seeded([m, 3], seed + 2),
        ];
        await checkPacked(f, args, [1, 2], format, `[${m},${k}]·[${n},${k}]ᵀ`);
      },
    ),
    { numRuns: 12 },
  );
});

Deno.test("a packed input passed through or donated stays packed; bad packings are named", async () => {
  const device = await gpu();
  const x = seeded([5, 3], 30);
  const w = await toDevice(x, device, { storage: "bf16" }) as DeviceArray;
  assert.equal(w.storage, "bf16");
  assert.equal(w.bytes, 32);
  assert.deepEqual(Array.from((await w.toHost()).data), Array.from(roundedTo("bf16", x.data)));
  const f = (a: Tensor, b: Tensor) => [a, dsl.mul(a, b)];
  for (const donate of [[], [0]]) {
    const jitted = jit(f, { device, donate });
    const input = await toDevice(x, device, { storage: "bf16" }) as DeviceArray;
    const [same, prod] = await jitted.onDevice(input, seeded([5, 3], 31)) as DeviceArray[];
    assert.equal(same.storage, "bf16", `donate ${donate}: the passed-through array is packed`);
    assert.equal(prod.storage, undefined);
    assert.equal(input.deleted, donate.length > 0);
    assert.deepEqual(Array.from((await same.toHost()).data), Array.from(roundedTo("bf16", x.data)));
    same.destroy(), prod.destroy(), input.destroy();
  }
  // The program a packed signature compiles is a different one from the f32 signature's.
  const g = jit((a: Tensor) => dsl.exp(a), { device });
  await g(x);
  await g(w);
  assert.equal(g.cacheSize, 2);
  w.destroy();
  // An unknown storage is refused at the upload; packing an i32 input, or an input that does not
  // exist, is an error naming it.
  await assert.rejects(
    () => toDevice(x, device, { storage: "f8" as PackedFormat }),
    (e) => e instanceof DslError && e.op === "toDevice" && e.message.includes('"f8"'),
  );
  const graph = trace((i: Tensor) => dsl.add(i, 1), { shape: [4], dtype: "i32" });
  for (
    const [packed, part] of [[new Map([[0, "bf16"]]), "i32[4]"], [
      new Map([[3, "f16"]]),
      "no input 3",
    ]] as const
  ) {
    assert.throws(
      () =>
        lower(graph, { maxStorageBuffers: 8, packedInputs: packed as Map<number, PackedFormat> }),
      (e) => e instanceof DslError && e.message.includes(part),
    );
  }
});
