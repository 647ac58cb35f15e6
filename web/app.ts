/// <reference lib="dom" />
/**
 * The browser app (dist/index.html, built by `deno task bundle`): fine-tune the shipped base model
 * or a local model folder on a JSONL file with HD-PiSSA, PiSSA, LoRA or full fine-tuning on this
 * tab's GPU, watch the loss and the update rank, stop and resume, and download the merged model
 * and the PEFT adapter. It imports the library as the module beside it (dist/hdpissa.js); the work
 * is `FineTuneSession` (runtime/train/session.ts). The page's state is mirrored in `window.app`
 * for the headless-browser test (tests/web/bundle_test.ts).
 */

import * as H from "../web.ts";

type Phase =
  | "idle"
  | "loading"
  | "initialising"
  | "training"
  | "stopping"
  | "stopped"
  | "done"
  | "error";

/** What the page shows, readable from outside (the test polls it). */
interface AppState {
  /** The page has wired its controls. */
  ready: boolean;
  /** What the app is doing. */
  phase: Phase;
  /** The WebGPU adapter, or why there is none. */
  webgpu: string;
  /** The loaded model. */
  model?: {
    source: string;
    family: string;
    parameters: number;
    tokenizer: string;
    template: string;
    context: number;
  };
  /** The loaded data. */
  data?: { source: string; examples: number };
  /** Steps taken and the target. */
  step: number;
  steps: number;
  /** Mean loss of every step. */
  losses: number[];
  /** Update rank measurements: mean and max numerical rank over the adapted matrices. */
  ranks: { step: number; mean: number; max: number }[];
  /** Steps at which the runs stopped (a stop, then a resume, adds one). */
  stops: number[];
  /** Names of the files downloaded. */
  downloads: string[];
  /** The last error. */
  error?: string;
}

const app: AppState = {
  ready: false,
  phase: "idle",
  webgpu: "checking",
  step: 0,
  steps: 0,
  losses: [],
  ranks: [],
  stops: [],
  downloads: [],
};
(globalThis as { app?: AppState }).app = app;

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const input = (id: string) => $<HTMLInputElement>(id);
const select = (id: string) => $<HTMLSelectElement>(id);
const button = (id: string) => $<HTMLButtonElement>(id);

let modelFiles: H.ModelFiles | undefined;
let model: H.LoadedModel | undefined;
let dataText: { text: string; source: string } | undefined;
let examples: H.Example[] | undefined;
let session: H.FineTuneSession | undefined;

function log(line: string): void {
  const el = $("log");
  el.textContent += `${new Date().toLocaleTimeString()}  ${line}\n`;
  el.scrollTop = el.scrollHeight;
}

function status(text: string, error = false): void {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", error);
}

function fail(e: unknown): void {
  const message = e instanceof Error ? e.message : String(e);
  app.error = message;
  app.phase = "error";
  status(message, true);
  log(`error: ${message}`);
  console.error(e);
  refresh();
}

/** Enables the controls that make sense now. */
function refresh(): void {
  const busy = ["loading", "initialising", "training", "stopping"].includes(app.phase);
  const live = session !== undefined && session.state !== "closed";
  const paused = live && (session!.state === "stopped" || session!.state === "done");
  const gpuOk = app.webgpu !== "" && !app.webgpu.startsWith("none");
  for (const id of ["model-base", "model-dir", "model-files", "data-file", "data-sample"]) {
    (document.getElementById(id) as HTMLInputElement).disabled = busy || live;
  }
  for (
    const id of [
      "query-field",
      "response-field",
      "template",
      "method",
      "devices",
      "rank",
      "batch",
      "max-len",
      "seed",
      "rank-every",
    ]
  ) (document.getElementById(id) as HTMLInputElement).disabled = busy || live;
  for (const id of ["steps", "lr", "schedule"]) {
    (document.getElementById(id) as HTMLInputElement).disabled = busy;
  }
  button("start").disabled = busy || live || !model || !examples || !gpuOk;
  button("stop").disabled = !(app.phase === "training" || app.phase === "initialising");
  button("resume").disabled = busy || !paused ||
    (session!.state === "done" && Number(input("steps").value) <= session!.step);
  button("reset").disabled = busy || !live;
  button("download-model").disabled = busy || !paused;
  button("download-adapter").disabled = busy || !paused ||
    !["lora", "pissa"].includes(session!.settings.method);
}

// ---------------------------------------------------------------- model

const count = (params: Record<string, H.HostArray>) =>
  Object.values(params).reduce((n, a) => n + a.data.length, 0);

async function loadModel(files: H.ModelFiles): Promise<void> {
  app.phase = "loading";
  refresh();
  status(`loading ${files.source}…`);
  try {
    const loaded = await H.loadModelFiles(files);
    model = loaded;
    modelFiles = files;
    const c = loaded.config;
    app.model = {
      source: files.source,
      family: c.family,
      parameters: count(loaded.params),
      tokenizer: loaded.tokenizer.kind,
      template: loaded.template,
      context: c.context,
    };
    $("model-info").textContent = `${files.source}: ${c.family}, ${
      app.model.parameters.toLocaleString("en")
    } parameters (width ${c.width}, ${c.layers} layers, context ${c.context}), ${loaded.tokenizer.kind} tokenizer (vocab ${loaded.tokenizer.vocabSize}), template ${loaded.template}`;
    input("max-len").value = String(Math.min(Number(input("max-len").value), c.context));
    input("max-len").max = String(c.context);
    log(`model: ${$("model-info").textContent}`);
    app.phase = "idle";
    status(examples ? "ready to train" : "now load the data");
    parseData();
  } catch (e) {
    fail(e);
  }
  refresh();
}

/** A chosen .zip (as this app downloads): its files, without the common top folder. */
async function zipModelFiles(file: File): Promise<H.ModelFiles> {
  const entries = await H.unzipFiles(new Uint8Array(await file.arrayBuffer()), file.name);
  const names = Object.keys(entries);
  const top = names[0]?.split("/")[0];
  const strip = top && names.every((n) => n.startsWith(`${top}/`));
  return H.memoryFiles(
    Object.fromEntries(
      Object.entries(entries).map(([n, b]) => [strip ? n.slice(top.length + 1) : n, b]),
    ),
    file.name,
  );
}

function onModelInput(el: HTMLInputElement): void {
  const list = Array.from(el.files ?? []);
  if (list.length === 0) return;
  const chosen = list.length === 1 && list[0].name.endsWith(".zip")
    ? zipModelFiles(list[0])
    : Promise.resolve(H.fileListFiles(list));
  chosen.then(loadModel, fail);
}

// ---------------------------------------------------------------- data

/** Parses the loaded JSONL with the current field names; shows what a prompt looks like. */
function parseData(): void {
  if (!dataText) return;
  try {
    examples = H.parseJsonl(dataText.text, {
      query: input("query-field").value || "query",
      response: input("response-field").value || "response",
    }, dataText.source);
    app.data = { source: dataText.source, examples: examples.length };
    let detail = "";
    if (model) {
      const template = select("template").value || model.template;
      const lengths = examples.map((ex) =>
        H.encodeExample(model!.tokenizer, ex, template).tokens.length
      );
      const longest = Math.max(...lengths);
      detail = `, longest ${longest} tokens with template ${template}`;
    }
    $("data-info").textContent = `${dataText.source}: ${examples.length} examples${detail}\n` +
      `first: ${JSON.stringify(examples[0].query).slice(0, 120)} → ${
        JSON.stringify(examples[0].response).slice(0, 80)
      }`;
    app.error = undefined;
    if (app.phase === "error") app.phase = "idle";
    status(model ? "ready to train" : "now load a model");
  } catch (e) {
    examples = undefined;
    app.data = undefined;
    $("data-info").textContent = "no data loaded";
    fail(e);
  }
  refresh();
}

function setData(text: string, source: string): void {
  dataText = { text, source };
  parseData();
  if (examples) log(`data: ${examples.length} examples from ${source}`);
}

// ---------------------------------------------------------------- training

function settings(): H.SessionSettings {
  const num = (id: string) => Number(input(id).value);
  return {
    method: select("method").value as H.Method,
    devices: num("devices"),
    rank: num("rank"),
    steps: num("steps"),
    lr: num("lr"),
    schedule: select("schedule").value as "cosine" | "linear" | "constant",
    batch: num("batch"),
    maxLen: num("max-len"),
    seed: num("seed"),
    template: select("template").value || undefined,
    rankEvery: num("rank-every"),
  };
}

function drawCharts(s: H.FineTuneSession): void {
  const method = s.settings.method;
  const { devices: K, rank: r } = s.settings;
  $("loss-chart").innerHTML = H.lineChart(
    [{ name: `${method} loss`, points: s.losses.map((l) => [l.step, l.loss]) }],
    {
      title: `training loss (${method}, K = ${K}${method === "full" ? "" : `, r = ${r}`})`,
      xLabel: "step",
      yLabel: "loss (response tokens)",
      width: 560,
      height: 300,
    },
  );
  const points = app.ranks;
  const series = [
    {
      name: "mean rank of W − W₀",
      points: points.map((p) => [p.step, p.mean] as [number, number]),
    },
    { name: "max rank", points: points.map((p) => [p.step, p.max] as [number, number]) },
  ];
  // A reference line: LoRA's update B·A has rank ≤ r, PiSSA's B·A − B₀·A₀ ≤ 2r; HD-PiSSA's K
  // shards hold K·r directions at once (its update grows past them, step after step).
  // MiLoRA's is PiSSA's; DoRA rescales every row and full fine-tuning has no bound.
  const bounds: Partial<Record<string, [number, string]>> = {
    lora: [r, "LoRA bound r"],
    pissa: [2 * r, "PiSSA bound 2r"],
    milora: [2 * r, "MiLoRA bound 2r"],
    hdpissa: [K * r, "K·r"],
    "hd-milora": [K * r, "K·r"],
  };
  const [bound, what] = bounds[method] ?? [];
  if (bound !== undefined && points.length) {
    series.push({
      name: `${what} = ${bound}`,
      points: [[0, bound], [Math.max(1, s.settings.steps), bound]],
    });
  }
  $("rank-chart").innerHTML = H.lineChart(series, {
    title: "update rank of the adapted matrices (σᵢ > 10⁻³·σ₁)",
    xLabel: "step",
    yLabel: "numerical rank",
    width: 560,
    height: 300,
  });
}

function record(s: H.FineTuneSession): void {
  app.step = s.step;
  app.steps = s.settings.steps;
  app.losses = s.losses.map((l) => l.loss);
  app.ranks = s.ranks.map((rec) => {
    const n = rec.byType.reduce((a, t) => a + t.matrices, 0);
    return {
      step: rec.step,
      mean: rec.byType.reduce((a, t) => a + t.meanRank * t.matrices, 0) / n,
      max: Math.max(...rec.byType.map((t) => t.maxRank)),
    };
  });
  drawCharts(s);
  const last = s.losses.at(-1);
  if (last && app.phase === "training") {
    status(
      `step ${s.step} / ${s.settings.steps} · loss ${last.loss.toFixed(4)} · ${
        (last.seconds / s.losses.length).toFixed(2)
      } s/step`,
    );
  }
}

async function train(run: () => Promise<H.SessionState>): Promise<void> {
  const s = session!;
  app.phase = "training";
  refresh();
  try {
    const state = await run();
    record(s);
    app.phase = state === "done" ? "done" : "stopped";
    if (state === "stopped") app.stops.push(s.step);
    const last = s.losses.at(-1);
    const first = s.losses[0];
    status(
      `${state === "done" ? "finished" : "stopped"} at step ${s.step} / ${s.settings.steps}` +
        (last ? ` · loss ${first.loss.toFixed(4)} → ${last.loss.toFixed(4)}` : ""),
    );
    log(
      `${state} at step ${s.step}${
        state === "stopped" ? " (state kept in memory: Resume continues from here)" : ""
      }`,
    );
  } catch (e) {
    fail(e);
  }
  refresh();
}

async function start(): Promise<void> {
  if (!model || !examples) return;
  const cfg = settings();
  app.phase = "initialising";
  app.error = undefined;
  app.stops = [];
  refresh();
  status(cfg.method === "full" ? "uploading the model…" : "initial SVD of the weights…");
  let stopEarly = false;
  const onStop = () => (stopEarly = true);
  button("stop").addEventListener("click", onStop, { once: true });
  try {
    session = await H.FineTuneSession.create(model, examples, cfg);
  } catch (e) {
    button("stop").removeEventListener("click", onStop);
    fail(e);
    return;
  }
  button("stop").removeEventListener("click", onStop);
  const s = session;
  log(
    `start: ${cfg.method}, K = ${cfg.devices}, r = ${cfg.rank}, ${cfg.steps} steps, lr ${cfg.lr} ` +
      `(${cfg.schedule}), ${cfg.batch} × ${cfg.maxLen} tokens per shard, ${s.adapt.length} ` +
      `adapted matrices` +
      (s.truncated ? `; ${s.truncated} examples lose their response to max length` : ""),
  );
  status("compiling the training step (the first step takes longest)…");
  record(s);
  await train(() => {
    const running = s.run(record);
    if (stopEarly) s.stop();
    return running;
  });
}

async function resume(): Promise<void> {
  const s = session!;
  const changes = {
    steps: Number(input("steps").value),
    lr: Number(input("lr").value),
    schedule: select("schedule").value as "cosine" | "linear" | "constant",
  };
  log(`resume from step ${s.step}: ${changes.steps} steps, lr ${changes.lr} (${changes.schedule})`);
  await train(() => s.resume(changes, record));
}

async function reset(): Promise<void> {
  await session?.close();
  session = undefined;
  app.phase = "idle";
  app.step = 0;
  app.losses = [];
  app.ranks = [];
  $("loss-chart").innerHTML = "";
  $("rank-chart").innerHTML = "";
  status("ready to train");
  refresh();
}

// ---------------------------------------------------------------- downloads

function saveZip(name: string, files: Record<string, Uint8Array>): void {
  const folder = name.replace(/\.zip$/, "");
  const zip = H.zipFiles(
    Object.fromEntries(Object.entries(files).map(([n, b]) => [`${folder}/${n}`, b])),
  );
  const url = URL.createObjectURL(
    new Blob([zip as Uint8Array<ArrayBuffer>], { type: "application/zip" }),
  );
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  app.downloads.push(name);
  log(`download: ${name} (${Object.keys(files).join(", ")}; ${(zip.length / 1e6).toFixed(1)} MB)`);
}

function baseName(): string {
  const source = (modelFiles?.source ?? "model").replace(/ \(shipped\)$/, "").replace(/\/+$/, "")
    .replace(/\.zip$/, "");
  return source.split("/").at(-1) || "model";
}

async function downloadModel(): Promise<void> {
  const s = session!;
  try {
    saveZip(
      `${baseName()}-${s.settings.method}-step${s.step}.zip`,
      await s.mergedModelFiles(modelFiles),
    );
  } catch (e) {
    fail(e);
  }
}

async function downloadAdapter(): Promise<void> {
  const s = session!;
  try {
    const files = await s.adapterFiles(baseName());
    if (!files) throw new Error(`${s.settings.method} has no adapter: download the merged model`);
    saveZip(`${baseName()}-${s.settings.method}-adapter-step${s.step}.zip`, files);
  } catch (e) {
    fail(e);
  }
}

// ---------------------------------------------------------------- wiring

async function checkWebGpu(): Promise<void> {
  const nav = navigator as Navigator & { gpu?: GPU };
  if (!nav.gpu) {
    app.webgpu = "none: this browser (or its flags) does not expose WebGPU";
  } else {
    const adapter = await nav.gpu.requestAdapter();
    if (!adapter) app.webgpu = "none: navigator.gpu.requestAdapter() returned no adapter";
    else {
      const i = adapter.info;
      app.webgpu = [i?.vendor, i?.architecture, i?.description].filter(Boolean).join(" ") ||
        "an adapter (no description)";
    }
  }
  $("device").textContent = `WebGPU: ${app.webgpu}`;
}

function wire(): void {
  button("model-base").addEventListener(
    "click",
    () =>
      loadModel(
        H.urlFiles(new URL("models/base/", location.href), { source: "models/base (shipped)" }),
      ),
  );
  input("model-dir").addEventListener("change", (e) => onModelInput(e.target as HTMLInputElement));
  input("model-files").addEventListener(
    "change",
    (e) => onModelInput(e.target as HTMLInputElement),
  );
  input("data-file").addEventListener("change", async (e) => {
    const file = (e.target as HTMLInputElement).files?.[0];
    if (file) setData(await file.text(), file.name);
  });
  button("data-sample").addEventListener("click", async () => {
    try {
      const res = await fetch("sample.jsonl");
      if (!res.ok) throw new Error(`sample.jsonl: HTTP ${res.status}`);
      setData(await res.text(), "sample.jsonl");
    } catch (e) {
      fail(e);
    }
  });
  for (const id of ["query-field", "response-field", "template"]) {
    $(id).addEventListener("change", parseData);
  }
  input("steps").addEventListener("input", refresh);
  button("start").addEventListener("click", start);
  button("stop").addEventListener("click", () => {
    if (session) session.stop();
    if (app.phase === "training") {
      app.phase = "stopping";
      status("stopping after this step…");
    }
  });
  button("resume").addEventListener("click", resume);
  button("reset").addEventListener("click", reset);
  button("download-model").addEventListener("click", downloadModel);
  button("download-adapter").addEventListener("click", downloadAdapter);
}

wire();
checkWebGpu().catch((e) => (app.webgpu = `none: ${(e as Error).message}`)).finally(() => {
  app.ready = true;
  refresh();
});
