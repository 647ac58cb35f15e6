/**
 * Compiling a program's new pipelines on two threads before its first run, for Mesa's CPU drivers.
 *
 * llvmpipe and lavapipe compile a pipeline's machine code at its first dispatch, on the queue's
 * single thread (a dispatch of zero workgroups compiles it too); a second device opened in the
 * same thread compiles on that same thread (measured: no overlap). Lavapipe compiles a variant of
 * a pipeline per set of values of the uniforms its loops read (Mesa's inlined uniforms): a kernel
 * reading its sizes from its shape uniform is compiled for those sizes. So what is compiled ahead
 * is each kernel's variant, dispatched with its own uniform contents (measured on a compact-tile
 * product whose contraction length is a uniform: dispatched with zeros, 36 ms ahead and still
 * 110 ms at its first run; with its sizes, 108 ms ahead and nothing at its first run). A Deno worker has its own
 * WebGPU instance and queue thread, so it compiles part of the new pipelines while this thread's
 * device compiles the rest. Mesa keeps what the worker compiled in its on-disk shader cache, where
 * this device finds it at the first dispatch and loads instead of compiling. With the cache off
 * (`MESA_SHADER_CACHE_DISABLE`) nothing would carry over, so no worker is started.
 *
 * A kernel whose placeholder bindings fail validation, a worker that cannot start or falls behind,
 * or a cache that misses leaves that kernel to compile at its first dispatch, as without this.
 */

import { parseBinding, parseUniform } from "../compiler/codegen/bindings_text.ts";
import { denoNamespace, permissionGranted, siblingWorkerModule } from "./host.ts";

/**
 * The worker's fixed start-up cost (its isolate, Vulkan instance and device, and the creation of
 * its pipelines, which this thread has done for its own), as the WGSL characters this thread
 * compiles in that time: on an even split of the default step the worker finished ≈0.3 s later.
 */
export const WORKER_HANDICAP_CHARS = 16_000;

/** The least share (WGSL characters, ≈0.13 s of compiling) worth starting a worker for. */
export const WORKER_MIN_CHARS = 8_000;

/** A buffer binding a kernel declares: its number, uniform or storage, and bytes it needs. */
export interface DeclaredBinding {
  binding: number;
  /** A uniform, or a kernel's sizes in a storage buffer (bound alike: a buffer of its values). */
  uniform: boolean;
  /** Bytes of a uniform's array (`array<vec4<i32>, N>`: 16·N); 0 for storage. */
  bytes: number;
}

/** The buffer bindings a generated kernel declares (bindings_text.ts reads each line). */
export function bindingsOf(wgsl: string): DeclaredBinding[] {
  return wgsl.split("\n").flatMap((line): DeclaredBinding[] => {
    const storage = parseBinding(line), uniform = parseUniform(line);
    if (uniform) return [{ binding: uniform.index, uniform: true, bytes: 16 * uniform.vec4s }];
    return storage ? [{ binding: storage.index, uniform: false, bytes: 0 }] : [];
  });
}

/**
 * What Mesa compiles for a kernel: its text, and the contents of its uniform (its shape or group
 * buffer: lavapipe compiles a variant per value of the uniforms its loops read).
 */
export interface Variant {
  wgsl: string;
  params?: Int32Array<ArrayBuffer>;
}

/**
 * The distinct variants among `kernels`, each with a key that names it. Sizes read from a storage
 * buffer are data, not part of what Mesa compiles: such texts have one variant.
 */
export function variantsOf(kernels: readonly Variant[]): Map<string, Variant> {
  const out = new Map<string, Variant>();
  for (const k of kernels) {
    const inlined = k.wgsl.includes("var<uniform>");
    const key = `${inlined ? k.params?.join(",") ?? "" : ""}\u0000${k.wgsl}`;
    if (!out.has(key)) out.set(key, { wgsl: k.wgsl, params: k.params });
  }
  return out;
}

/**
 * Splits texts into two lists of about equal compile time, longest first to the lighter side
 * (Mesa's compile time grows with the text); the second side is charged `handicap` characters up
 * front. The first list is this thread's. A text's variants go with it: lavapipe compiles a text's
 * first variant in full and finds most of its others already compiled (measured on the default
 * step: 21 further variants, none compiled again), which a variant on the other side would not.
 */
export function splitByCost(texts: readonly string[], handicap = 0): [string[], string[]] {
  const sides: [string[], string[]] = [[], []];
  const load = [0, handicap];
  for (const t of [...texts].sort((a, b) => b.length - a.length)) {
    const side = load[0] <= load[1] ? 0 : 1;
    sides[side].push(t);
    load[side] += t.length;
  }
  return sides;
}

/** Whether Mesa's on-disk shader cache is turned off in this process's environment. */
function shaderCacheDisabled(): boolean {
  return ["MESA_SHADER_CACHE_DISABLE", "MESA_GLSL_CACHE_DISABLE"].some((variable) => {
    // Without --allow-env the variable cannot be read (nor asked for): Mesa's default, on, holds.
    if (!permissionGranted({ name: "env", variable })) return false;
    const v = denoNamespace()!.env.get(variable);
    return v !== undefined && /^(1|t|true|y|yes)$/i.test(v.trim());
  });
}

/**
 * Whether Deno's WebGPU runs on OpenGL (`DENO_WEBGPU_BACKEND` without Vulkan): Mesa's GL driver
 * skips a dispatch of zero workgroups without compiling (measured: the first step as long either
 * way), so there is nothing to compile ahead.
 */
function onOpenGl(): boolean {
  const variable = "DENO_WEBGPU_BACKEND";
  if (!permissionGranted({ name: "env", variable })) return false;
  const v = denoNamespace()!.env.get(variable)?.toLowerCase();
  return v !== undefined && /\bgl\b/.test(v) && !v.includes("vulkan");
}

/**
 * The worker's module beside this one, where it can be read without a prompt: undefined when this
 * module runs bundled into one file (no worker module beside it) or from a remote or blob URL.
 */
function workerModule(): string | undefined {
  return siblingWorkerModule(import.meta.url, "compile_ahead.ts", "compile_worker.ts");
}

/**
 * Whether a device described by `description` compiles new pipelines ahead by default: a Mesa CPU
 * driver through Vulkan (lavapipe), in Deno (workers with WebGPU) from the source tree, with the
 * shader cache on.
 */
export function parallelCompileApplies(description: string, isFallbackAdapter: boolean): boolean {
  return isFallbackAdapter && /llvmpipe|lavapipe/i.test(description) &&
    denoNamespace() !== undefined &&
    typeof Worker !== "undefined" && workerModule() !== undefined && !shaderCacheDisabled() &&
    !onOpenGl();
}

/**
 * Dispatches zero workgroups of each variant's pipeline (`pipelines[i]` is `variants[i]`'s) in one
 * submission, with placeholder storage buffers and the variant's own uniform contents bound, and
 * waits for the queue: Mesa compiles each variant's machine code. Returns how many were
 * dispatched (a variant whose placeholders fail validation is left out).
 */
export async function dispatchEmpty(
  gpu: GPUDevice,
  pipelines: readonly GPUComputePipeline[],
  variants: readonly Variant[],
): Promise<number> {
  const declared = variants.map((v) => bindingsOf(v.wgsl));
  // One small storage buffer per binding number (no two bindings of a dispatch alias: runtime-sized
  // arrays need only their declared element); a uniform per variant, holding its contents. Every
  // error scope below is pushed, used and popped with no await between: other calls on this device
  // push their own scopes concurrently, and a scope held across an await would catch theirs.
  const storageBindings = new Set(declared.flat().filter((b) => !b.uniform).map((b) => b.binding));
  gpu.pushErrorScope("validation");
  const storage: GPUBuffer[] = [];
  for (const binding of storageBindings) {
    storage[binding] = gpu.createBuffer({
      size: 256,
      usage: GPUBufferUsage.STORAGE,
      label: `compile-ahead binding ${binding}`,
    });
  }
  const uniforms = declared.map((bindings, i) => {
    const u = bindings.find((b) => b.uniform);
    if (!u) return undefined;
    const params = variants[i].params;
    const buffer = gpu.createBuffer({
      size: Math.max(16, u.bytes, params?.byteLength ?? 0),
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
      label: "compile-ahead uniform",
    });
    if (params?.length) gpu.queue.writeBuffer(buffer, 0, params);
    return buffer;
  });
  const buffersMade = gpu.popErrorScope();
  const groups = pipelines.map((pipeline, i) => {
    gpu.pushErrorScope("validation");
    const group = gpu.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: declared[i].map(({ binding, uniform }) => ({
        binding,
        resource: { buffer: uniform ? uniforms[i]! : storage[binding] },
      })),
    });
    return gpu.popErrorScope().then((error) => (error ? undefined : group));
  });
  const [buffersFailed, ready] = await Promise.all([buffersMade, Promise.all(groups)]);
  let dispatched = 0;
  if (!buffersFailed) {
    gpu.pushErrorScope("validation");
    const encoder = gpu.createCommandEncoder({ label: "compile ahead" });
    const pass = encoder.beginComputePass();
    pipelines.forEach((pipeline, i) => {
      if (!ready[i]) return;
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, ready[i]!);
      pass.dispatchWorkgroups(0);
      dispatched++;
    });
    pass.end();
    gpu.queue.submit([encoder.finish()]);
    const [failed] = await Promise.all([gpu.popErrorScope(), gpu.queue.onSubmittedWorkDone()]);
    if (failed) dispatched = 0;
  }
  for (const b of [...storage, ...uniforms]) b?.destroy();
  return dispatched;
}

/**
 * Creates a pipeline per text of `variants` (those that fail validation are dropped with their
 * variants) and compiles each variant.
 */
export async function compileVariants(
  gpu: GPUDevice,
  variants: readonly Variant[],
): Promise<number> {
  const texts = [...new Set(variants.map((v) => v.wgsl))];
  const created = await Promise.all(texts.map((code) => {
    gpu.pushErrorScope("validation");
    const pipeline = gpu.createComputePipeline({
      layout: "auto",
      compute: { module: gpu.createShaderModule({ code }), entryPoint: "main" },
    });
    return gpu.popErrorScope().then((error) => (error ? undefined : pipeline));
  }));
  const pipelineOf = new Map(texts.map((t, i) => [t, created[i]]));
  const ok = variants.filter((v) => pipelineOf.get(v.wgsl));
  return await dispatchEmpty(gpu, ok.map((v) => pipelineOf.get(v.wgsl)!), ok);
}

/** The device a compile worker opens: the same adapter, features and limits as the caller's. */
export interface WorkerDevice {
  powerPreference: GPUPowerPreference;
  /** The caller's adapter description: a worker given another adapter compiles nothing. */
  description: string;
  features: string[];
  limits: Record<string, number>;
}

/** What the compile worker is sent. */
export interface CompileRequest extends WorkerDevice {
  variants: Variant[];
}

/** A running compile worker. */
export interface CompileWorker {
  /** How many variants it compiled; 0 if it failed, or did not finish within `ms` from now. */
  result(ms: number): Promise<number>;
  /** Stops it (idempotent); its kernels compile at their first dispatch. */
  stop(): void;
}

/** Starts a worker that compiles `request.variants` on a device of its own (undefined if it cannot). */
export function startCompileWorker(request: CompileRequest): CompileWorker | undefined {
  const module = workerModule();
  if (!module) return undefined;
  let worker: Worker;
  try {
    worker = new Worker(module, { type: "module" });
  } catch {
    return undefined;
  }
  let stopped = false;
  const stop = () => {
    if (!stopped) worker.terminate();
    stopped = true;
  };
  const done = new Promise<number>((resolve) => {
    worker.onmessage = (e: MessageEvent<{ compiled: number }>) => resolve(e.data.compiled);
    worker.onerror = (e) => {
      e.preventDefault();
      resolve(0);
    };
  });
  done.then(stop);
  worker.postMessage(request);
  return {
    stop,
    result(ms: number) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<number>((resolve) => timer = setTimeout(() => resolve(0), ms));
      return Promise.race([done, late]).finally(() => {
        clearTimeout(timer);
        stop();
      });
    },
  };
}
