/**
 * Collectives behind one interface (all-gather, all-reduce sum/mean, broadcast, barrier) over the
 * processes of a job: `SelfGroup` (one process) and `MpiGroup` (MPI_COMM_WORLD through FFI).
 *
 * Replica identity: an all-reduce is a reduce-scatter followed by an all-gather, so each block is
 * summed once, on one rank, and the same bytes reach every rank (MPI_Allreduce may associate the
 * sum differently on different ranks). Every call is non-blocking (a Promise) and guarded by a
 * watchdog: a peer that died or hangs stops the job with a clear message after `timeoutMs`
 * instead of hanging it.
 */

import { Mpi, type MpiDatatype } from "./mpi.ts";

export type CommArray = Float32Array | Float64Array | Int32Array | Uint8Array;

/** Bytes a rank sends and receives, under the bandwidth-optimal (ring) algorithms. */
export interface CommCounters {
  calls: number;
  bytesSent: number;
  bytesReceived: number;
  /** Wall seconds with a collective in flight. */
  seconds: number;
}

export interface ProcessGroup {
  readonly rank: number;
  readonly size: number;
  /** "self" or the MPI library in use. */
  readonly backend: string;
  /** Every rank's `local` (equal lengths), concatenated in rank order. */
  allGather<T extends CommArray>(local: T): Promise<T>;
  /** The element-wise sum (or mean) over ranks; identical bytes on every rank. */
  allReduce<T extends Float32Array | Int32Array>(local: T, op?: "sum" | "mean"): Promise<T>;
  /** Root's `buf` on every rank (in place). */
  broadcast<T extends CommArray>(buf: T, root?: number): Promise<T>;
  barrier(): Promise<void>;
  readonly counters: CommCounters;
  /** Stops every rank of the job with `message` (exit status `code`). */
  abort(message: string, code?: number): never;
  finalize(): Promise<void>;
}

const newCounters = (): CommCounters => ({ calls: 0, bytesSent: 0, bytesReceived: 0, seconds: 0 });

/** A job of one process: collectives are identities. */
export class SelfGroup implements ProcessGroup {
  readonly rank = 0;
  readonly size = 1;
  readonly backend = "self";
  readonly counters = newCounters();
  allGather<T extends CommArray>(local: T): Promise<T> {
    return Promise.resolve(local.slice() as T);
  }
  allReduce<T extends Float32Array | Int32Array>(local: T): Promise<T> {
    return Promise.resolve(local.slice() as T);
  }
  broadcast<T extends CommArray>(buf: T): Promise<T> {
    return Promise.resolve(buf);
  }
  barrier(): Promise<void> {
    return Promise.resolve();
  }
  abort(message: string, code = 1): never {
    console.error(message);
    Deno.exit(code);
  }
  finalize(): Promise<void> {
    return Promise.resolve();
  }
}

export class CollectiveTimeoutError extends Error {}

const MAX_COUNT = 2 ** 31 - 1;

function datatypeOf(a: CommArray): MpiDatatype {
  return a instanceof Float32Array
    ? "f32"
    : a instanceof Float64Array
    ? "f64"
    : a instanceof Int32Array
    ? "i32"
    : "byte";
}

/** Splits n elements into `parts` contiguous blocks whose sizes differ by at most one. */
export function evenCounts(n: number, parts: number): number[] {
  return Array.from(
    { length: parts },
    (_, i) => Math.floor((n * (i + 1)) / parts) - Math.floor((n * i) / parts),
  );
}

export interface MpiGroupOptions {
  /** A collective in flight longer than this stops the job (default 600 s: first steps compile). */
  timeoutMs?: number;
  library?: string;
}

/** MPI_COMM_WORLD with counters and the watchdog. */
export class MpiGroup implements ProcessGroup {
  readonly counters = newCounters();
  private constructor(private readonly mpi: Mpi, private timeoutMs: number) {}

  static async open(opts: MpiGroupOptions = {}): Promise<MpiGroup> {
    const mpi = await Mpi.world({ library: opts.library });
    return new MpiGroup(mpi, opts.timeoutMs ?? 600_000);
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

  /** Changes the watchdog's limit (e.g. shorter once the first step has compiled). */
  setTimeout(ms: number): void {
    this.timeoutMs = ms;
  }

  private async guarded<T>(
    name: string,
    bytes: [number, number],
    run: () => Promise<T>,
  ): Promise<T> {
    const t0 = performance.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const watchdog = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new CollectiveTimeoutError(
              `rank ${this.rank}/${this.size}: ${name} did not complete within ${
                (this.timeoutMs / 1000).toFixed(0)
              } s — a peer rank died, hangs, or is far behind. Stopping the job; the last checkpoint is intact.`,
            ),
          ),
        this.timeoutMs,
      );
    });
    try {
      const out = await Promise.race([run(), watchdog]);
      this.counters.calls++;
      this.counters.bytesSent += bytes[0];
      this.counters.bytesReceived += bytes[1];
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

  allGather<T extends CommArray>(local: T): Promise<T> {
    const P = this.size;
    if (local.length * P > MAX_COUNT) {
      throw new RangeError(`allGather: ${local.length}×${P} elements exceed MPI's int count`);
    }
    const out = new (local.constructor as { new (n: number): T })(local.length * P);
    const bytes = (P - 1) * local.byteLength;
    return this.guarded("all-gather", [bytes, bytes], async () => {
      await this.mpi.allGatherV(local, out, Array(P).fill(local.length), datatypeOf(local));
      return out;
    });
  }

  allReduce<T extends Float32Array | Int32Array>(local: T, op: "sum" | "mean" = "sum"): Promise<T> {
    const P = this.size;
    const n = local.length;
    if (n > MAX_COUNT) throw new RangeError(`allReduce: ${n} elements exceed MPI's int count`);
    const counts = evenCounts(n, P);
    const type = local instanceof Float32Array ? "f32" : "i32";
    const Ctor = local.constructor as { new (n: number): T };
    const block = new Ctor(counts[this.rank]);
    const out = new Ctor(n);
    const bytes = 2 * (P - 1) / P * local.byteLength;
    return this.guarded("all-reduce", [bytes, bytes], async () => {
      await this.mpi.reduceScatter(local, block, counts, type);
      if (op === "mean") {
        if (type === "i32") throw new TypeError("allReduce: mean of integers");
        for (let i = 0; i < block.length; i++) block[i] /= P;
      }
      await this.mpi.allGatherV(block, out, counts, type);
      return out;
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

  barrier(): Promise<void> {
    return this.guarded("barrier", [0, 0], () => this.mpi.barrier());
  }

  abort(message: string, code = 1): never {
    console.error(`error: ${message}`);
    this.mpi.abort(code);
  }

  finalize(): Promise<void> {
    return this.mpi.finalize();
  }
}

/** The job's process group: MPI when `mode` is "mpi", else a group of one. */
export async function processGroup(
  mode: "virtual" | "devices" | "mpi",
  opts: MpiGroupOptions = {},
): Promise<ProcessGroup> {
  return mode === "mpi" ? await MpiGroup.open(opts) : new SelfGroup();
}
