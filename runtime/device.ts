/**
 * WebGPU devices: one adapter per device (a device request consumes its adapter), the adapter's
 * maximum limits requested, errors captured in scopes and turned into exceptions that say what
 * failed, `device.lost` and uncaptured errors recorded and reported on the next use, and compute
 * pipelines cached by their WGSL text.
 */

import {
  dispatchEmpty,
  parallelCompileApplies,
  splitByCost,
  startCompileWorker,
  variantsOf,
  WORKER_HANDICAP_CHARS,
  WORKER_MIN_CHARS,
  type WorkerDevice,
} from "./compile_ahead.ts";
import { withMesaThreads } from "./host.ts";

/** The WebGPU limits a device requests at the adapter's maximum and reports in `DeviceInfo`. */
export const LIMIT_NAMES = [
  "maxStorageBuffersPerShaderStage",
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxBindGroups",
  "maxBindingsPerBindGroup",
  "maxUniformBuffersPerShaderStage",
  "maxUniformBufferBindingSize",
  "minStorageBufferOffsetAlignment",
] as const;

/** The WebGPU limits the compiler and runtime rely on, as granted to the device. */
export type DeviceLimits = Record<(typeof LIMIT_NAMES)[number], number>;

/** What the adapter says about itself, and the device's features and limits. */
export interface DeviceInfo {
  /** The adapter's description (or device name; "unknown" when both are empty). */
  description: string;
  /** The adapter's vendor. */
  vendor: string;
  /** The adapter's architecture. */
  architecture: string;
  /** Whether it is a software fallback adapter. */
  isFallbackAdapter: boolean;
  /** Enabled features, sorted. */
  features: string[];
  /** The granted limits (the adapter's maxima, or lower where `DeviceOptions.limits` says). */
  limits: DeviceLimits;
  /**
   * Loop iterations one invocation may run in total, measured at open (Infinity when the probe
   * found no bound). Mesa's llvmpipe and lavapipe end an invocation silently after 65,535; the
   * compiler keeps every kernel under it.
   */
  maxLoopIterations: number;
}

/** Options of `Device.open` and `gpu`. */
export interface DeviceOptions {
  /** Which adapter to ask for (default "high-performance"). */
  powerPreference?: "low-power" | "high-performance";
  /** Cap the storage buffers per kernel below the device's (to test the fusion limit). */
  maxStorageBuffers?: number;
  /**
   * Limits to report below the granted ones, so that the compiler plans for a smaller device
   * (tests run every split path at small sizes this way).
   */
  limits?: Partial<DeviceLimits> & { maxLoopIterations?: number };
  /**
   * Compile a program's new pipelines on two threads before its first run (see
   * compile_ahead.ts). Default: on for Mesa's CPU drivers with their shader cache on, in Deno
   * running the source tree (a bundle has no worker module).
   */
  compileAhead?: boolean;
}

/** Iterations of the loop-budget probe: a bound above this counts as none. */
const LOOP_PROBE = 1 << 20;

/**
 * Runs one invocation of a counting loop of LOOP_PROBE iterations and reads back how many ran:
 * fewer means the driver bounds loops (gallivm's loop limiter, shared by all loops of a shader).
 */
async function probeLoopBudget(device: GPUDevice): Promise<number> {
  const code = `@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(1)
fn main() {
  var c = 0u;
  for (var i = 0u; i < ${LOOP_PROBE}u; i++) { c = c + 1u; }
  out[0] = c;
}`;
  const pipeline = await device.createComputePipelineAsync({
    layout: "auto",
    compute: {
      module: device.createShaderModule({ code, label: "loop probe" }),
      entryPoint: "main",
    },
  });
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;
  const out = device.createBuffer({ size: 4, usage });
  const read = device.createBuffer({
    size: 4,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(
    0,
    device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: out } }],
    }),
  );
  pass.dispatchWorkgroups(1);
  pass.end();
  encoder.copyBufferToBuffer(out, 0, read, 0, 4);
  device.queue.submit([encoder.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const ran = new Uint32Array(read.getMappedRange().slice(0))[0];
  read.unmap();
  out.destroy();
  read.destroy();
  return ran >= LOOP_PROBE ? Infinity : ran;
}

/** An adapter's description, or its device name where that is empty ("unknown" when both are). */
export const adapterDescription = (info: GPUAdapterInfo): string =>
  info.description || info.device || "unknown";

let nextDeviceId = 0;
/** Bytes of recycled buffers a device keeps for reuse. */
const MAX_POOLED_BYTES = 256 * 1024 * 1024;

/** A WebGPU device with its own adapter, a pipeline cache, a buffer pool and error reporting. */
export class Device {
  /** A process-wide unique id, in opening order. */
  readonly id = nextDeviceId++;
  private readonly pipelines = new Map<string, Promise<GPUComputePipeline>>();
  /** Whether `pipelinesFor` compiles new pipelines ahead (settable: a profile turns it off). */
  compileAheadEnabled = false;
  /**
   * Variants (a text with its uniform contents) compiled ahead so far: on this thread, and in
   * workers (compile_ahead.ts).
   */
  readonly compiledAhead = { here: 0, worker: 0 };
  /** Variants a program of this device has held since compiling ahead was on (by variantsOf key). */
  private variantsSeen = new Set<string>();
  private lostReason: string | undefined;
  private uncaptured: string | undefined;

  private constructor(
    readonly gpu: GPUDevice,
    readonly info: DeviceInfo,
    /** Storage buffers a kernel may bind (≤ the device limit). */
    readonly maxStorageBuffers: number,
    /** The adapter, features and limits the device was opened with (a compile worker's match). */
    private readonly request: WorkerDevice,
  ) {
    gpu.lost.then((info) => {
      this.lostReason = `${info.reason}: ${info.message}`;
    });
    gpu.addEventListener("uncapturederror", (e) => {
      this.uncaptured = (e as GPUUncapturedErrorEvent).error.message;
    });
  }

  /** Opens a new device on its own adapter. */
  static async open(opts: DeviceOptions = {}): Promise<Device> {
    if (typeof navigator === "undefined" || !navigator.gpu) {
      throw new Error("WebGPU is not available in this runtime (navigator.gpu is missing)");
    }
    const { adapter, device, requiredLimits, requiredFeatures } = await withMesaThreads(
      async () => {
        const adapter = await navigator.gpu.requestAdapter({
          powerPreference: opts.powerPreference ?? "high-performance",
        });
        if (!adapter) {
          throw new Error(
            "Deno" in globalThis
              ? "no WebGPU adapter found; on a machine without a GPU install Mesa " +
                "(apt-get install mesa-vulkan-drivers libvulkan1) or set DENO_WEBGPU_BACKEND=gl"
              : "no WebGPU adapter found: this browser exposes navigator.gpu but no usable GPU " +
                "(check chrome://gpu; headless Chromium needs --enable-unsafe-webgpu)",
          );
        }
        const requiredLimits: Record<string, number> = {};
        for (const name of LIMIT_NAMES) {
          const v = (adapter.limits as unknown as Record<string, number>)[name];
          if (typeof v === "number") requiredLimits[name] = v;
        }
        const wanted = ["shader-f16", "timestamp-query", "subgroups"] as GPUFeatureName[];
        const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
        const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
        return { adapter, device, requiredLimits, requiredFeatures };
      },
    );
    const limits = {} as DeviceLimits;
    for (const name of LIMIT_NAMES) {
      const granted = (device.limits as unknown as Record<string, number>)[name];
      limits[name] = Math.min(granted, opts.limits?.[name] ?? Infinity);
    }
    const loopBudget = Math.min(
      await probeLoopBudget(device),
      opts.limits?.maxLoopIterations ?? Infinity,
    );
    const ai = adapter.info;
    const info: DeviceInfo = {
      description: adapterDescription(ai),
      vendor: ai.vendor,
      architecture: ai.architecture,
      isFallbackAdapter: (ai as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter ??
        false,
      features: [...device.features].sort(),
      limits,
      maxLoopIterations: loopBudget,
    };
    const maxStorage = Math.min(
      limits.maxStorageBuffersPerShaderStage,
      opts.maxStorageBuffers ?? Infinity,
    );
    const opened = new Device(device, info, maxStorage, {
      powerPreference: opts.powerPreference ?? "high-performance",
      description: info.description,
      features: requiredFeatures,
      limits: requiredLimits,
    });
    opened.compileAheadEnabled = opts.compileAhead ??
      parallelCompileApplies(info.description, info.isFallbackAdapter);
    return opened;
  }

  /** Throws if the device was lost or an error escaped the error scopes. */
  check(): void {
    if (this.lostReason) throw new Error(`WebGPU device lost (${this.lostReason})`);
    if (this.uncaptured) {
      const msg = this.uncaptured;
      this.uncaptured = undefined;
      throw new Error(`WebGPU error: ${msg}`);
    }
  }

  /** A compute pipeline for `wgsl`, compiled once per text, with compiler messages on failure. */
  pipeline(wgsl: string, label: string): Promise<GPUComputePipeline> {
    let p = this.pipelines.get(wgsl);
    if (!p) {
      p = this.compile(wgsl, label);
      this.pipelines.set(wgsl, p);
      p.catch(() => this.pipelines.delete(wgsl));
    }
    return p;
  }

  /**
   * Pipelines for a program's kernels, in order. Where `compileAheadEnabled` and the variants new
   * to this device (a text with its uniform contents: Mesa compiles one per set of uniform values
   * its loops read) give a worker a share worth its start, their machine code is compiled before
   * this returns, part here and part in a worker (compile_ahead.ts); otherwise each compiles at
   * its first dispatch.
   */
  async pipelinesFor(
    kernels: readonly { wgsl: string; name: string; params?: Int32Array<ArrayBuffer> }[],
  ): Promise<GPUComputePipeline[]> {
    const fresh = this.compileAheadEnabled
      ? [...variantsOf(kernels)].filter(([key]) => !this.variantsSeen.has(key))
      : [];
    const variants = fresh.map(([, v]) => v);
    const texts = [...new Set(variants.map((v) => v.wgsl))];
    const split = splitByCost(texts, WORKER_HANDICAP_CHARS).map((side) => new Set(side));
    const [mine, theirs] = split.map((side) => variants.filter((v) => side.has(v.wgsl)));
    const share = [...split[1]].reduce((n, t) => n + t.length, 0);
    // The worker starts first: its start and device overlap this thread's pipeline creation.
    const worker = share >= WORKER_MIN_CHARS
      ? startCompileWorker({ variants: theirs, ...this.request })
      : undefined;
    // Marked before any await, so that a concurrent call does not compile them again; a program
    // that fails to compile leaves them new for the next one.
    fresh.forEach(([key]) => this.variantsSeen.add(key));
    try {
      const pipelines = await Promise.all(kernels.map((k) => this.pipeline(k.wgsl, k.name)))
        .catch((e) => {
          fresh.forEach(([key]) => this.variantsSeen.delete(key));
          throw e;
        });
      if (worker) {
        const t0 = performance.now();
        const own = await Promise.all(mine.map((v) => this.pipelines.get(v.wgsl)!));
        this.compiledAhead.here += await dispatchEmpty(this.gpu, own, mine);
        // The sides were balanced: a worker far behind this thread has stalled, and its kernels
        // are better compiled at their first dispatch than waited for.
        const wait = Math.max(2000, 2 * (performance.now() - t0));
        this.compiledAhead.worker += await worker.result(wait);
      }
      return pipelines;
    } finally {
      worker?.stop();
    }
  }

  /** Number of distinct WGSL texts compiled (or being compiled) so far. */
  get pipelineCount(): number {
    return this.pipelines.size;
  }

  /** Compiles `wgsl` into a pipeline, throwing the compiler messages and numbered source. */
  private async compile(wgsl: string, label: string): Promise<GPUComputePipeline> {
    this.check();
    this.gpu.pushErrorScope("validation");
    const module = this.gpu.createShaderModule({ code: wgsl, label });
    const descriptor: GPUComputePipelineDescriptor = {
      layout: "auto",
      compute: { module, entryPoint: "main" },
      label,
    };
    // The async form lets the driver compile several kernels in parallel (NVIDIA's compiler
    // takes ~100 ms per kernel); a rejected promise carries the validation error. The scope is
    // popped before any await: kernels compile concurrently, and a scope popped later would be
    // another kernel's (its error blamed on this one).
    const created = this.gpu.createComputePipelineAsync(descriptor);
    const popped = this.gpu.popErrorScope();
    let pipeline: GPUComputePipeline | undefined;
    let asyncError: unknown;
    try {
      pipeline = await created;
    } catch (e) {
      asyncError = e;
    }
    const scoped = await popped;
    const error = scoped ?? (asyncError ? { message: String(asyncError) } : null);
    if (error) {
      const info = await module.getCompilationInfo?.().catch(() => undefined);
      const messages = info?.messages?.map((m) => `  ${m.lineNum}:${m.linePos} ${m.message}`) ??
        [];
      throw new Error(
        `WGSL kernel ${label} failed to compile: ${error.message}\n${messages.join("\n")}\n` +
          numbered(wgsl),
      );
    }
    return pipeline!;
  }

  /** Creates a storage buffer; reports out-of-memory with the size asked for. */
  async createBuffers(sizes: readonly number[], label: string): Promise<GPUBuffer[]> {
    this.check();
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    this.gpu.pushErrorScope("out-of-memory");
    this.gpu.pushErrorScope("validation");
    const buffers = sizes.map((size) =>
      this.gpu.createBuffer({ size: Math.max(4, size), usage, label })
    );
    // Both popped before awaiting: another call's scopes may be pushed in between.
    const [validation, oom] = await Promise.all([
      this.gpu.popErrorScope(),
      this.gpu.popErrorScope(),
    ]);
    if (oom || validation) {
      buffers.forEach((b) => b.destroy());
      const total = sizes.reduce((a, b) => a + b, 0);
      throw new Error(
        `${oom ? "out of device memory" : "buffer creation failed"} allocating ${sizes.length} ` +
          `buffer(s) of ${total} bytes for ${label} (largest ${Math.max(...sizes)} bytes; device ` +
          `maxBufferSize ${this.info.limits.maxBufferSize}): ${(oom ?? validation)!.message}. ` +
          "Reduce the batch size, sequence length or model width.",
      );
    }
    return buffers;
  }

  private readonly pool = new Map<number, GPUBuffer[]>();
  private pooledBytes = 0;

  /**
   * A storage buffer of exactly `bytes` (≥ 4), reusing a recycled one when possible: creating
   * buffers per call costs more than the dispatches of a small step. Queue order makes reuse safe
   * while earlier work still reads the old contents.
   */
  takeBuffer(bytes: number, label: string): GPUBuffer {
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    const reused = this.pool.get(size)?.pop();
    if (reused) {
      this.pooledBytes -= size;
      return reused;
    }
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    return this.gpu.createBuffer({ size, usage, label });
  }

  /** Returns a buffer from `takeBuffer` for reuse (destroyed if the pool is full). */
  recycle(buffer: GPUBuffer): void {
    const size = buffer.size;
    if (this.pooledBytes + size > MAX_POOLED_BYTES) {
      buffer.destroy();
      return;
    }
    let list = this.pool.get(size);
    if (!list) this.pool.set(size, list = []);
    list.push(buffer);
    this.pooledBytes += size;
  }

  /** Destroys the pooled buffers and the GPU device. */
  destroy(): void {
    for (const list of this.pool.values()) list.forEach((b) => b.destroy());
    this.pool.clear();
    this.gpu.destroy();
  }
}

function numbered(text: string): string {
  return text.split("\n").map((l, i) => `${String(i + 1).padStart(4)}| ${l}`).join("\n");
}

let defaultDevice: Promise<Device> | undefined;

/** The default WebGPU device (opened once). */
export function gpu(opts?: DeviceOptions): Promise<Device> {
  if (opts) return Device.open(opts);
  if (!defaultDevice) {
    defaultDevice = Device.open();
    defaultDevice.catch(() => (defaultDevice = undefined));
  }
  return defaultDevice;
}
