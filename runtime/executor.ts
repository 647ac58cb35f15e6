/**
 * Running a Program on a device: persistent buffers for intermediates and constants (allocated
 * once), fresh buffers for outputs (handed to the caller as DeviceArrays), every dispatch of a
 * call recorded in one command encoder and one compute pass, and bind groups cached per set of
 * buffers so a steady training loop re-creates nothing.
 */

import type { HostArray } from "../dsl/mod.ts";
import type { Program } from "../compiler/mod.ts";
import type { Device } from "./device.ts";
import { DeviceArray, hostData, isDeviceArray, uploadData } from "./device_array.ts";

/** An argument of a compiled program: host data (uploaded per call) or an array on the device. */
export type ProgramInput = HostArray | DeviceArray;

/** One kernel's measured wall time (see `Executable.profile`). */
export interface KernelTiming {
  /** The kernel's name in the program listing. */
  name: string;
  /** Primitives fused into the kernel. */
  ops: string[];
  /** The kernel's WGSL source. */
  wgsl: string;
  /**
   * Milliseconds: on the device's clock where it grants `timestamp-query` (the kernel in its own
   * pass, every kernel in program order in one submission), else the wall time of the kernel run
   * alone, less an empty submit-and-wait.
   */
  ms: number;
  /** Which clock `ms` was read from. */
  clock: "device" | "wall";
  /** The kernel's outputs, as the listing writes them (e.g. "f32[128,896]"). */
  output: string;
  /**
   * Multiply-adds of the products the kernel computes (`Kernel.multiplyAdds`; undefined where it
   * computes none), so that `2 · multiplyAdds / ms` is its FLOP rate.
   */
  multiplyAdds?: number;
  /**
   * Wall milliseconds of the kernel's first run, alone and waited for (less an empty
   * submit-and-wait). Drivers that compile a pipeline at its first dispatch (Mesa's llvmpipe and
   * lavapipe) compile it within this run, unless the device compiled it ahead
   * (`Device.compileAheadEnabled`); a pipeline several kernels share is compiled in the first of
   * them.
   */
  firstMs: number;
}

/** Kernels timed per query set (WebGPU allows 4,096 queries in one; two per kernel). */
const TIMED_PER_SET = 2048;

/** A Program made ready to run on one device: compiled pipelines and its persistent buffers. */
export class Executable {
  private pipelines: GPUComputePipeline[] = [];
  private persistent = new Map<number, GPUBuffer>();
  /** Each kernel's shape buffer (the sizes it reads from a uniform), where it has one. */
  private shapeBuffers: (GPUBuffer | undefined)[] = [];
  private bindGroups = new Map<string, GPUBindGroup>();
  private bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 0;
  /** Number of calls run. */
  calls = 0;

  private constructor(readonly device: Device, readonly program: Program) {}

  /** Compiles the program's kernels and allocates and fills its persistent buffers. */
  static async create(device: Device, program: Program): Promise<Executable> {
    const e = new Executable(device, program);
    e.pipelines = await device.pipelinesFor(program.kernels);
    const persistent = program.slots.filter((s) =>
      s.kind === "intermediate" || s.kind === "constant"
    );
    const buffers = await device.createBuffers(persistent.map((s) => s.bytes), "program buffers");
    persistent.forEach((s, i) => e.persistent.set(s.id, buffers[i]));
    e.shapeBuffers = program.kernels.map((k) => k.params && sizesBuffer(device, k.params));
    for (const s of persistent) {
      if (s.kind !== "constant") continue;
      const value = s.constant!.params.value as HostArray;
      const data = hostData(value);
      // Deno's writeBuffer panics on an empty array (an empty constant has nothing to write).
      if (data.length) device.gpu.queue.writeBuffer(e.persistent.get(s.id)!, 0, data);
    }
    return e;
  }

  /** A small id per buffer, for the bind-group cache key. */
  private idOf(b: GPUBuffer): number {
    let id = this.bufferIds.get(b);
    if (id === undefined) this.bufferIds.set(b, id = this.nextBufferId++);
    return id;
  }

  /** Buffers for every slot of one call: persistent ones, inputs (uploaded if on the host), outputs. */
  private bindSlots(inputs: readonly ProgramInput[]): {
    slotBuffer: Map<number, GPUBuffer>;
    created: GPUBuffer[];
    fresh: (bytes: number, label: string) => GPUBuffer;
  } {
    const { device, program } = this;
    const slotBuffer = new Map<number, GPUBuffer>(this.persistent);
    const created: GPUBuffer[] = [];
    const fresh = (bytes: number, label: string) => {
      const b = device.takeBuffer(bytes, label);
      created.push(b);
      return b;
    };
    program.inputSlots.forEach((slot, i) => {
      const x = inputs[i];
      const node = program.graph.inputs[i];
      const packed = program.slots[slot].packed;
      if (isDeviceArray(x)) {
        if (x.device !== device) throw new Error(`input ${i} lives on another device`);
        if (x.storage !== packed) {
          throw new Error(
            `input ${i} (${x.dtype}[${x.shape}]) is stored as ${x.storage ?? "f32"}; the ` +
              `program was compiled for ${packed ?? "f32"} (call it through jit, which compiles ` +
              "one program per storage)",
          );
        }
        slotBuffer.set(slot, x.buffer);
      } else {
        const b = fresh(program.slots[slot].bytes, `input ${i}`);
        const data = uploadData({ dtype: node.dtype, data: x.data }, packed);
        if (data.length) device.gpu.queue.writeBuffer(b, 0, data); // empty: Deno would panic
        slotBuffer.set(slot, b);
      }
    });
    // Outputs written by kernels get fresh buffers (unless they reuse a donated input).
    for (const s of program.slots) {
      if (s.kind === "output") slotBuffer.set(s.id, fresh(s.bytes, "output"));
    }
    return { slotBuffer, created, fresh };
  }

  private placeholders: GPUBuffer[] = [];

  /**
   * A small buffer for binding `binding` of a kernel that never reads it: another epilogue's in a
   * shared text, or an absent member's in a grouped dispatch. One per binding number, so that no
   * two bindings alias.
   */
  private placeholder(binding: number): GPUBuffer {
    return this.placeholders[binding] ??= this.device.gpu.createBuffer({
      size: 16,
      usage: GPUBufferUsage.STORAGE,
      label: `placeholder binding ${binding}`,
    });
  }

  /** Records kernel `i`'s dispatch into `pass`, with a cached bind group for its buffers. */
  private encodeKernel(pass: GPUComputePassEncoder, i: number, slotBuffer: Map<number, GPUBuffer>) {
    const k = this.program.kernels[i];
    const buffers = k.slots.map((s, binding) =>
      s < 0 ? this.placeholder(binding) : slotBuffer.get(s)!
    );
    const key = `${i}:${buffers.map((b) => this.idOf(b)).join(",")}`;
    let group = this.bindGroups.get(key);
    if (!group) {
      group = this.device.gpu.createBindGroup({
        layout: this.pipelines[i].getBindGroupLayout(0),
        entries: [
          ...buffers.map((buffer, binding) => {
            const range = k.ranges?.[binding];
            const resource = range ? { buffer, offset: range[0], size: range[1] } : { buffer };
            return { binding, resource };
          }),
          ...(this.shapeBuffers[i]
            ? [{ binding: k.slots.length, resource: { buffer: this.shapeBuffers[i]! } }]
            : []),
        ],
      });
      // Bounded, but large enough for every kernel of a few calls: a program with more kernels
      // than the bound would otherwise rebuild all its bind groups on every call.
      if (this.bindGroups.size > 4 * this.program.kernels.length + 256) this.bindGroups.clear();
      this.bindGroups.set(key, group);
    }
    pass.setPipeline(this.pipelines[i]);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(...k.dispatch);
  }

  /**
   * Times each kernel (for finding hot kernels). The program first runs in program order with
   * each kernel alone and waited for (`firstMs`: wall time, less an empty submit-and-wait, holding
   * whatever the driver compiles at a first dispatch). Then, with `timestamp-query`, it runs again
   * with each kernel in its own compute pass, all in one submission, and the passes' timestamps
   * give each kernel's device time; without it, a second run alone and waited for gives its wall
   * time. Inputs are left unchanged: those the program would overwrite in place are copied first.
   */
  async profile(
    inputs: readonly ProgramInput[],
  ): Promise<KernelTiming[]> {
    const gpu = this.device.gpu;
    const { slotBuffer, created, fresh } = this.bindSlots(inputs);
    // Donated inputs the program overwrites in place are profiled on copies: the caller's
    // arrays stay as they were.
    const copies = gpu.createCommandEncoder({ label: "profile copies" });
    const written = new Set(this.program.kernels.flatMap((k) => k.written));
    for (const s of this.program.slots) {
      if (s.kind !== "input" || !written.has(s.id)) continue;
      const copy = fresh(s.bytes, "profiled input");
      copies.copyBufferToBuffer(slotBuffer.get(s.id)!, 0, copy, 0, Math.max(4, s.bytes));
      slotBuffer.set(s.id, copy);
    }
    gpu.queue.submit([copies.finish()]);
    const clock = this.device.info.features.includes("timestamp-query") ? "device" : "wall";
    const firstMs = await this.wallTimes(slotBuffer);
    const ms = clock === "device"
      ? await this.deviceTimes(slotBuffer)
      : await this.wallTimes(slotBuffer);
    for (const b of created) this.device.recycle(b);
    return this.program.kernels.map((k, i) => ({
      name: k.name,
      ops: k.ops,
      wgsl: k.wgsl,
      ms: ms[i],
      clock,
      output: k.output,
      multiplyAdds: k.multiplyAdds,
      firstMs: firstMs[i],
    }));
  }

  /** Each kernel run alone and waited for: wall milliseconds, less an empty submit-and-wait. */
  private async wallTimes(slotBuffer: Map<number, GPUBuffer>): Promise<number[]> {
    const gpu = this.device.gpu;
    const timeOne = async (i: number | null) => {
      const encoder = gpu.createCommandEncoder();
      const pass = encoder.beginComputePass();
      if (i !== null) this.encodeKernel(pass, i, slotBuffer);
      pass.end();
      const t0 = performance.now();
      gpu.queue.submit([encoder.finish()]);
      await gpu.queue.onSubmittedWorkDone();
      return performance.now() - t0;
    };
    let idle = Infinity;
    for (let r = 0; r < 5; r++) idle = Math.min(idle, await timeOne(null));
    const ms: number[] = [];
    for (let i = 0; i < this.program.kernels.length; i++) {
      ms.push(Math.max(0, (await timeOne(i)) - idle));
    }
    return ms;
  }

  /**
   * Runs every kernel in program order, each in its own compute pass, in one submission, and
   * returns each kernel's milliseconds from its pass's timestamps.
   */
  private async deviceTimes(slotBuffer: Map<number, GPUBuffer>): Promise<number[]> {
    const gpu = this.device.gpu;
    const n = this.program.kernels.length;
    const encoder = gpu.createCommandEncoder({ label: "profile" });
    const sets: { set: GPUQuerySet; first: number; count: number; resolved: GPUBuffer }[] = [];
    for (let first = 0; first < n; first += TIMED_PER_SET) {
      const count = Math.min(TIMED_PER_SET, n - first);
      const set = gpu.createQuerySet({ type: "timestamp", count: 2 * count });
      const resolved = gpu.createBuffer({
        size: 16 * count,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      });
      sets.push({ set, first, count, resolved });
    }
    for (let i = 0; i < n; i++) {
      const q = sets[Math.floor(i / TIMED_PER_SET)];
      const at = 2 * (i - q.first);
      const pass = encoder.beginComputePass({
        timestampWrites: {
          querySet: q.set,
          beginningOfPassWriteIndex: at,
          endOfPassWriteIndex: at + 1,
        },
      });
      this.encodeKernel(pass, i, slotBuffer);
      pass.end();
    }
    const reads = sets.map((q) => {
      encoder.resolveQuerySet(q.set, 0, 2 * q.count, q.resolved, 0);
      const read = gpu.createBuffer({
        size: 16 * q.count,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      encoder.copyBufferToBuffer(q.resolved, 0, read, 0, 16 * q.count);
      return read;
    });
    gpu.queue.submit([encoder.finish()]);
    await gpu.queue.onSubmittedWorkDone();
    const ms: number[] = [];
    for (const read of reads) {
      await read.mapAsync(GPUMapMode.READ);
      const stamps = new BigUint64Array(read.getMappedRange().slice(0));
      read.unmap();
      read.destroy();
      // Nanoseconds; a clock that steps backwards between passes reads as 0.
      for (let k = 0; k < stamps.length; k += 2) {
        ms.push(Math.max(0, Number(stamps[k + 1] - stamps[k]) / 1e6));
      }
    }
    sets.forEach((q) => (q.set.destroy(), q.resolved.destroy()));
    return ms;
  }

  /** Encodes and submits one call; returns the outputs on the device. */
  run(inputs: readonly ProgramInput[], donated: ReadonlySet<number> = new Set()): DeviceArray[] {
    const { device, program } = this;
    device.check();
    // A donated buffer may be written in place: it cannot be another input too (WebGPU rejects
    // the aliased read/write binding, and the donation would invalidate the other argument).
    const firstUse = new Map<GPUBuffer, number>();
    inputs.forEach((x, i) => {
      if (!isDeviceArray(x)) return;
      const j = firstUse.get(x.buffer);
      if (j !== undefined && (donated.has(i) || donated.has(j))) {
        throw new Error(
          `inputs ${j} and ${i} are the same DeviceArray and one of them is donated; pass a copy`,
        );
      }
      firstUse.set(x.buffer, j ?? i);
    });
    const gpu = device.gpu;
    const { slotBuffer, created, fresh } = this.bindSlots(inputs);
    const encoder = gpu.createCommandEncoder({ label: "program" });
    if (program.kernels.length) {
      const pass = encoder.beginComputePass();
      program.kernels.forEach((_, i) => this.encodeKernel(pass, i, slotBuffer));
      pass.end();
    }
    // Each output gets its own buffer: copy outputs that are inputs, constants, intermediates or
    // repeated outputs.
    const owned = new Set<GPUBuffer>();
    const outputs = program.outputSlots.map((slot, o) => {
      const node = program.graph.outputs[o];
      const s = program.slots[slot];
      let buffer = slotBuffer.get(slot)!;
      const takeOver =
        (s.kind === "output" || (s.kind === "input" && s.outputIndices?.includes(o) &&
          donated.has(s.inputIndex!))) && !owned.has(buffer);
      if (!takeOver) {
        const copy = fresh(s.bytes, "output copy");
        encoder.copyBufferToBuffer(buffer, 0, copy, 0, Math.max(4, s.bytes));
        buffer = copy;
      }
      owned.add(buffer);
      // An input passed through keeps its storage (a packed one is copied packed).
      return new DeviceArray(device, buffer, node.shape, node.dtype, s.packed);
    });
    gpu.queue.submit([encoder.finish()]);
    // Free uploads that were not handed out; invalidate donated device arrays.
    for (const b of created) if (!owned.has(b)) device.recycle(b);
    inputs.forEach((x, i) => {
      if (isDeviceArray(x) && donated.has(i)) {
        if (!outputs.some((o) => o.buffer === x.buffer)) device.recycle(x.buffer);
        x.invalidate();
      }
    });
    this.calls++;
    return outputs;
  }

  /** Destroys the persistent buffers; the Executable cannot run afterwards. */
  destroy(): void {
    for (const b of this.persistent.values()) b.destroy();
    for (const b of this.shapeBuffers) b?.destroy();
    for (const b of this.placeholders) b?.destroy();
    this.placeholders = [];
    this.persistent.clear();
    this.shapeBuffers = [];
    this.bindGroups.clear();
  }
}

/** A buffer holding `values` (a kernel's sizes), bound as a uniform or as read-only storage. */
function sizesBuffer(device: Device, values: Int32Array<ArrayBuffer>): GPUBuffer {
  const buffer = device.gpu.createBuffer({
    size: values.byteLength,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    label: "kernel sizes",
  });
  device.gpu.queue.writeBuffer(buffer, 0, values);
  return buffer;
}
