/**
 * Collectives behind one interface (all-gather, all-reduce sum/mean, broadcast, barrier) over the
 * processes of a job: `SelfGroup` (one process) and `MpiGroup` (mpi_group.ts: MPI_COMM_WORLD
 * through FFI, loaded only in mode "mpi").
 *
 * Replica identity: an all-reduce is a reduce-scatter followed by an all-gather, so each block is
 * summed once, on one rank, and the same bytes reach every rank (MPI_Allreduce may associate the
 * sum differently on different ranks). Every call is non-blocking (a Promise) and guarded by a
 * watchdog: a peer that died or hangs stops the job with a clear message after `timeoutMs`
 * instead of hanging it.
 */

import type { MpiGroupOptions } from "./mpi_group.ts";

/** The typed arrays a collective can carry. */
export type CommArray = Float32Array | Float64Array | Int32Array | Uint8Array;

/** Bytes a rank sends and receives, under the bandwidth-optimal (ring) algorithms. */
export interface CommCounters {
  /** Collectives issued. */
  calls: number;
  /** Bytes this rank sent. */
  bytesSent: number;
  /** Bytes this rank received. */
  bytesReceived: number;
  /** Wall seconds with a collective in flight. */
  seconds: number;
}

/** The processes of a job and the collectives between them. */
export interface ProcessGroup {
  /** This process's index in the group, 0…size−1. */
  readonly rank: number;
  /** Number of processes in the group. */
  readonly size: number;
  /** "self" or the MPI library in use. */
  readonly backend: string;
  /** Every rank's `local` (equal lengths), concatenated in rank order (into `out` if given). */
  allGather<T extends CommArray>(local: T, out?: T): Promise<T>;
  /** The element-wise sum (or mean) over ranks, identical bytes on every rank (into `out` if given). */
  allReduce<T extends Float32Array | Int32Array>(
    local: T,
    op?: "sum" | "mean",
    out?: T,
  ): Promise<T>;
  /** Root's `buf` on every rank (in place). */
  broadcast<T extends CommArray>(buf: T, root?: number): Promise<T>;
  /**
   * Waits for every rank. `timeoutMs` overrides the collective timeout for this call (Infinity:
   * none, for waits on work one rank does alone, such as rank 0's evaluation or checkpoint).
   */
  barrier(opts?: { timeoutMs?: number }): Promise<void>;
  /** Traffic and time spent in collectives so far. */
  readonly counters: CommCounters;
  /** Stops every rank of the job with `message` (exit status `code`). */
  abort(message: string, code?: number): never;
  /** Shuts the group down; no collectives may follow. */
  finalize(): Promise<void>;
}

const newCounters = (): CommCounters => ({ calls: 0, bytesSent: 0, bytesReceived: 0, seconds: 0 });

/** A job of one process: collectives are identities. */
export class SelfGroup implements ProcessGroup {
  /** Always 0. */
  readonly rank = 0;
  /** Always 1. */
  readonly size = 1;
  readonly backend = "self";
  /** Traffic counters (no bytes ever move). */
  readonly counters: CommCounters = newCounters();
  allGather<T extends CommArray>(local: T, out?: T): Promise<T> {
    return Promise.resolve(out ? (out.set(local), out) : local.slice() as T);
  }
  allReduce<T extends Float32Array | Int32Array>(local: T, _op?: string, out?: T): Promise<T> {
    return Promise.resolve(out ? (out.set(local), out) : local.slice() as T);
  }
  broadcast<T extends CommArray>(buf: T): Promise<T> {
    return Promise.resolve(buf);
  }
  /** Resolves at once. */
  barrier(_opts?: { timeoutMs?: number }): Promise<void> {
    return Promise.resolve();
  }
  /** One process: nothing else to stop, so the error propagates to the caller. */
  abort(message: string): never {
    throw new Error(message);
  }
  /** Nothing to shut down; resolves at once. */
  finalize(): Promise<void> {
    return Promise.resolve();
  }
}

/** Splits n elements into `parts` contiguous blocks whose sizes differ by at most one. */
export function evenCounts(n: number, parts: number): number[] {
  return Array.from(
    { length: parts },
    (_, i) => Math.floor((n * (i + 1)) / parts) - Math.floor((n * i) / parts),
  );
}

/** The job's process group: MPI when `mode` is "mpi", else a group of one. */
export async function processGroup(
  mode: "virtual" | "devices" | "mpi",
  opts: MpiGroupOptions = {},
): Promise<ProcessGroup> {
  if (mode !== "mpi") return new SelfGroup();
  // Loaded only in mode "mpi": the FFI binding and its watchdog thread are Deno-only.
  const { MpiGroup } = await import("./mpi_group.ts");
  return await MpiGroup.open(opts);
}
