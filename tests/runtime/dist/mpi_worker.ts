/**
 * One MPI rank of the distributed-runtime tests (run under mpirun by mpi_test.ts): trains the
 * shared problem in mode "mpi" on this rank's shards and writes what the test compares —
 * rank<r>.json (hash of W, losses, stats) and, on rank 0, W itself (params.safetensors).
 *
 * Usage: deno run … mpi_worker.ts '<json: DistProblem & { out, fault?, timeoutMs?, verifyEvery? }>'
 */

import { createTrainer } from "../../../runtime/trainer.ts";
import { writeSafetensors } from "../../../runtime/io/safetensors.ts";
import { sha256Hex } from "../../../runtime/io/atomic.ts";
import { type DistProblem, distProblem } from "../../helpers/dist_problem.ts";

const job = JSON.parse(Deno.args[0]) as DistProblem & {
  out: string;
  /**
   * "die": rank 1 exits after step 1; "hang": rank 1 stops calling collectives; "mismatch": rank 1
   * uses another rank r; "leader-busy": after step 1 rank 0 works alone for 2.5 s while the others
   * wait at an untimed barrier (must not trip the timeout).
   */
  fault?: "die" | "hang" | "mismatch" | "leader-busy";
  timeoutMs?: number;
  verifyEvery?: number;
  /** Exit without trainer.close() (MPI_Finalize must then run at exit). */
  skipClose?: boolean;
};
const rankEnv = Number(Deno.env.get("OMPI_COMM_WORLD_RANK") ?? Deno.env.get("PMI_RANK") ?? 0);
const { config, batches } = distProblem({
  ...job,
  rank: job.fault === "mismatch" && rankEnv === 1 ? job.rank + 1 : job.rank,
});
const trainer = await createTrainer({
  ...config,
  mode: "mpi",
  collectiveTimeoutMs: job.timeoutMs,
  verifyReplicasEvery: job.verifyEvery,
});
const per = job.devices / trainer.size;
const losses: number[][] = [];
for (const [s, all] of batches.entries()) {
  if (s === 1 && trainer.rank === 1 && job.fault === "die") Deno.exit(3);
  if (s === 1 && trainer.rank === 1 && job.fault === "hang") {
    await new Promise(() => setInterval(() => {}, 1000)); // alive, never joins a collective
  }
  if (s === 1 && job.fault === "leader-busy") {
    if (trainer.rank === 0) await new Promise((r) => setTimeout(r, 2500));
    await trainer.barrier({ timeoutMs: Infinity });
  }
  const mine = all.slice(trainer.rank * per, (trainer.rank + 1) * per);
  losses.push((await trainer.step(mine)).loss);
}
const params = await trainer.params();
const names = Object.keys(params).sort();
const bytes = names.flatMap((n) => Array.from(new Uint8Array(params[n].data.buffer)));
const snapshot = await trainer.snapshot();
/** This rank's IPv4 addresses (with --allow-sys), to show where a multi-host test placed it. */
const addresses = (() => {
  try {
    return Deno.networkInterfaces().filter((i) => i.family === "IPv4").map((i) => i.address);
  } catch {
    return [];
  }
})();
const result = {
  rank: trainer.rank,
  size: trainer.size,
  addresses,
  hash: await sha256Hex(Uint8Array.from(bytes)),
  losses,
  stats: trainer.stats(),
};
await Deno.writeTextFile(`${job.out}/rank${trainer.rank}.json`, JSON.stringify(result));
if (trainer.rank === 0) {
  await writeSafetensors(`${job.out}/params.safetensors`, params);
  await writeSafetensors(`${job.out}/snapshot.safetensors`, snapshot.tensors);
}
if (!job.skipClose) await trainer.close();
