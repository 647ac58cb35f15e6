/**
 * One MPI rank of the collective unit tests (run under mpirun by mpi_test.ts): every collective on
 * sizes 0, 1, odd and > 16 MiB, in every dtype the runtime sends (f32, f64, i32, u8), checked against the values the
 * ranks are known to hold. Exits non-zero with the first mismatch.
 */

import type { CommArray } from "../../../runtime/dist/collectives.ts";
import { MpiGroup } from "../../../runtime/dist/mpi_group.ts";

const group = await MpiGroup.open({ timeoutMs: 120_000 });
const { rank, size } = group;
const fail = (msg: string): never => {
  console.error(`rank ${rank}: ${msg}`);
  Deno.exit(1);
};
const value = (r: number, i: number) => ((r + 1) * 1000 + (i % 997)) % 251; // exact in f32, i32, u8
const types = {
  f32: (n: number) => new Float32Array(n),
  f64: (n: number) => new Float64Array(n),
  i32: (n: number) => new Int32Array(n),
  u8: (n: number) => new Uint8Array(n),
};
const sizes = [0, 1, 7, 4_200_011]; // 4.2M elements: 16.8 MB as f32, 33.6 MB as f64
for (const [type, make] of Object.entries(types)) {
  for (const n of sizes) {
    const mine: CommArray = make(n);
    for (let i = 0; i < n; i++) mine[i] = value(rank, i);
    const all = await group.allGather(mine);
    if (all.length !== n * size || all.constructor !== mine.constructor) {
      fail(`allGather ${type}[${n}] gave ${all.constructor.name}[${all.length}]`);
    }
    for (let r = 0; r < size; r++) {
      for (let i = 0; i < n; i += n > 100 ? 9973 : 1) {
        if (all[r * n + i] !== value(r, i)) fail(`allGather ${type}[${n}] at ${r}:${i}`);
      }
    }
    const b = make(n);
    if (rank === size - 1) { for (let i = 0; i < n; i++) b[i] = value(7, i); }
    await group.broadcast(b, size - 1);
    for (let i = 0; i < n; i += n > 100 ? 9973 : 1) {
      if (b[i] !== value(7, i)) fail(`broadcast ${type}[${n}] at ${i}`);
    }
    if (type === "u8") continue;
    if (type === "f64") continue; // gathered (control values), never reduced
    const sum = await group.allReduce(mine as Float32Array | Int32Array, "sum");
    for (let i = 0; i < n; i++) {
      let want = 0;
      for (let r = 0; r < size; r++) want += value(r, i);
      if (sum[i] !== want) fail(`allReduce sum ${type}[${n}] at ${i}: ${sum[i]} ≠ ${want}`);
    }
    if (type === "f32") {
      const mean = await group.allReduce(mine as Float32Array, "mean");
      for (let i = 0; i < n; i += n > 100 ? 9973 : 1) {
        if (mean[i] !== Math.fround(sum[i] / size)) fail(`allReduce mean f32[${n}] at ${i}`);
      }
    }
  }
}
// Replica identity: a sum whose rounding depends on association gives the same bytes everywhere.
const noisy = Float32Array.from(
  { length: 1001 },
  (_, i) => Math.sin(i * (rank + 1)) * 10 ** (i % 9),
);
const reduced = await group.allReduce(noisy, "sum");
const digests = await group.allGather(
  new Uint8Array(await crypto.subtle.digest("SHA-256", reduced)),
);
for (let r = 1; r < size; r++) {
  if (digests.subarray(32 * r, 32 * r + 32).some((v, i) => v !== digests[i])) {
    fail(`allReduce results differ between rank 0 and rank ${r}`);
  }
}
// All-gathers beyond MPI's int counts go in pieces: shown with the limit lowered to 1000 elements.
MpiGroup.maxCount = 1000;
const big = Float32Array.from({ length: 7777 }, (_, i) => value(rank, i));
const gathered = await group.allGather(big);
for (let r = 0; r < size; r++) {
  for (let i = 0; i < 7777; i++) {
    if (gathered[r * 7777 + i] !== value(r, i)) fail(`chunked allGather at ${r}:${i}`);
  }
}
MpiGroup.maxCount = 2 ** 31 - 1;
await group.barrier();
const c = group.counters;
console.log(JSON.stringify({ rank, size, backend: group.backend, counters: c }));
await group.finalize();
