/**
 * `MpiGroup`: the collectives of `ProcessGroup` over MPI_COMM_WORLD (mpi.ts), with the bytes
 * counters and the watchdog that stops the job when a collective hangs.
 */

import { Worker as NodeWorker } from "node:worker_threads";
import { Mpi, type MpiDatatype } from "./mpi.ts";
import type { WatchdogInit } from "./watchdog_worker.ts";
import { type CommArray, type CommCounters, evenCounts, type ProcessGroup } from "./collectives.ts";

const newCounters = (): CommCounters => ({ calls: 0, bytesSent: 0, bytesReceived: 0, seconds: 0 });

export class CollectiveTimeoutError extends Error {}

function datatypeOf(a: CommArray): MpiDatatype {
  return a instanceof Float32Array
    ? "f32"
    : a instanceof Float64Array
    ? "f64"
    : a instanceof Int32Array
    ? "i32"
    : "byte";
}

/** Options of the MPI process group (`processGroup("mpi", opts)`). */
export interface MpiGroupOptions {
  /** A collective in flight longer than this stops the job (default 600 s: first steps compile). */
  timeoutMs?: number;
  /** The MPI library to open (an absolute path or soname) instead of searching for one. */
  library?: string;
  /**
   * Issue collectives as non-blocking FFI calls (Deno's event loop runs meanwhile, so host work
   * can overlap). Costs ≈5 ms per call on a busy 2-core machine; default false.
   */
  nonblocking?: boolean;
}

const COLLECTIVES = [
  "MPI_Barrier",
  "MPI_Allgather",
  "MPI_Allgatherv",
  "MPI_Reduce_scatter",
  "MPI_Allreduce",
  "MPI_Bcast",
];

/** MPI_COMM_WORLD with counters and the watchdog. */
export class MpiGroup implements ProcessGroup {
  /** The most elements one MPI call may carry (int counts); lowered by tests of the chunking. */
  static maxCount = 2 ** 31 - 1;
  readonly counters = newCounters();
  private watchdog: NodeWorker | undefined;
  private readonly deadline = new Float64Array(new SharedArrayBuffer(16));

  private constructor(private readonly mpi: Mpi, private readonly timeoutMs: number) {}

  static async open(opts: MpiGroupOptions = {}): Promise<MpiGroup> {
    const mpi = await Mpi.world({ library: opts.library });
    const group = new MpiGroup(mpi, opts.timeoutMs ?? 600_000);
    mpi.nonblocking = opts.nonblocking ?? false;
    if (!mpi.nonblocking && mpi.size > 1) group.startWatchdog();
    return group;
  }

  /** Blocking calls: a thread that aborts the job when a collective outlives its deadline. */
  private startWatchdog(): void {
    // A node:worker_threads worker, unref'd: unlike a Web Worker it does not keep the process
    // alive, so a script that never calls close() still exits (and MPI_Finalize runs at exit).
    this.watchdog = new NodeWorker(new URL("./watchdog_worker.ts", import.meta.url));
    this.watchdog.unref();
    const init: WatchdogInit = {
      slots: this.deadline.buffer as SharedArrayBuffer,
      names: COLLECTIVES,
      library: this.mpi.libraryPath,
      flavor: this.mpi.flavor,
      rank: this.rank,
      size: this.size,
      timeoutMs: this.timeoutMs,
    };
    this.watchdog.postMessage(init);
    this.mpi.watch = (name, timeoutMs = this.timeoutMs) => {
      if (!Number.isFinite(timeoutMs)) return () => {}; // an untimed wait
      this.deadline[1] = Math.max(0, COLLECTIVES.indexOf(name));
      this.deadline[0] = Date.now() + timeoutMs;
      return () => (this.deadline[0] = 0);
    };
  }

  get rank(): number {
    return this.mpi.rank;
  }
  get size(): number {
    return this.mpi.size;
  }
  get backend(): string {
    return `${this.mpi.flavor} (${this.mpi.version})`;
  }

  /**
   * Runs one collective with its byte and time accounting; in non-blocking mode a timer stops the
   * job after `timeoutMs` (blocking calls are timed by the watchdog thread instead).
   */
  private async guarded<T>(
    name: string,
    bytes: [number, number],
    run: () => Promise<T>,
    timeoutMs = this.timeoutMs,
  ): Promise<T> {
    const t0 = performance.now();
    const count = () => {
      this.counters.calls++;
      this.counters.bytesSent += bytes[0];
      this.counters.bytesReceived += bytes[1];
    };
    if (!this.mpi.nonblocking) {
      // Blocking calls: the watchdog thread keeps time, so no timer is armed here.
      try {
        const out = await run();
        count();
        return out;
      } finally {
        this.counters.seconds += (performance.now() - t0) / 1000;
      }
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const watchdog = new Promise<never>((_, reject) => {
      if (!Number.isFinite(timeoutMs)) return;
      timer = setTimeout(
        () =>
          reject(
            new CollectiveTimeoutError(
              `rank ${this.rank}/${this.size}: ${name} did not complete within ${
                (timeoutMs / 1000).toFixed(0)
              } s — a peer rank died, hangs, or is far behind. Stopping the job; the last checkpoint is intact.`,
            ),
          ),
        timeoutMs,
      );
    });
    try {
      const out = await Promise.race([run(), watchdog]);
      count();
      return out;
    } catch (e) {
      // The FFI thread is still blocked in MPI: only aborting the job ends it.
      if (e instanceof CollectiveTimeoutError) this.abort(e.message, 75);
      throw e;
    } finally {
      clearTimeout(timer);
      this.counters.seconds += (performance.now() - t0) / 1000;
    }
  }

  allGather<T extends CommArray>(local: T, out?: T): Promise<T> {
    const P = this.size;
    if (local.length * P > MpiGroup.maxCount) return this.allGatherChunked(local, out);
    const result = out ?? new (local.constructor as { new (n: number): T })(local.length * P);
    if (result.length !== local.length * P) {
      throw new RangeError(
        `allGather: out has ${result.length} elements, needs ${local.length * P}`,
      );
    }
    const bytes = (P - 1) * local.byteLength;
    return this.guarded("all-gather", [bytes, bytes], async () => {
      await this.mpi.allGatherV(local, result, Array(P).fill(local.length), datatypeOf(local));
      return result;
    });
  }

  /**
   * An all-gather whose total exceeds MPI's int counts (2³¹ − 1 elements): pieces small enough for
   * one call each, placed rank-major into the result.
   */
  private async allGatherChunked<T extends CommArray>(local: T, out?: T): Promise<T> {
    const P = this.size, n = local.length;
    const Ctor = local.constructor as { new (n: number): T };
    const result = out ?? new Ctor(n * P);
    const piece = Math.floor(MpiGroup.maxCount / P);
    const staging = new Ctor(piece * P);
    for (let at = 0; at < n; at += piece) {
      const len = Math.min(piece, n - at);
      const got = await this.allGather(
        local.subarray(at, at + len) as T,
        staging.subarray(0, len * P) as T,
      );
      for (let p = 0; p < P; p++) result.set(got.subarray(p * len, (p + 1) * len), p * n + at);
    }
    return result;
  }

  /** Reduce-scatter then all-gather: each block is summed once, on its owner, then shared. */
  allReduce<T extends Float32Array | Int32Array>(
    local: T,
    op: "sum" | "mean" = "sum",
    out?: T,
  ): Promise<T> {
    const P = this.size;
    const n = local.length;
    if (n > MpiGroup.maxCount) {
      throw new RangeError(`allReduce: ${n} elements exceed MPI's int count`);
    }
    if (op === "mean" && !(local instanceof Float32Array)) {
      throw new TypeError("allReduce: mean of integers");
    }
    const counts = evenCounts(n, P);
    const type = local instanceof Float32Array ? "f32" : "i32";
    const Ctor = local.constructor as { new (n: number): T };
    const result = out ?? new Ctor(n);
    if (result.length !== n) {
      throw new RangeError(`allReduce: out has ${result.length} elements, needs ${n}`);
    }
    // This rank's block lands in its place in `result` (MPI_Allgatherv's send buffer may not
    // alias its receive buffer, so the gather sends in place).
    const offset = counts.slice(0, this.rank).reduce((a, b) => a + b, 0);
    const block = result.subarray(offset, offset + counts[this.rank]) as T;
    const bytes = 2 * (P - 1) / P * local.byteLength;
    return this.guarded("all-reduce", [bytes, bytes], async () => {
      await this.mpi.reduceScatter(local, block, counts, type);
      if (op === "mean") { for (let i = 0; i < block.length; i++) block[i] /= P; }
      await this.mpi.allGatherV(null, result, counts, type);
      return result;
    });
  }

  broadcast<T extends CommArray>(buf: T, root = 0): Promise<T> {
    const sent = this.rank === root ? (this.size - 1) * buf.byteLength : 0;
    const received = this.rank === root ? 0 : buf.byteLength;
    return this.guarded("broadcast", [sent, received], async () => {
      await this.mpi.broadcast(buf, buf.length, datatypeOf(buf), root);
      return buf;
    });
  }

  barrier(opts: { timeoutMs?: number } = {}): Promise<void> {
    return this.guarded("barrier", [0, 0], () => this.mpi.barrier(opts.timeoutMs), opts.timeoutMs);
  }

  abort(message: string, code = 1): never {
    console.error(`error: ${message}`);
    this.mpi.abort(code);
  }

  async finalize(): Promise<void> {
    await this.mpi.finalize();
    this.watchdog?.terminate();
    this.watchdog = undefined;
  }
}
