/**
 * The collectives' watchdog for blocking MPI calls: runs on its own thread (a worker_threads
 * worker, unref'd by the main thread so that it never keeps the process alive), so it
 * keeps time while the main thread waits inside MPI. The main thread writes a deadline into shared
 * memory before each blocking collective and clears it after; past the deadline this thread prints
 * what hung and calls MPI_Abort, which ends every rank of the job (MPI_THREAD_MULTIPLE allows the
 * call from here).
 */

export interface WatchdogInit {
  /** Float64 slots: [deadline (ms since the epoch, 0 = idle), collective index]. */
  slots: SharedArrayBuffer;
  names: string[];
  library: string;
  flavor: "openmpi" | "mpich";
  rank: number;
  size: number;
  timeoutMs: number;
}

const MPICH_COMM_WORLD = 0x44000000;

import { parentPort } from "node:worker_threads";

parentPort?.once("message", (init: WatchdogInit) => {
  const slots = new Float64Array(init.slots);
  setInterval(() => {
    const deadline = slots[0];
    if (deadline === 0 || Date.now() < deadline) return;
    console.error(
      `error: rank ${init.rank}/${init.size}: ${init.names[slots[1]]} did not complete within ${
        (init.timeoutMs / 1000).toFixed(0)
      } s — a peer rank died, hangs, or is far behind. Stopping the job; the last checkpoint is intact.`,
    );
    if (init.flavor === "openmpi") {
      const lib = Deno.dlopen(
        init.library,
        {
          MPI_Abort: { parameters: ["pointer", "i32"], result: "i32" },
          ompi_mpi_comm_world: { type: "pointer" },
        } as const,
      );
      lib.symbols.MPI_Abort(lib.symbols.ompi_mpi_comm_world, 75);
    } else {
      const lib = Deno.dlopen(
        init.library,
        {
          MPI_Abort: { parameters: ["i32", "i32"], result: "i32" },
        } as const,
      );
      lib.symbols.MPI_Abort(MPICH_COMM_WORLD, 75);
    }
  }, 100);
});
