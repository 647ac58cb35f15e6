/**
 * The browser build: `deno task bundle` produces one ES module with no Deno, node: or npm:
 * references (the tokenizers' npm packages are bundled) plus the fine-tuning app; the module works
 * when imported; in headless Chromium (Debian's package, WebGPU through SwiftShader) the app loads
 * the shipped base by URL and as a chosen folder (a real file input, set over the DevTools
 * protocol), a JSONL file with its own field names, fine-tunes with HD-PiSSA, stops, resumes with
 * more steps from the same step, plots loss and update rank, and downloads the merged model, which
 * parses back with the base's tensor names and shapes and loads back into the app as a .zip; and
 * every primitive family compiles for Chrome's shader compiler and matches the CPU reference.
 *
 * Without Chromium the browser tests are skipped, unless REQUIRE_BROWSER=1 (CI sets it).
 * WRITE_SCREENSHOT=1 keeps the app's screenshot as docs/browser-app.png.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { bundle } from "../../cli/bundle.ts";
import { array, grad, interpret, matmul, sum, tanh } from "../../mod.ts";
import { taskSplits } from "../../runtime/data/synthetic.ts";
import { parseSafetensors } from "../../runtime/io/safetensors_format.ts";
import { unzipFiles } from "../../runtime/io/zip.ts";
import { loadModelFiles, memoryFiles } from "../../runtime/models/model_bytes.ts";
import { loadModel } from "../../runtime/models/model_dir.ts";
import { type BrowserPage, CHROMIUM, runInChromium, withChromium } from "../helpers/browser.ts";

const out = await Deno.makeTempDir({ prefix: "bundle-" });
const built = await bundle(out);
await Deno.copyFile(new URL("./conformance.js", import.meta.url), join(out, "conformance.js"));
await Deno.writeTextFile(
  join(out, "conformance.html"),
  `<!doctype html><script type="module" src="./conformance.js"></script>`,
);
const ignoreBrowser = !CHROMIUM && Deno.env.get("REQUIRE_BROWSER") !== "1";
const BASE_DIR = new URL("../../models/base", import.meta.url).pathname;

Deno.test("bundle: one ES module, free of Deno, node: and npm: references, and the app beside it", async () => {
  const text = await Deno.readTextFile(built.path);
  assert.ok(built.bytes > 100_000, `${built.bytes} bytes`);
  for (const file of [built.path, built.app]) {
    const code = await Deno.readTextFile(file);
    assert.doesNotMatch(code, /\bDeno\./, file);
    assert.doesNotMatch(code, /from\s+["'](node|npm):/, file);
    assert.doesNotMatch(code, /import\(["'](node|npm):/, file);
  }
  // The tokenizer library is inside, and the app imports the module beside it only.
  assert.match(text, /\n\/\/ .*@huggingface\/tokenizers\/.*\.mjs\n/);
  assert.match(text, /\bHfTokenizer = class\b/);
  assert.match(await Deno.readTextFile(built.app), /from "\.\/hdpissa\.js"/);
  for (
    const f of [
      "index.html",
      "app.js",
      "hdpissa.js.map",
      "sample.jsonl",
      "models/base/config.json",
      "models/base/model.safetensors",
    ]
  ) await Deno.stat(join(out, f));
});

Deno.test("bundle: the module imports and runs the DSL (Deno as a plain ES module host)", async () => {
  const script = `import * as H from ${JSON.stringify("file://" + built.path)};
const g = H.interpret(H.grad((w) => H.sum(H.tanh(H.matmul(H.array([[1, 0, 0], [0, 1, 0]]), w)))), H.array([[1, 2], [3, 4], [5, 6]]));
const tok = new H.ByteTokenizer();
console.log(JSON.stringify({ g: Array.from(g.data), api: ["jit", "grad", "vmap", "createTrainer", "gpu", "toDevice", "loadModelFiles", "zipFiles"].every((k) => typeof H[k] === "function"), ids: tok.encode("hi") }));`;
  const res = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=js", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(res.code, 0, new TextDecoder().decode(res.stderr));
  const got = JSON.parse(new TextDecoder().decode(res.stdout));
  assert.ok(got.api);
  assert.deepEqual(got.ids, [104, 105]);
  assert.deepEqual(got.g, Array.from(expectedGrad().data));
});

function expectedGrad() {
  const f = (w: Parameters<typeof matmul>[1]) =>
    sum(tanh(matmul(array([[1, 0, 0], [0, 1, 0]]), w)));
  return interpret(grad(f), array([[1, 2], [3, 4], [5, 6]])) as { data: Float32Array };
}

/** The app's state (web/app.ts's AppState, as far as the test reads it). */
interface AppState {
  phase: string;
  webgpu: string;
  model?: { source: string; parameters: number; tokenizer: string; template: string };
  data?: { source: string; examples: number };
  step: number;
  steps: number;
  losses: number[];
  ranks: { step: number; mean: number; max: number }[];
  stops: number[];
  downloads: string[];
  error?: string;
}

/** Sets form fields as a user would (value, then a change event). */
const setFields = (p: BrowserPage, fields: Record<string, string | number>) =>
  p.evaluate(`(() => { for (const [id, v] of Object.entries(${JSON.stringify(fields)})) {
    const e = document.getElementById(id); e.value = String(v);
    e.dispatchEvent(new Event("input")); e.dispatchEvent(new Event("change")); } })()`);
const click = (p: BrowserPage, id: string) =>
  p.evaluate(`document.getElementById(${JSON.stringify(id)}).click()`);
/** Waits for the app to reach one of `phases` (an error ends the wait with its message). */
async function phase(p: BrowserPage, phases: string[], timeoutMs?: number): Promise<AppState> {
  await p.waitFor(`${JSON.stringify([...phases, "error"])}.includes(app.phase)`, timeoutMs);
  const state = await p.evaluate<AppState>("app");
  assert.ok(phases.includes(state.phase), `app: ${state.phase}: ${state.error}`);
  return state;
}

/** A downloaded file, once Chromium has finished writing it. */
async function downloaded(dir: string, name: string, timeoutMs = 30_000): Promise<Uint8Array> {
  const until = Date.now() + timeoutMs;
  while (true) {
    const names = [...Deno.readDirSync(dir)].map((e) => e.name);
    if (names.includes(name) && !names.some((n) => n.endsWith(".crdownload"))) {
      return await Deno.readFile(join(dir, name));
    }
    if (Date.now() > until) throw new Error(`no download ${name} in ${dir}: ${names.join(", ")}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

Deno.test({
  name:
    "browser: the app loads the base by URL and as a chosen folder, a JSONL file, fine-tunes with HD-PiSSA, stops, resumes and downloads the merged model",
  ignore: ignoreBrowser,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const downloads = await Deno.makeTempDir({ prefix: "downloads-" });
    const dataDir = await Deno.makeTempDir({ prefix: "data-" });
    const dataPath = join(dataDir, "addition.jsonl");
    // The data's own field names, mapped in the form (as `deno task train --query-field …`).
    const items = taskSplits("addition", { train: 24, test: 0 }, 5).train;
    await Deno.writeTextFile(
      dataPath,
      items.map((it) => JSON.stringify({ instruction: it.query, output: it.response })).join("\n"),
    );
    const base = await loadModel(BASE_DIR);
    const result = await withChromium(out, "index.html", async (p) => {
      await p.waitFor("window.app?.ready");
      let app = await p.evaluate<AppState>("app");
      // 1. The shipped base, fetched from the server.
      await click(p, "model-base");
      app = await phase(p, ["idle"]);
      assert.equal(app.model!.parameters, 1_034_064);
      assert.equal(app.model!.tokenizer, "byte");
      assert.equal(app.model!.template, "compact");
      // 2. The same folder chosen with <input webkitdirectory> (Chromium lists it, paths and all).
      await p.setInputFiles("#model-dir", [BASE_DIR]);
      await p.waitFor(`app.model?.source === "base" || app.phase === "error"`);
      app = await phase(p, ["idle"]);
      // 3. The JSONL file through its input, after naming its fields.
      await setFields(p, { "query-field": "instruction", "response-field": "output" });
      await p.setInputFiles("#data-file", [dataPath]);
      await p.waitFor("app.data || app.phase === 'error'");
      app = await phase(p, ["idle"]);
      assert.deepEqual(app.data, { source: "addition.jsonl", examples: 24 });
      if (app.webgpu.startsWith("none")) {
        // Say exactly why, and fail where the environment promises WebGPU.
        assert.notEqual(Deno.env.get("REQUIRE_BROWSER_WEBGPU"), "1", `no WebGPU: ${app.webgpu}`);
        console.warn(`browser WebGPU unavailable: ${app.webgpu}`);
        return undefined;
      }
      // 4. Train: Start, then Stop at once (the run stops after its first step) …
      await setFields(p, {
        method: "hdpissa",
        devices: 2,
        rank: 2,
        steps: 3,
        lr: 0.005,
        schedule: "constant",
        batch: 2,
        "max-len": 96,
        "rank-every": 1,
      });
      await p.evaluate(`document.getElementById("start").click();
        document.getElementById("stop").click();`);
      app = await phase(p, ["stopped"], 240_000);
      assert.equal(app.step, 1);
      assert.deepEqual(app.stops, [1]);
      assert.equal(app.losses.length, 1);
      // … then Resume with more steps: the trainer is rebuilt and restored at step 1.
      await setFields(p, { steps: 4 });
      await click(p, "resume");
      app = await phase(p, ["done"], 120_000);
      assert.equal(app.step, 4);
      assert.equal(app.steps, 4);
      const charts = await p.evaluate<number[]>(
        `["loss-chart", "rank-chart"].map((id) => document.querySelectorAll("#" + id + " svg path").length)`,
      );
      assert.ok(charts[0] >= 1 && charts[1] >= 2, `chart paths ${charts}`);
      // 5. Downloads: HD-PiSSA's result is the merged model; it has no adapter.
      assert.ok(await p.evaluate(`document.getElementById("download-adapter").disabled`));
      await click(p, "download-model");
      await p.waitFor("app.downloads.length === 1");
      const zip = await downloaded(downloads, "base-hdpissa-step4.zip");
      const shot = await p.screenshot();
      // 6. After a reset, the downloaded .zip loads back as a model through the files input.
      await click(p, "reset");
      await phase(p, ["idle"]);
      await p.setInputFiles("#model-files", [join(downloads, "base-hdpissa-step4.zip")]);
      await p.waitFor(`app.model?.source === "base-hdpissa-step4.zip" || app.phase === "error"`);
      const reloaded = await phase(p, ["idle"]);
      assert.equal(reloaded.model!.parameters, 1_034_064);
      assert.equal(reloaded.model!.template, "compact");
      return { app, zip, shot };
    }, { downloadDir: downloads, timeoutMs: 420_000 });
    await Deno.remove(dataDir, { recursive: true });
    if (!result) return;
    const { app, zip, shot } = result;
    assert.equal(app.losses.length, 4);
    assert.ok(app.losses.every(Number.isFinite), `losses ${app.losses}`);
    assert.ok(app.losses[3] < app.losses[0], `loss ${app.losses[0]} → ${app.losses[3]}`);
    // Rank of W − W₀: 0 before training, then positive and at most a matrix's (144).
    assert.deepEqual(app.ranks.map((r) => r.step), [0, 1, 2, 3, 4]);
    assert.equal(app.ranks[0].max, 0);
    assert.ok(
      app.ranks.slice(1).every((r) => r.mean > 0 && r.max <= 144),
      JSON.stringify(app.ranks),
    );
    // The download: a folder with config.json and model.safetensors that loads as the base does.
    const entries = await unzipFiles(zip, "base-hdpissa-step4.zip");
    const files = Object.fromEntries(
      Object.entries(entries).map(([n, b]) => [n.replace(/^base-hdpissa-step4\//, ""), b]),
    );
    assert.deepEqual(Object.keys(files).sort(), ["config.json", "model.safetensors"]);
    const stored = await parseSafetensors(files["model.safetensors"]);
    const baseStored = await parseSafetensors(
      await Deno.readFile(join(BASE_DIR, "model.safetensors")),
    );
    const shapes = (t: Record<string, { shape: number[] }>) =>
      Object.fromEntries(Object.entries(t).map(([n, a]) => [n, a.shape]));
    assert.deepEqual(shapes(stored.tensors), shapes(baseStored.tensors));
    const tuned = await loadModelFiles(memoryFiles(files, "download"));
    assert.deepEqual(tuned.config, base.config);
    assert.equal(tuned.template, "compact");
    const q = "model.layers.0.self_attn.q_proj.weight", emb = "model.embed_tokens.weight";
    assert.ok(tuned.params[q].data.some((v, i) => v !== base.params[q].data[i]), "q_proj moved");
    assert.deepEqual(tuned.params[emb], base.params[emb]);
    // The screenshot: a PNG of the page.
    assert.deepEqual(Array.from(shot.subarray(0, 8)), [137, 80, 78, 71, 13, 10, 26, 10]);
    assert.ok(shot.length > 20_000, `${shot.length} bytes`);
    if (Deno.env.get("WRITE_SCREENSHOT") === "1") {
      await Deno.writeFile(new URL("../../docs/browser-app.png", import.meta.url), shot);
    }
    await Deno.remove(downloads, { recursive: true });
  },
});

Deno.test({
  name:
    "browser: every primitive family compiles for Chrome's WGSL compiler and matches the CPU reference",
  ignore: ignoreBrowser,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const { value } = await runInChromium(out, "conformance.html", "window.conformance");
    const { skipped, subgroupsOffered, f16Offered, ...r } = value as
      & Record<
        string,
        { ok: boolean; worst?: number; error?: string; subgroups?: boolean; half?: boolean }
      >
      & { skipped?: string; subgroupsOffered?: boolean; f16Offered?: boolean };
    if (skipped) {
      assert.notEqual(Deno.env.get("REQUIRE_BROWSER_WEBGPU"), "1", skipped);
      return;
    }
    const failed = Object.entries(r).filter(([, v]) => typeof v === "string" || !v.ok);
    assert.deepEqual(failed, [], JSON.stringify(failed, null, 1));
    assert.ok(Object.keys(r).length >= 15);
    // Subgroup row reductions ran where the adapter offers subgroups (Chromium's SwiftShader does:
    // the only adapter here that runs them), and the tree form otherwise.
    assert.equal(r.rows_tree.subgroups, false);
    assert.equal(r.rows_subgroups.subgroups, subgroupsOffered);
    const subgroupCases = Object.keys(r).filter((k) => k.startsWith("rows_subgroups"));
    assert.ok(subgroupCases.length >= 7, subgroupCases.join());
    for (const k of subgroupCases) assert.equal(r[k].subgroups, subgroupsOffered, k);
    // f16 ran through Tint: in 16-bit words (array<f16>) where the adapter grants shader-f16.
    assert.equal(r.f16_ops.half, f16Offered);
    assert.equal(r.f16_words.half, false);
    if (Deno.env.get("REQUIRE_BROWSER_WEBGPU") === "1") {
      assert.ok(
        subgroupsOffered,
        "Chromium's WebGPU offers no subgroups: their kernels go untested",
      );
    }
  },
});
