/**
 * The distributed runtime's benchmark (part of `deno task bench`):
 * 1. all-reduce and all-gather bandwidth of our FFI collectives against the same loops in C
 *    (mpi_bandwidth.c, built with mpicc), 2 ranks on this machine;
 * 2. step time and communication share vs K (1, 2, 4) for each mode, HD-PiSSA and DP-LoRA.
 * Prints markdown tables; `--write` replaces the "Distributed runtime" section of
 * docs/benchmarks.md. Needs OpenMPI (mpirun, mpicc).
 */

import { join } from "node:path";
import { createTrainer, type Method } from "../runtime/trainer.ts";
import { benchProblem } from "./dist_problem.ts";

const QUICK = Deno.args.includes("--quick");
const WRITE = Deno.args.includes("--write");
const here = new URL(".", import.meta.url).pathname;
const DOC = "docs/benchmarks.md";
const STEPS = QUICK ? 3 : 6, WARMUP = 2;

async function sh(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return text;
}

const MPIRUN = ["--allow-run-as-root", "--oversubscribe", "--bind-to", "none"];
const denoRank = (np: number, args: string[]) =>
  sh("mpirun", [
    ...MPIRUN,
    "-np",
    String(np),
    Deno.execPath(),
    "run",
    "-A",
    join(here, "dist_worker.ts"),
    ...args,
  ]);
const jsonLines = (text: string) =>
  text.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));

async function bandwidth(): Promise<string> {
  const dir = await Deno.makeTempDir();
  const exe = join(dir, "mpi_bandwidth");
  await sh("mpicc", ["-O2", "-o", exe, join(here, "mpi_bandwidth.c")]);
  const rows: string[] = [];
  for (const mib of QUICK ? [1, 4] : [1, 4, 16]) {
    const bytes = mib * 2 ** 20, iters = QUICK ? 10 : 30;
    // Best of five alternating rounds: the 2-core machine is noisy, and each side gets its best.
    const c: { op: string; seconds: number }[] = [], ours: typeof c = [];
    for (let round = 0; round < 5; round++) {
      c.push(
        ...jsonLines(
          await sh("mpirun", [...MPIRUN, "-np", "2", exe, String(bytes), String(iters)]),
        ),
      );
      ours.push(...jsonLines(await denoRank(2, ["collectives", String(bytes), String(iters)])));
    }
    const best = (rows: typeof c, op: string) =>
      Math.min(...rows.filter((r) => r.op === op).map((r) => r.seconds));
    // Each Deno row against the C loop of the same MPI calls, and our all-reduce also against C's
    // MPI_Allreduce (what it replaces to keep replicas identical).
    const rowsFor: [string, string, string][] = [
      ["MPI_Allreduce (C) vs MPI_Allreduce through our binding", "allreduce", "allreduce-native"],
      ["reduce-scatter + all-gather (C) vs our all-reduce", "rs-ag", "allreduce"],
      ["MPI_Allreduce (C) vs our all-reduce", "allreduce", "allreduce"],
      ["all-gather (C) vs ours", "allgather", "allgather"],
    ];
    for (const [title, cOp, op] of rowsFor) {
      const tc = best(c, cOp), to = best(ours, op);
      const gb = (t: number) => (bytes / t / 1e9).toFixed(2);
      rows.push(
        `| ${title} | ${mib} MiB | ${gb(tc)} | ${gb(to)} | ${(100 * tc / to).toFixed(0)}% |`,
      );
    }
  }
  await Deno.remove(dir, { recursive: true });
  return `| collective, 2 ranks (C loop vs Deno) | buffer | C (GB/s) | Deno (GB/s) | Deno / C |
|---|---|---|---|---|
${rows.join("\n")}`;
}

interface StepRow {
  method: Method;
  K: number;
  mode: string;
  stepMs: number;
  commMs?: number;
  bytes: number;
}

async function inProcess(method: Method, K: number, mode: "virtual" | "devices"): Promise<StepRow> {
  const { config, batches } = benchProblem({ method, devices: K, rank: 4 });
  const t = await createTrainer({ ...config, mode });
  const times: number[] = [];
  let comm0 = 0;
  for (let s = 0; s < WARMUP + STEPS; s++) {
    if (s === WARMUP) comm0 = (t.stats().communicationSeconds ?? 0) * s;
    const t0 = performance.now();
    await t.step(batches[s % batches.length]);
    if (s >= WARMUP) times.push(performance.now() - t0);
  }
  const st = t.stats();
  times.sort((a, b) => a - b);
  return {
    method,
    K,
    mode,
    stepMs: times[times.length >> 1],
    commMs: st.communicationSeconds === undefined
      ? undefined
      : ((st.communicationSeconds * st.step - comm0) / STEPS) * 1000,
    bytes: st.bytesCommunicated,
  };
}

async function underMpi(method: Method, K: number): Promise<StepRow> {
  const [r] = jsonLines(
    await denoRank(K, [
      "train",
      JSON.stringify({ method, devices: K, rank: 4, steps: STEPS, warmup: WARMUP }),
    ]),
  );
  return {
    method,
    K,
    mode: "mpi",
    stepMs: r.median * 1000,
    commMs: r.commPerStep * 1000,
    bytes: r.stats.bytesCommunicated,
  };
}

async function stepTable(): Promise<string> {
  const rows: StepRow[] = [];
  for (const method of ["hdpissa", "lora"] as Method[]) {
    for (const K of QUICK ? [1, 2] : [1, 2, 4]) {
      rows.push(await inProcess(method, K, "virtual"));
      rows.push(await inProcess(method, K, "devices"));
      rows.push(await underMpi(method, K));
      console.error(`done ${method} K=${K}`);
    }
  }
  const fmt = (r: StepRow) =>
    `| ${r.method} | ${r.K} | ${r.mode} | ${r.stepMs.toFixed(1)} | ${
      r.commMs === undefined
        ? "in-program"
        : `${r.commMs.toFixed(2)} (${(100 * r.commMs / r.stepMs).toFixed(1)}%)`
    } | ${(r.bytes / 1024).toFixed(1)} |`;
  return `| method | K | mode | step (ms, median) | communication per step (ms, share) | KiB sent per rank per step |
|---|---|---|---|---|---|
${rows.map(fmt).join("\n")}`;
}

if (Deno.args.includes("--bandwidth-only")) {
  console.log(await bandwidth());
  Deno.exit(0);
}
const cpu = (await sh("sh", ["-c", "nproc"])).trim();
const section = `## Distributed runtime

Measured by \`deno task bench\` (bench/dist.ts) on this machine (${cpu} cores, WebGPU on the CPU, OpenMPI over shared memory, ranks oversubscribed beyond ${cpu}).
Problem: a Llama of width 64, 2 layers, every projection adapted, r = 4 per device, 2 × 32 tokens per shard.

### Collective bandwidth (bytes of the buffer / time per call, best of 5 alternating runs)

${await bandwidth()}

### Step time and communication share vs K

${await stepTable()}

In mode mpi the communication time includes waiting for the slowest rank: K ranks share this
machine's ${cpu} cores, so it measures load imbalance as much as transfer. In mode devices the
collective is a host-side copy.
`;
console.log(section);
if (WRITE) {
  let doc = await Deno.readTextFile(DOC).catch(() => "# Benchmarks\n");
  const at = doc.indexOf("## Distributed runtime");
  if (at >= 0) {
    const end = doc.indexOf("\n## ", at + 5);
    doc = doc.slice(0, at) + section + (end >= 0 ? doc.slice(end + 1) : "");
  } else doc = doc.trimEnd() + "\n\n" + section;
  await Deno.writeTextFile(DOC, doc);
}
