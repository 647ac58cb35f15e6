/**
 * Compiling a program's new pipelines on two threads before its first run, for Mesa's CPU drivers.
 *
 * llvmpipe and lavapipe compile a pipeline's machine code at its first dispatch, on the queue's
 * single thread (a dispatch of zero workgroups compiles it too); a second device opened in the
 * same thread compiles on that same thread (measured: no overlap). A Deno worker has its own
 * WebGPU instance and queue thread, so it compiles half of the new pipelines while this thread's
 * device compiles the other half. Mesa keeps what the worker compiled in its on-disk shader cache,
 * where this device finds it at the first dispatch and loads instead of compiling. With the cache
 * off (`MESA_SHADER_CACHE_DISABLE`) nothing would carry over, so the worker is not started.
 *
 * Every step here only saves time: a kernel whose placeholder bindings fail validation, a worker
 * that cannot start, or a cache that misses leaves that kernel to compile at its first dispatch.
 */

/** New WGSL characters below which a worker's start (≈0.1 s) costs more than it saves. */
export const PARALLEL_COMPILE_MIN_CHARS = 24_000;

/** How long to wait for the worker before leaving its kernels to compile at first dispatch. */
const WORKER_TIMEOUT_MS = 120_000;

/** A binding a kernel declares: its number, and whether it is a uniform (else storage). */
export interface DeclaredBinding {
  binding: number;
  uniform: boolean;
}

/** The group-0 buffer bindings a WGSL text declares. */
export function bindingsOf(wgsl: string): DeclaredBinding[] {
  return [...wgsl.matchAll(/@group\(0\)\s*@binding\((\d+)\)\s*var<(\w+)/g)].map((m) => ({
    binding: Number(m[1]),
    uniform: m[2] === "uniform",
  }));
}

/**
 * The worker's start (its isolate, Vulkan instance and device) and its pipelines' creation, which
 * this thread has done for its own, in characters of WGSL compiled in the same time (measured on
 * the default step: the worker finished ≈0.3 s after this thread on an even split).
 */
export const WORKER_HANDICAP_CHARS = 16_000;

/**
 * Splits texts into two lists of about equal compile time, the second starting `handicap`
 * characters behind (longest first to the lighter side; Mesa's compile time grows with the
 * text). The first list is this thread's.
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

/** Deno's namespace, read through globalThis: the browser build has none (and must not name it). */
const deno = () => (globalThis as { Deno?: typeof Deno }).Deno;

/** Whether Mesa's on-disk shader cache is turned off in this process's environment. */
function shaderCacheDisabled(): boolean {
  try {
    const env = deno()!.env;
    const v = env.get("MESA_SHADER_CACHE_DISABLE") ?? env.get("MESA_GLSL_CACHE_DISABLE");
    return v !== undefined && /^(1|true|yes)$/i.test(v);
  } catch {
    return false; // no --allow-env: Mesa's default (on) holds
  }
}

/** The worker's module, beside this one (absent when this module is bundled into one file). */
const WORKER_MODULE = new URL("./compile_worker.ts", import.meta.url).href;
const fromSource = import.meta.url.endsWith("/compile_ahead.ts");

/**
 * Whether new pipelines of a device described by `description` are worth compiling on a second
 * thread: a Mesa CPU driver, in Deno (workers with WebGPU) running this module from its source
 * tree (a bundle has no worker module), with the shader cache on.
 */
export function parallelCompileApplies(description: string, isFallbackAdapter: boolean): boolean {
  return isFallbackAdapter && /llvmpipe|lavapipe/i.test(description) &&
    fromSource && deno() !== undefined && typeof Worker !== "undefined" && !shaderCacheDisabled();
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
  const buffers: GPUBuffer[] = [];
  const placeholder = (binding: number) =>
    buffers[binding] ??= gpu.createBuffer({
      size: 4096,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.UNIFORM,
      label: `compile-ahead binding ${binding}`,
    });
  const groups = await Promise.all(pipelines.map(async (pipeline, i) => {
    gpu.pushErrorScope("validation");
    const group = gpu.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: bindingsOf(texts[i]).map(({ binding }) => ({
        binding,
        resource: { buffer: placeholder(binding) },
      })),
    });
    return (await gpu.popErrorScope()) ? undefined : group;
  }));
  const encoder = gpu.createCommandEncoder({ label: "compile ahead" });
  const pass = encoder.beginComputePass();
  let dispatched = 0;
  pipelines.forEach((pipeline, i) => {
    if (!groups[i]) return;
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, groups[i]!);
    pass.dispatchWorkgroups(0);
    dispatched++;
  });
  pass.end();
  gpu.queue.submit([encoder.finish()]);
  await gpu.queue.onSubmittedWorkDone();
  buffers.forEach((b) => b?.destroy());
  return dispatched;
}

/** Creates a pipeline per text (those that fail validation are dropped) and compiles them. */
export async function compileTexts(gpu: GPUDevice, texts: readonly string[]): Promise<number> {
  const created = await Promise.all(texts.map(async (code) => {
    gpu.pushErrorScope("validation");
    const pipeline = gpu.createComputePipeline({
      layout: "auto",
      compute: { module: gpu.createShaderModule({ code }), entryPoint: "main" },
    });
    return (await gpu.popErrorScope()) ? undefined : { pipeline, code };
  }));
  const ok = created.filter((c) => c !== undefined);
  return await dispatchEmpty(gpu, ok.map((c) => c.pipeline), ok.map((c) => c.code));
}

/** What the compile worker is sent: the texts, and the device it must open to match ours. */
export interface CompileRequest {
  texts: string[];
  features: string[];
  limits: Record<string, number>;
}

/**
 * Compiles `request.texts` in a worker on a device of its own (same features and limits), and
 * resolves once it has, or once it failed or timed out (the kernels then compile where first
 * dispatched). Resolves to the number the worker compiled.
 */
export function compileInWorker(request: CompileRequest): Promise<number> {
  let worker: Worker;
  try {
    worker = new Worker(WORKER_MODULE, { type: "module" });
  } catch {
    return Promise.resolve(0);
  }
  return new Promise<number>((resolve) => {
    const timer = setTimeout(() => finish(0), WORKER_TIMEOUT_MS);
    function finish(n: number) {
      clearTimeout(timer);
      worker.terminate();
      resolve(n);
    }
    worker.onmessage = (e: MessageEvent<{ compiled: number }>) => finish(e.data.compiled);
    worker.onerror = (e) => {
      e.preventDefault();
      finish(0);
    };
    worker.postMessage(request);
  });
}
