/**
 * Real-model scale on this machine: GPT-2 small and Qwen2.5-0.5B shapes (random weights), HD-PiSSA
 * and data-parallel LoRA, a few sequence lengths — ours on this machine's WebGPU adapter beside
 * the same step in PyTorch on the CPU (bench/torch_scale.py), measured in the same run.
 *
 *   deno run -A bench/scale.ts [--models gpt2,qwen] [--methods hdpissa,lora] [--seqs 64,256]
 *     [--devices 2] [--per-shard 1] [--steps 3] [--write]
 *
 * PyTorch comes from Debian (`python3-torch`, with `libopenblas0-pthread` for a threaded BLAS); the
 * benchmark installs them with apt-get when the system Python lacks torch (never CI). Each side of
 * each (model, method) runs in its own process, so one's memory never weighs on the other. `--write`
 * replaces the "Real-model scale" section of docs/benchmarks.md.
 */

import { parseArgs } from "node:util";
import { SCALE_MODELS } from "./gpu_scale.ts";

const DOC = "docs/benchmarks.md";
const HEADING = "## Real-model scale: this machine's adapter vs PyTorch on the CPU";
const PYTHON = "/usr/bin/python3"; // Debian's own: another python3 earlier on PATH lacks its torch

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    models: { type: "string", default: "gpt2,qwen" },
    methods: { type: "string", default: "hdpissa,lora" },
    seqs: { type: "string", default: "64,256" },
    devices: { type: "string", default: "2" },
    "per-shard": { type: "string", default: "1" },
    steps: { type: "string", default: "3" },
    write: { type: "boolean", default: false },
  },
});
const seqs = flags.seqs!.split(",").map(Number);
const K = Number(flags.devices), perShard = Number(flags["per-shard"]);
const steps = Number(flags.steps);

type Row = Record<string, number | string | boolean>;

async function run(cmd: string, args: string[]): Promise<Row[]> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(
      `${cmd} ${args.slice(0, 3).join(" ")} failed:\n${new TextDecoder().decode(out.stderr)}`,
    );
  }
  return text.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
}

async function ensureTorch(): Promise<string> {
  const probe = () =>
    new Deno.Command(PYTHON, { args: ["-c", "import torch; print(torch.__version__)"] }).output();
  let out = await probe().catch(() => undefined);
  if (!out?.success) {
    console.error("installing Debian's python3-torch and libopenblas0-pthread (apt-get)…");
    const apt = await new Deno.Command("apt-get", {
      args: ["install", "-y", "-qq", "python3-torch", "libopenblas0-pthread"],
      env: { DEBIAN_FRONTEND: "noninteractive" },
    }).output();
    if (!apt.success) throw new Error("apt-get install python3-torch failed (run it as root)");
    out = await probe();
  }
  return new TextDecoder().decode(out!.stdout).trim();
}

const torchVersion = await ensureTorch();
const results: { ours: Row; torch: Row }[] = [];
for (const model of flags.models!.split(",")) {
  for (const method of flags.methods!.split(",")) {
    const ours = await run(Deno.execPath(), [
      "run",
      "-A",
      "--no-lock",
      new URL("./gpu_scale.ts", import.meta.url).pathname,
      model,
      method,
      seqs.join(","),
      String(K),
      String(perShard),
      String(steps),
    ]);
    const torch = await run(PYTHON, [
      new URL("./torch_scale.py", import.meta.url).pathname,
      JSON.stringify({
        model: SCALE_MODELS[model],
        method,
        devices: K,
        rank: 4,
        perShard,
        seqs,
        steps,
      }),
    ]);
    ours.forEach((o, i) => {
      results.push({ ours: o, torch: torch[i] });
      console.error(
        `${model} ${method} seq ${o.seq}: ours ${o.medianStepMs} ms, PyTorch ${
          torch[i].medianStepMs
        } ms`,
      );
    });
  }
}

const header = [
  "model",
  "method",
  "tokens/step",
  "ours: setup s",
  "first step s",
  "step s",
  "tokens/s",
  "planned peak GiB",
  "PyTorch CPU: setup s",
  "step s",
  "tokens/s",
  "peak RSS GiB",
  "ours ÷ PyTorch (step)",
];
const lines = results.map(({ ours, torch }) =>
  [
    ours.model,
    ours.method,
    `${ours.tokensPerStep} (${K} × ${perShard} × ${ours.seq})`,
    ours.setupS,
    ours.firstStepS,
    (Number(ours.medianStepMs) / 1000).toFixed(2),
    ours.tokensPerS,
    ours.peakGiB,
    torch.setupS,
    (Number(torch.medianStepMs) / 1000).toFixed(2),
    torch.tokensPerS,
    torch.peakRssGiB,
    `${(Number(ours.medianStepMs) / Number(torch.medianStepMs)).toFixed(2)}×`,
  ].join(" | ")
);
const table = [
  `| ${header.join(" | ")} |`,
  `|${header.map(() => "---").join("|")}|`,
  ...lines.map((l) => `| ${l} |`),
].join("\n");
const adapter = await navigator.gpu?.requestAdapter();
const section = `${HEADING}

\`deno run -A bench/scale.ts\` (${new Date().toISOString().slice(0, 10)}; adapter: ${
  adapter ? adapter.info.description || adapter.info.device || adapter.info.vendor : "none"
}; PyTorch ${torchVersion} with ${
  K === 1 ? "one shard" : `K = ${K} shards run one after another`
}, 2 threads). Random weights with the real shapes, r = 4, randomised SVD on both sides; "setup" is
the adapter initialisation after the weights exist, "step" the median of the steps after the first
(${steps} steps per length), "planned peak" the step program's peak device bytes (inputs, state and
activations), "peak RSS" the PyTorch process's resident maximum.

${table}
`;
console.log(section);
if (flags.write) {
  let doc = await Deno.readTextFile(DOC);
  const at = doc.indexOf(HEADING);
  if (at >= 0) {
    const end = doc.indexOf("\n## ", at + HEADING.length);
    doc = doc.slice(0, at) + section + (end >= 0 ? doc.slice(end + 1) : "");
  } else doc = doc.trimEnd() + "\n\n" + section;
  await Deno.writeTextFile(DOC, doc);
}
