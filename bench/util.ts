/**
 * Benchmark plumbing shared by every library: timing (N back-to-back iterations, one sync at the
 * end, median of repetitions), a global count of compute dispatches, and per-device accounting of
 * live storage-buffer bytes. The counters patch the WebGPU prototypes, so they see every library
 * in the process (ours, jax-js, TF.js) the same way.
 */

export interface Timing {
  /** Median milliseconds per iteration. */
  ms: number;
  /** Iterations per repetition. */
  iters: number;
  /** Milliseconds per iteration of each repetition. */
  reps: number[];
  /** Compute dispatches per iteration (from the last repetition). */
  dispatches: number;
}

export interface MeasureOptions {
  /** Minimum wall time of one repetition (ms). */
  minMs: number;
  /** Repetitions (the median is reported). */
  reps: number;
  /** Upper bound on iterations per repetition. */
  maxIters?: number;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Times `run(n)`, which must issue `n` iterations back to back and sync once at the end. A first
 * call warms up (compilation, allocation); then `n` grows until one repetition lasts `minMs`;
 * then `reps` repetitions are timed.
 */
export async function measure(
  run: (n: number) => Promise<void>,
  opts: MeasureOptions,
): Promise<Timing> {
  const maxIters = opts.maxIters ?? 1 << 20;
  await run(1); // warm-up
  let n = 1;
  let dt = await timeIt(() => run(n));
  while (dt < opts.minMs && n < maxIters) {
    // Aim 20 % past the target so that the timed repetitions land above it.
    const scale = Math.min(16, Math.max(2, (1.2 * opts.minMs) / Math.max(dt, 1)));
    n = Math.min(maxIters, Math.ceil(n * scale));
    dt = await timeIt(() => run(n));
  }
  const reps: number[] = [];
  let dispatches = 0;
  for (let r = 0; r < opts.reps; r++) {
    const before = counters.dispatches;
    reps.push((await timeIt(() => run(n))) / n);
    dispatches = (counters.dispatches - before) / n;
  }
  return { ms: median(reps), iters: n, reps, dispatches };
}

async function timeIt(f: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
}

/** Global counters fed by the patched WebGPU prototypes. */
export const counters = {
  dispatches: 0,
};

interface DeviceBytes {
  live: number;
  peak: number;
}

const bytesByDevice = new WeakMap<GPUDevice, DeviceBytes>();
const bufferInfo = new WeakMap<GPUBuffer, { device: GPUDevice; bytes: number }>();
let installed = false;

/**
 * Patches `dispatchWorkgroups` (counted) and `createBuffer`/`destroy` (storage buffers tracked per
 * device). Staging (MAP_READ), uniform and other non-storage buffers are not counted.
 */
export function installCounters(): void {
  if (installed) return;
  installed = true;
  const pass = GPUComputePassEncoder.prototype;
  const dispatch = pass.dispatchWorkgroups;
  pass.dispatchWorkgroups = function (
    this: GPUComputePassEncoder,
    x: number,
    y?: number,
    z?: number,
  ) {
    counters.dispatches++;
    return dispatch.call(this, x, y, z);
  };
  const dev = GPUDevice.prototype;
  const create = dev.createBuffer;
  dev.createBuffer = function (this: GPUDevice, desc: GPUBufferDescriptor) {
    const buffer = create.call(this, desc);
    if (desc.usage & GPUBufferUsage.STORAGE) {
      const acc = accountOf(this);
      acc.live += desc.size;
      acc.peak = Math.max(acc.peak, acc.live);
      bufferInfo.set(buffer, { device: this, bytes: desc.size });
    }
    return buffer;
  };
  const buf = GPUBuffer.prototype;
  const destroy = buf.destroy;
  buf.destroy = function (this: GPUBuffer) {
    const info = bufferInfo.get(this);
    if (info) {
      bufferInfo.delete(this);
      accountOf(info.device).live -= info.bytes;
    }
    return destroy.call(this);
  };
}

function accountOf(device: GPUDevice): DeviceBytes {
  let acc = bytesByDevice.get(device);
  if (!acc) bytesByDevice.set(device, acc = { live: 0, peak: 0 });
  return acc;
}

/**
 * Tracks the high-water mark of live storage bytes on `device` from now on; `stop()` returns the
 * peak above the level at `start`.
 */
export function trackBytes(device: GPUDevice): { stop(): number } {
  const acc = accountOf(device);
  const base = acc.live;
  acc.peak = acc.live;
  return { stop: () => acc.peak - base };
}

/** Live storage bytes on `device` (as seen by the patched prototypes). */
export function liveBytes(device: GPUDevice): number {
  return accountOf(device).live;
}

/** Deterministic pseudo-random f32 values in [-scale, scale] (same generator as the tests). */
export function randomData(n: number, seed: number, scale = 1): Float32Array<ArrayBuffer> {
  const data = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return data;
}

/** Largest |a − b| / (1 + |b|) over two equal-length arrays. */
export function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]) / (1 + Math.abs(b[i]));
    if (!(d <= m)) m = d; // NaN propagates
  }
  return m;
}
