/**
 * `jit(f)`: compile on first call per input signature (shapes, dtypes, pytree structure), run the
 * compiled Program on a WebGPU device. `f(...)` returns host arrays; `f.onDevice(...)` keeps the
 * results on the device so a training loop never round-trips its parameters through the host.
 */

import {
  type AbstractValue,
  DslError,
  flattenTree,
  formatAval,
  type Graph,
  type HostArray,
  isHostArray,
  trace,
  type TreeDef,
  unflattenTree,
} from "../dsl/mod.ts";
import {
  type CodegenOptions,
  lower,
  type LowerOptions,
  matmulProblems,
  type MatmulTiling,
  PACKED_FORMATS,
  type PackedFormat,
  type Program,
  tilingProblem,
} from "../compiler/mod.ts";
import { type Device, gpu } from "./device.ts";
import {
  DeviceArray,
  isDeviceArray,
  readArrays,
  storageBytes,
  uploadData,
} from "./device_array.ts";
import { Executable, type KernelTiming, type ProgramInput } from "./executor.ts";
import { type AutotuneOptions, tuneMatmuls } from "./autotune.ts";

/** Options of `jit`. */
export interface JitOptions {
  /** The device to run on (default: `gpu()`). */
  device?: Device | Promise<Device>;
  /** Positional arguments whose buffers the computation may overwrite (in-place updates). */
  donate?: number | readonly number[];
  /** false: no fusion (one kernel per primitive) — the baseline the benchmarks compare with. */
  fuse?: boolean;
  /** Overrides of the code generator's tunables (tile sizes, vectorisation). */
  codegen?: Partial<CodegenOptions>;
  /**
   * Time the candidate matmul kernels of each of the program's shape classes on this device when
   * it compiles, and use the fastest (runtime/autotune.ts; choices cached per adapter on disk).
   * Ignored where `codegen.matmulTuned` is given.
   */
  autotune?: boolean | AutotuneOptions;
}

/** A function compiled by `jit`: callable, plus ways to inspect and profile what it runs. */
export interface Jitted {
  /** Runs on the device and reads the results back. */
  // deno-lint-ignore no-explicit-any
  (...args: unknown[]): Promise<any>;
  /** Runs on the device and returns DeviceArrays (pytree-shaped), without reading back. */
  // deno-lint-ignore no-explicit-any
  onDevice(...args: unknown[]): Promise<any>;
  /**
   * The Program for arguments of these shapes: host or device arrays, or `{ shape, dtype }` specs
   * (with `storage: "bf16" | "f16"` for an f32 input kept packed, as a packed DeviceArray is).
   */
  lower(...specs: unknown[]): Promise<Program>;
  /** The Program a call with these arguments runs (compiled once and cached, as a call would). */
  program(...args: unknown[]): Promise<Program>;
  /**
   * Per-kernel times for these arguments (`KernelTiming`: device clock where granted, and each
   * kernel's first run; nothing donated, inputs unchanged).
   */
  profile(...args: unknown[]): Promise<KernelTiming[]>;
  /** Number of compiled signatures. */
  readonly cacheSize: number;
  /** Milliseconds spent compiling (tracing, lowering, pipeline creation), all signatures. */
  readonly compileMs: number;
}

type Leaf = HostArray | DeviceArray | number | boolean;

function isLeaf(x: unknown): x is Leaf {
  return isHostArray(x) || isDeviceArray(x) || typeof x === "number" || typeof x === "boolean";
}

/**
 * The 16-bit format of a packed leaf: a packed device array, or a `lower` spec that names its
 * `storage` (compiled into the program that reads it).
 */
function storageOf(x: unknown): PackedFormat | undefined {
  return typeof x === "object" && x !== null
    ? (x as { storage?: PackedFormat }).storage
    : undefined;
}

/**
 * The packed leaves of a call, by leaf index (none: undefined). A host f16 array is uploaded
 * packed; an f16 device array is packed or not as it lives (a program's outputs are where the
 * device has shader-f16).
 */
function packedLeaves(leaves: readonly unknown[]): Map<number, PackedFormat> | undefined {
  const packed = new Map<number, PackedFormat>();
  leaves.forEach((l, i) => {
    // A host f16 array, or a `lower` spec of one, as a call would upload it.
    const half = !isDeviceArray(l) && (l as { dtype?: unknown } | null)?.dtype === "f16";
    const s = storageOf(l) ?? (half ? "f16" : undefined);
    if (s) packed.set(i, s);
  });
  return packed.size ? packed : undefined;
}

function aval(x: Leaf): AbstractValue {
  if (typeof x === "number") return { shape: [], dtype: "f32" };
  if (typeof x === "boolean") return { shape: [], dtype: "bool" };
  return { shape: [...x.shape], dtype: x.dtype };
}

function toInput(x: Leaf): ProgramInput {
  if (typeof x === "number") return { shape: [], dtype: "f32", data: new Float32Array([x]) };
  if (typeof x === "boolean") return { shape: [], dtype: "bool", data: new Int32Array([+x]) };
  return x;
}

function treeKey(def: TreeDef): string {
  return JSON.stringify(def);
}

interface Compiled {
  program: Program;
  executable: Executable;
  outTree: TreeDef;
  donatedLeaves: Set<number>;
}

/**
 * Compiles `f` for WebGPU.
 *
 * @example const step = jit((w, x) => sum(tanh(matmul(x, w)))); await step(w, x);
 */
// deno-lint-ignore no-explicit-any
export function jit(f: (...args: any[]) => unknown, opts: JitOptions = {}): Jitted {
  const cache = new Map<string, Promise<Compiled>>();
  let compileMs = 0;
  const donateArgs = new Set(
    opts.donate === undefined ? [] : typeof opts.donate === "number" ? [opts.donate] : opts.donate,
  );
  const deviceOf = () => Promise.resolve(opts.device ?? gpu());
  /** The device's code generator settings and limits, the caller's over them, tuned if asked. */
  const tunedCodegen = async (graph: Graph, device: Device): Promise<Partial<LowerOptions>> => {
    const own = codegenFor(device);
    const base = { ...own, ...loweringLimitsFor(device), ...opts.codegen };
    // Subgroup operations and f16 bindings compile only on a device granted the feature.
    if (!device.info.features.includes("subgroups")) base.subgroupReductions = false;
    base.halfStorage = device.info.features.includes("shader-f16") &&
      (opts.codegen?.halfStorage ?? true);
    if (!opts.autotune || base.matmulTuned) return base;
    const tuning = opts.autotune === true ? {} : opts.autotune;
    const codegen = { ...own, ...opts.codegen };
    const matmulTuned = await tuneMatmuls(device, matmulProblems(graph), codegen, tuning);
    return { ...base, matmulTuned };
  };

  const compile = async (
    graph: Graph,
    leafArgs: number[],
    device: Device,
    packedInputs: Map<number, PackedFormat> | undefined,
  ): Promise<Compiled> => {
    const t0 = performance.now();
    const donatedLeaves = new Set<number>();
    leafArgs.forEach((arg, leaf) => donateArgs.has(arg) && donatedLeaves.add(leaf));
    const program = lower(graph, {
      ...await tunedCodegen(graph, device),
      maxStorageBuffers: device.maxStorageBuffers,
      fuse: opts.fuse,
      donate: donatedLeaves,
      packedInputs,
    });
    const executable = await Executable.create(device, program);
    compileMs += performance.now() - t0;
    return { program, executable, outTree: graph.outTree, donatedLeaves };
  };

  const prepare = async (args: unknown[]) => {
    const [leaves, inTree] = flattenTree(args, isLeaf, "jit");
    const device = await deviceOf();
    const avals = leaves.map(aval);
    const packed = packedLeaves(leaves);
    const avalKeys = leaves.map((_, i) => formatAval(avals[i]) + (packed?.get(i) ?? ""));
    const key = `${device.id}|${treeKey(inTree)}|${avalKeys.join(" ")}`;
    let compiled = cache.get(key);
    if (!compiled) {
      const specs = unflattenTree(inTree, avals.map((a) => ({ shape: a.shape, dtype: a.dtype })));
      const graph = trace(f, ...(specs as unknown[]));
      // Which positional argument each leaf belongs to (for donation).
      const leafArgs: number[] = [];
      if (inTree.kind === "array") {
        inTree.children.forEach((c, arg) => {
          for (let i = 0; i < countLeaves(c); i++) leafArgs.push(arg);
        });
      }
      compiled = compile(graph, leafArgs, device, packed);
      cache.set(key, compiled);
      compiled.catch(() => cache.delete(key));
    }
    const c = await compiled;
    return { c, inputs: leaves.map(toInput) };
  };

  const onDevice = async (...args: unknown[]) => {
    const { c, inputs } = await prepare(args);
    const outs = c.executable.run(inputs, c.donatedLeaves);
    return unflattenTree(c.outTree, outs);
  };

  const profile = async (...args: unknown[]) => {
    const { c, inputs } = await prepare(args);
    return await c.executable.profile(inputs);
  };

  const call = async (...args: unknown[]) => {
    const { c, inputs } = await prepare(args);
    const outs = c.executable.run(inputs, c.donatedLeaves);
    const hosts = await readArrays(outs);
    outs.forEach((o) => o.destroy());
    return unflattenTree(c.outTree, hosts);
  };

  const jitted = call as Jitted;
  jitted.onDevice = onDevice;
  jitted.profile = profile;
  jitted.program = async (...args: unknown[]) => (await prepare(args)).c.program;
  jitted.lower = async (...specs: unknown[]) => {
    const isSpec = (x: unknown) =>
      isLeaf(x) || (typeof x === "object" && x !== null && Array.isArray(
        (x as Leaf & object)
          .shape,
      ) && Object.keys(x).every((k) => k === "shape" || k === "dtype" || k === "storage"));
    const [leaves, inTree] = flattenTree(specs, isSpec as (x: unknown) => x is Leaf, "lower");
    const graph = trace(f, ...(unflattenTree(inTree, leaves.map(aval)) as unknown[]));
    const device = await deviceOf();
    // The program a call would run: with the donated leaves (in-place updates) too.
    const donate = new Set<number>();
    let leaf = 0;
    if (inTree.kind === "array") {
      inTree.children.forEach((c, arg) => {
        for (let i = 0; i < countLeaves(c); i++, leaf++) donateArgs.has(arg) && donate.add(leaf);
      });
    }
    return lower(graph, {
      ...await tunedCodegen(graph, device),
      maxStorageBuffers: device.maxStorageBuffers,
      fuse: opts.fuse,
      donate,
      packedInputs: packedLeaves(leaves),
    });
  };
  Object.defineProperty(jitted, "cacheSize", { get: () => cache.size });
  Object.defineProperty(jitted, "compileMs", { get: () => compileMs });
  return jitted;
}

function countLeaves(def: TreeDef): number {
  if (def.kind === "leaf") return 1;
  if (def.kind === "none") return 0;
  return def.children.reduce((n, c) => n + countLeaves(c), 0);
}

/**
 * Shared-memory matmul tilings a discrete GPU chooses from, largest first: 128² tiles with 8×8
 * register blocks for large products, 64² with 4×4 for mid-sized ones, 32² where a larger tile
 * would leave the device short of workgroups.
 */
export const GPU_MATMUL_TILINGS: readonly MatmulTiling[] = [
  { tileM: 128, tileN: 128, tileK: 16, threadM: 8, threadN: 8 },
  { tileM: 128, tileN: 128, tileK: 8, threadM: 8, threadN: 8 },
  { tileM: 64, tileN: 64, tileK: 16, threadM: 4, threadN: 4 },
  { tileM: 32, tileN: 32, tileK: 16, threadM: 4, threadN: 4 },
];

/** The code-generator tunables of a CPU adapter (llvmpipe/lavapipe). */
export const CPU_CODEGEN: Readonly<Partial<CodegenOptions>> = {
  // Grid-stride kernels spread over at most 1024 workgroups: a*b+c over 4M f32 ran at 3.6 GB/s
  // with 64 (Mesa's four threads idled on the tail), 5.0–5.6 with 512–1024, 2.9 with one element
  // per invocation (65,535); the default HD-PiSSA step is even (paired 1.002 over 20 steps).
  maxWorkgroups: 1024,
  matmulRowBlock: 32,
  matmulColumnGroups: 4,
  matmulWorkgroup: [8, 1],
  // x·Wᵀ, 3072×768×3001 on lavapipe: 16×16 per invocation 36 GFLOP/s (compiled in 0.9 s),
  // 8×4 13; NN with 32×16 tiles 24 (2.7 s to compile): read Wᵀ in place, never copy it.
  matmulNtTile: { rows: 16, cols: 16 },
  matmulNtInPlace: true,
  // Xᵀ·Y with X in place (TN, vec4 rows of X and Y) instead of a copy of Xᵀ: the default HD-PiSSA
  // step 8–9% faster on lavapipe, 3 kernels fewer.
  matmulTnInPlace: true,
  // Attention heads split from [b, t, h·d] (V, and dO in the backward pass) read in place by
  // the batched products instead of being copied into [b, h, t, d] first.
  matmulStridedOperands: true,
  // Off: summing the input gradient of sibling layers (q, k, v; gate, up) into one kernel each
  // takes the default HD-PiSSA step from 284 to 274 kernels and makes it 1.1% faster, but its
  // 2- and 3-product kernels cost Mesa 1.3 s more to compile (first step 6.2 → 7.4–7.7 s, near
  // the 8 s bound); sharing one unroll budget among the products compiles as fast but runs 4%
  // slower. Fewer dispatches matter more on a GPU: `gpuCodegen` sums them.
  matmulSumProducts: false,
  // Off for the same reason: computing a product beside the one whose epilogue reads it (the up
  // projection beside the gate, and each input gradient beside the sibling's it adds) takes the
  // default HD-PiSSA step from 281 to 270 kernels at an even step speed (paired 0.998 and 0.969),
  // but its two-product kernels made the cold first step 1.3 s longer (5.0 → 6.3 s, 43 pipelines).
  matmulCoProducts: false,
  // Off: attention's scores computed inside their softmax (fusion rule 10) made the default step
  // 1.90× slower here (paired, 30 steps): each lane loops over its row's dot products.
  inlineProducts: 0,
  // Off: a workgroup per row (rows_workgroup.ts) made the default step 1.56× slower here (paired,
  // 30 steps): llvmpipe runs a workgroup's invocations as SIMD lanes, and its barriers are costly.
  rowWorkgroup: 0,
  // Tiles numbered along x: 144 output columns in tiles of 16 kept 9 of 16 lanes busy; the
  // default HD-PiSSA step 15–16% faster on lavapipe.
  matmulFlatLanes: true,
  // The rank-r projections and merges (fewer than 4M multiply-adds each) with a quarter of the
  // unroll (`matmulCompactUnroll` 256): their kernels compiled in about 110 ms instead of 300–440
  // (about 0.9 s off the default first step). Paired, the step is 0.6–1.5% slower with it.
  matmulCompactWork: 1 << 22,
  // Off: a grouped dispatch (kernel_groups.ts) reaches each member's bindings through a switch
  // on the member, and llvmpipe runs a switch as masked code for every case. The default HD-PiSSA
  // step went from 281 to 157 kernels but ran 22% slower (paired ratio 1.218 over 30 steps), its
  // projections 2× slower; a dispatch here costs ≈30 µs, so 124 fewer saved ≈4 ms of 290.
  groupKernels: false,
  // Sizes of shared texts in a read-only storage buffer: as a uniform, Mesa inlined them and
  // compiled a variant per member, again at each switch between members (≈5 ms a dispatch); the
  // transformer block's step ran 80 ms instead of 32.
  shapeBuffer: "storage",
  // Every product may share its text across sizes. With `1 << 22` (products past 4M multiply-adds
  // keep their main loop's literals) the default HD-PiSSA step ran 3.6% faster (paired 0.964 over
  // 20 steps), but at 41 pipelines instead of 35 its cold first step took 2.65–2.9 s against
  // 1.7–1.8 (3.6 s on a busy host): too close to the 3 s for a default. Long runs on a
  // warm Mesa cache may set it.
  liftMatmulLoopsUpTo: Infinity,
};

/**
 * Code-generator tunables per kind of device. A CPU adapter (llvmpipe/lavapipe) runs few, huge
 * invocations best (≈1 µs per workgroup, big register tiles, no workgroup memory); a GPU wants
 * many small ones and shared-memory matmul tiles, those its limits allow.
 */
export function codegenFor(device: Device): Partial<CodegenOptions> {
  if (device.info.isFallbackAdapter) return { ...CPU_CODEGEN };
  return gpuCodegen(device.info.limits);
}

/**
 * The code-generator tunables of a GPU with these limits: small register tiles in 16×16
 * workgroups, the shared-memory tilings the limits allow, every operand read where it lies
 * (the tiled kernel loads NN, NT, TN and split heads coalesced, so no layout copies), the input
 * gradients of sibling layers summed in one kernel, a product computed beside the one whose
 * epilogue reads it, long rows reduced by a workgroup each, attention's scores computed inside their
 * softmax, and independent kernels of one pipeline grouped into one dispatch.
 */
export function gpuCodegen(
  limits: { maxComputeWorkgroupStorageSize: number; maxComputeInvocationsPerWorkgroup: number },
): Partial<CodegenOptions> {
  return {
    // Uniform sizes, lifted everywhere: what one pipeline per text saves in compile time is what
    // the ≤ 0.3 s first step on a GPU is about (the CPU adapter's reasons, CPU_CODEGEN, are
    // Mesa's).
    shapeBuffer: "uniform",
    liftMatmulLoopsUpTo: Infinity,
    maxWorkgroups: 65535,
    matmulRowBlock: 4,
    matmulColumnGroups: 1,
    matmulWorkgroup: [16, 16],
    matmulTilings: GPU_MATMUL_TILINGS.filter((t) => !tilingProblem(t, limits)),
    matmulMinWorkgroups: 128,
    matmulNtInPlace: true,
    matmulTnInPlace: true,
    matmulStridedOperands: true,
    matmulSumProducts: true,
    matmulCoProducts: true,
    rowWorkgroup: Math.min(256, limits.maxComputeInvocationsPerWorkgroup),
    inlineProducts: 128,
    inPlaceBindings: true,
    groupKernels: true,
  };
}

/** The device limits the compiler plans every kernel and buffer against. */
export function loweringLimitsFor(device: Device): Partial<LowerOptions> {
  const { limits, maxLoopIterations } = device.info;
  return {
    maxWorkgroupsPerDimension: limits.maxComputeWorkgroupsPerDimension,
    maxLoopIterations,
    maxBindingBytes: limits.maxStorageBufferBindingSize,
    bindingAlignment: limits.minStorageBufferOffsetAlignment,
    maxBufferBytes: limits.maxBufferSize,
  };
}

/** Options of `toDevice`. */
export interface ToDeviceOptions {
  /**
   * Keep f32 leaves packed in a 16-bit format (each value rounded to nearest even): one format
   * for every f32 leaf, or a format per leaf index of the flattened tree (undefined: f32). Every
   * kernel that reads such an array widens it; jit compiles a program per storage.
   */
  storage?: PackedFormat | ((leaf: number) => PackedFormat | undefined);
}

/**
 * Uploads a host array (or pytree of them) to the device: every host leaf gets its own buffer (a
 * host array appearing twice becomes two device arrays); device arrays already there stay as they
 * are; device arrays of another device are copied over (in their storage).
 */
export async function toDevice(
  tree: unknown,
  device?: Device,
  opts: ToDeviceOptions = {},
): Promise<unknown> {
  const d = device ?? await gpu();
  const isArray = (x: unknown): x is HostArray | DeviceArray => isHostArray(x) || isDeviceArray(x);
  const [leaves, def] = flattenTree(tree, isArray, "toDevice");
  const moving = leaves.filter((l): l is DeviceArray => isDeviceArray(l) && l.device !== d);
  const fetched = new Map(moving.map((l, i) => [l, i]));
  const fromOther = moving.length ? await readArrays(moving) : [];
  const hosts = leaves.map((l) =>
    isDeviceArray(l) ? (l.device === d ? undefined : fromOther[fetched.get(l)!]) : l
  );
  const known = (s: PackedFormat | undefined) => {
    if (s !== undefined && !PACKED_FORMATS.includes(s)) {
      throw new DslError(
        "toDevice",
        `storage ${JSON.stringify(s)} is not one of ${PACKED_FORMATS.join(", ")}`,
      );
    }
    return s;
  };
  const storage = leaves.map((l, i) => {
    const s = isDeviceArray(l)
      ? l.storage
      : known(typeof opts.storage === "function" ? opts.storage(i) : opts.storage);
    const dtype = hosts[i]?.dtype;
    return dtype === "f32" ? s : dtype === "f16" ? "f16" : undefined;
  });
  const sizes = hosts.flatMap((h, i) => h ? [storageBytes(h.data.length, storage[i])] : []);
  const buffers = await d.createBuffers(sizes, "toDevice");
  let next = 0;
  const arrays = leaves.map((l, i) => {
    const host = hosts[i];
    if (!host) return l as DeviceArray;
    const buffer = buffers[next++];
    const s = storage[i];
    const data = uploadData(host, s);
    if (host.data.length) d.gpu.queue.writeBuffer(buffer, 0, data); // empty: Deno would panic
    return new DeviceArray(d, buffer, [...host.shape], host.dtype, s);
  });
  return unflattenTree(def, arrays);
}

/** Reads a pytree of DeviceArrays back to host arrays (one submission). */
export async function toHost(tree: unknown): Promise<unknown> {
  const [leaves, def] = flattenTree(tree, isDeviceArray, "toHost");
  return unflattenTree(def, await readArrays(leaves));
}
