/**
 * Compiling a program's new pipelines on two threads before its first run, for Mesa's CPU drivers.
 *
 * llvmpipe and lavapipe compile a pipeline's machine code at its first dispatch, on the queue's
 * single thread (a dispatch of zero workgroups compiles it too); a second device opened in the
 * same thread compiles on that same thread (measured: no overlap). A Deno worker has its own
 * WebGPU instance and queue thread, so it compiles part of the new pipelines while this thread's
 * device compiles the rest. Mesa keeps what the worker compiled in its on-disk shader cache, where
 * this device finds it at the first dispatch and loads instead of compiling. With the cache off
 * (`MESA_SHADER_CACHE_DISABLE`) nothing would carry over, so no worker is started.
 *
 * A kernel whose placeholder bindings fail validation, a worker that cannot start or falls behind,
 * or a cache that misses leaves that kernel to compile at its first dispatch, as without this.
 */

import { parseBinding, parseUniform } from "../compiler/codegen/bindings_text.ts";
import { denoNamespace, permissionGranted } from "./host.ts";

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
  uniform: boolean;
  /** Bytes of a uniform's array (`array<vec4<i32>, N>`: 16·N); 0 for storage. */
  bytes: number;
}

/** The buffer bindings a generated kernel declares (bindings_text.ts reads each line). */
export function bindingsOf(wgsl: string): DeclaredBinding[] {
  return wgsl.split("\n").flatMap((line): DeclaredBinding[] => {
    const storage = parseBinding(line), uniform = parseUniform(line);
    if (storage) return [{ binding: storage.index, uniform: false, bytes: 0 }];
    return uniform ? [{ binding: uniform.index, uniform: true, bytes: 16 * uniform.vec4s }] : [];
  });
}

/**
 * Splits texts into two lists of about equal compile time, longest first to the lighter side
 * (Mesa's compile time grows with the text); the second side is charged `handicap` characters up
 * front. The first list is this thread's.
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
  try {
    if (!import.meta.url.endsWith("/compile_ahead.ts")) return undefined;
    const url = new URL("./compile_worker.ts", import.meta.url);
    if (url.protocol !== "file:") return undefined;
    return permissionGranted({ name: "read", path: decodeURIComponent(url.pathname) })
      ? url.href
      : undefined;
  } catch {
    return undefined;
  }
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
 * Dispatches zero workgroups of each pipeline in one submission, with placeholder buffers bound,
 * and waits for the queue: Mesa compiles each pipeline's machine code. Returns how many were
 * dispatched (a pipeline whose placeholders fail validation is left out).
 */
export async function dispatchEmpty(
  gpu: GPUDevice,
  pipelines: readonly GPUComputePipeline[],
  texts: readonly string[],
): Promise<number> {
  const declared = texts.map(bindingsOf);
  // One buffer per binding number (no two bindings of a dispatch alias), as large as any kernel
  // declares it. Every error scope below is pushed, used and popped with no await between: other
  // calls on this device push their own scopes concurrently, and a scope held across an await
  // would catch theirs.
  const bytes: number[] = [];
  for (const b of declared.flat()) bytes[b.binding] = Math.max(bytes[b.binding] ?? 256, b.bytes);
  gpu.pushErrorScope("validation");
  const buffers = bytes.map((size, binding) =>
    gpu.createBuffer({
      size,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.UNIFORM,
      label: `compile-ahead binding ${binding}`,
    })
  );
  const buffersMade = gpu.popErrorScope();
  const groups = pipelines.map((pipeline, i) => {
    gpu.pushErrorScope("validation");
    const group = gpu.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: declared[i].map(({ binding }) => ({
        binding,
        resource: { buffer: buffers[binding] },
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
  buffers.forEach((b) => b.destroy());
  return dispatched;
}

/** Creates a pipeline per text (those that fail validation are dropped) and compiles them. */
export async function compileTexts(gpu: GPUDevice, texts: readonly string[]): Promise<number> {
  const created = await Promise.all(texts.map((code) => {
    gpu.pushErrorScope("validation");
    const pipeline = gpu.createComputePipeline({
      layout: "auto",
      compute: { module: gpu.createShaderModule({ code }), entryPoint: "main" },
    });
    return gpu.popErrorScope().then((error) => (error ? undefined : { pipeline, code }));
  }));
  const ok = created.filter((c) => c !== undefined);
  return await dispatchEmpty(gpu, ok.map((c) => c.pipeline), ok.map((c) => c.code));
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
  texts: string[];
}

/** A running compile worker. */
export interface CompileWorker {
  /** How many texts it compiled; 0 if it failed, or did not finish within `ms` from now. */
  result(ms: number): Promise<number>;
  /** Stops it (idempotent); its kernels compile at their first dispatch. */
  stop(): void;
}

/** Starts a worker that compiles `request.texts` on a device of its own (undefined if it cannot). */
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
