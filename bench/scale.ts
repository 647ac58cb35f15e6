/**
 * Real-model scale on this machine: GPT-2 small and Qwen2.5-0.5B shapes (random weights), HD-PiSSA
 * and data-parallel LoRA, a few sequence lengths — ours on this machine's WebGPU adapter beside
 * the same step in PyTorch on the CPU (bench/torch_scale.py), measured in the same run. On a GPU
 * machine, `HDPISSA_TORCH_DEVICE=cuda` puts PyTorch's side on the GPU (bench/torch.ts).
 *
 *   deno run -A bench/scale.ts [--models gpt2,qwen] [--methods hdpissa,lora] [--seqs 64,256]
 *     [--devices 2] [--per-shard 1] [--steps 3] [--repeat 1] [--write]
 *
 * PyTorch comes from Debian (`python3-torch`, with `libopenblas0-pthread` for a threaded BLAS); the
 * benchmark installs them with apt-get when the system Python lacks torch (never CI). Each side of
 * each (model, method) runs in its own process, so one's memory never weighs on the other. `--write`
 * replaces the "Real-model scale" section of docs/benchmarks.md. `--repeat N` runs both sides N
 * times, alternating which goes first: on a shared machine the speed drifts between runs, so the
 * table gives the median over runs and the ratio of each side's fastest run.
 */

import { parseArgs } from "node:util";
import { SCALE_MODELS } from "./gpu_scale.ts";
import { ensureTorch, PYTHON, TORCH_DEVICE, TORCH_DEVICE_LABEL } from "./torch.ts";

const DOC = "docs/benchmarks.md";
const ON_CPU = TORCH_DEVICE === "cpu";
const HEADING = ON_CPU
  ? "## Real-model scale: this machine's adapter vs PyTorch on the CPU"
  : `## Real-model scale on a GPU: ours vs PyTorch ${TORCH_DEVICE_LABEL}`;

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    models: { type: "string", default: "gpt2,qwen" },
    methods: { type: "string", default: "hdpissa,lora" },
    seqs: { type: "string", default: "64,256" },
    devices: { type: "string", default: "2" },
    "per-shard": { type: "string", default: "1" },
    steps: { type: "string", default: "3" },
    repeat: { type: "string", default: "1" },
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

const torchVersion = await ensureTorch();
const repeat = Number(flags.repeat);
/** Each side's rows per (model, method, seq), one per repetition. */
const runs = new Map<string, { ours: Row[]; torch: Row[] }>();
for (let rep = 0; rep < repeat; rep++) {
  for (const model of flags.models!.split(",")) {
    for (const method of flags.methods!.split(",")) {
      const oursSide = () =>
        run(Deno.execPath(), [
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
      const torchSide = () =>
        run(PYTHON, [
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
      // Alternate which side runs first, so a drift in the machine's speed weighs on both.
      let ours: Row[], torch: Row[];
      if (rep % 2 === 0) [ours, torch] = [await oursSide(), await torchSide()];
      else [torch, ours] = [await torchSide(), await oursSide()];
      ours.forEach((o, i) => {
        const key = `${model}|${method}|${o.seq}`;
        if (!runs.has(key)) runs.set(key, { ours: [], torch: [] });
        runs.get(key)!.ours.push(o);
        runs.get(key)!.torch.push(torch[i]);
        console.error(
          `${model} ${method} seq ${o.seq}: ours ${o.medianStepMs} ms, PyTorch ${
            torch[i].medianStepMs
          } ms`,
        );
      });
    }
  }
}
const stepMs = (r: Row) => Number(r.medianStepMs);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
/** One row per (model, method, seq): the first run's setup figures, step times over the runs. */
const results = [...runs.values()].map(({ ours, torch }) => ({
  ours: { ...ours[0], medianStepMs: median(ours.map(stepMs)) } as Row,
  torch: { ...torch[0], medianStepMs: median(torch.map(stepMs)) } as Row,
  fastest: Math.min(...ours.map(stepMs)) / Math.min(...torch.map(stepMs)),
}));

const header = [
  "model",
  "method",
  "tokens/step",
  "ours: setup s",
  "first step s",
  "step s",
  "tokens/s",
  "planned peak GiB",
  `PyTorch ${TORCH_DEVICE_LABEL}: setup s`,
  "step s",
  "tokens/s",
  ON_CPU ? "peak RSS GiB" : "peak device GiB",
  "ours ÷ PyTorch (step)",
  ...(repeat > 1 ? ["fastest runs' ratio"] : []),
];
const lines = results.map(({ ours, torch, fastest }) =>
  [
    ours.model,
    ours.method,
    `${ours.tokensPerStep} (${K} × ${perShard} × ${ours.seq})`,
    ours.setupS,
    ours.firstStepS,
    (Number(ours.medianStepMs) / 1000).toFixed(2),
    Math.round(Number(ours.tokensPerStep) / (Number(ours.medianStepMs) / 1000)),
    ours.peakGiB,
    torch.setupS,
    (Number(torch.medianStepMs) / 1000).toFixed(2),
    Math.round(Number(ours.tokensPerStep) / (Number(torch.medianStepMs) / 1000)),
    ON_CPU ? torch.peakRssGiB : torch.peakDeviceGiB,
    `${(Number(ours.medianStepMs) / Number(torch.medianStepMs)).toFixed(2)}×`,
    ...(repeat > 1 ? [`${fastest.toFixed(2)}×`] : []),
  ].join(" | ")
);
const table = [
  `| ${header.join(" | ")} |`,
  `|${header.map(() => "---").join("|")}|`,
  ...lines.map((l) => `| ${l} |`),
].join("\n");
const adapter = await navigator.gpu?.requestAdapter();
const torchDevice = results[0]?.torch.device ?? TORCH_DEVICE;
const section = `${HEADING}

\`deno run -A bench/scale.ts\` (${new Date().toISOString().slice(0, 10)}; adapter: ${
  adapter ? adapter.info.description || adapter.info.device || adapter.info.vendor : "none"
}; PyTorch ${torchVersion} with ${
  K === 1 ? "one shard" : `K = ${K} shards run one after another`
}, ${
  ON_CPU ? "2 threads" : `on ${torchDevice}`
}). Random weights with the real shapes, r = 4, randomised SVD on both sides; "setup" is
the adapter initialisation after the weights exist, "step" the median of the steps after the first
(${steps} steps per length${
  repeat > 1 ? `; the median over ${repeat} runs of each side, which alternate` : ""
}), "planned peak" the step program's peak device bytes (inputs, state and
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
