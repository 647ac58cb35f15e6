/**
 * One MPI rank of `bench/dist.ts`. `collectives BYTES ITERS`: our all-reduce and all-gather on a
 * buffer of BYTES (the same loops as mpi_bandwidth.c). `train JSON`: steps of the benchmark
 * problem in mode "mpi"; rank 0 prints the trainer's stats and the median step time.
 */

import { MpiGroup } from "../runtime/dist/mpi_group.ts";
import { Mpi } from "../runtime/dist/mpi.ts";
import { createTrainer } from "../runtime/trainer.ts";
import { type BenchProblem, benchProblem } from "./dist_problem.ts";

const [what, ...args] = Deno.args;
if (what === "collectives") {
  const group = await MpiGroup.open();
  const bytes = Number(args[0]), iters = Number(args[1]);
  const n = bytes / 4;
  const buf = Float32Array.from({ length: n }, (_, i) => i % 97);
  const part = buf.subarray(0, n / group.size);
  const out = new Float32Array(n); // reused, as the C loop reuses its buffers
  const mpi = await Mpi.world();
  for (const op of ["allreduce", "allreduce-native", "allgather"]) {
    let t0 = 0;
    for (let i = -5; i < iters; i++) { // 5 untimed warm-up calls, as in the C loop
      if (i === 0) await group.barrier(), t0 = performance.now();
      if (op === "allreduce") await group.allReduce(buf, "sum", out);
      else if (op === "allreduce-native") out.set(buf), await mpi.allReduce(out, n, "f32", "sum");
      else await group.allGather(part, out);
    }
    const seconds = (performance.now() - t0) / 1000 / iters;
    if (group.rank === 0) console.log(JSON.stringify({ impl: "Deno", op, bytes, seconds }));
  }
  await group.finalize();
} else if (what === "train") {
  const spec = JSON.parse(args[0]) as BenchProblem & { steps: number; warmup: number };
  const { config, batches } = benchProblem(spec);
  const trainer = await createTrainer({ ...config, mode: "mpi" });
  const per = spec.devices / trainer.size;
  const times: number[] = [];
  let comm0 = 0;
  for (let s = 0; s < spec.warmup + spec.steps; s++) {
    if (s === spec.warmup) comm0 = (trainer.stats().communicationSeconds ?? 0) * s;
    const mine = batches[s % batches.length].slice(trainer.rank * per, (trainer.rank + 1) * per);
    const t0 = performance.now();
    await trainer.step(mine);
    if (s >= spec.warmup) times.push((performance.now() - t0) / 1000);
  }
  if (trainer.rank === 0) {
    times.sort((a, b) => a - b);
    const st = trainer.stats();
    const commPerStep = ((st.communicationSeconds ?? 0) * st.step - comm0) / spec.steps;
    console.log(JSON.stringify({ median: times[times.length >> 1], commPerStep, stats: st }));
  }
  await trainer.close();
}
