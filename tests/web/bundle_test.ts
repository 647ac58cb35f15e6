/**
 * The browser build: `deno task bundle` produces one ES module with no Deno, node: or npm:
 * references; the module works when imported; and in headless Chromium (Debian's package, WebGPU
 * through SwiftShader) the demo page computes a gradient and fine-tunes a tiny model with HD-PiSSA
 * while the loss falls, and every primitive family compiles for Chrome's shader compiler and
 * matches the CPU reference.
 *
 * Without Chromium the browser tests are skipped, unless REQUIRE_BROWSER=1 (CI sets it).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { bundle } from "../../cli/bundle.ts";
import { array, grad, interpret, matmul, sum, tanh } from "../../mod.ts";
import { CHROMIUM, runInChromium } from "../helpers/browser.ts";

const out = await Deno.makeTempDir({ prefix: "bundle-" });
const built = await bundle(out);
await Deno.copyFile(new URL("./conformance.js", import.meta.url), join(out, "conformance.js"));
await Deno.writeTextFile(
  join(out, "conformance.html"),
  `<!doctype html><script type="module" src="./conformance.js"></script>`,
);
const ignoreBrowser = !CHROMIUM && Deno.env.get("REQUIRE_BROWSER") !== "1";

Deno.test("bundle: one ES module, free of Deno, node: and npm: references", async () => {
  const text = await Deno.readTextFile(built.path);
  assert.ok(built.bytes > 100_000, `${built.bytes} bytes`);
  assert.doesNotMatch(text, /\bDeno\./);
  assert.doesNotMatch(text, /from\s+["'](node|npm):/);
  assert.doesNotMatch(text, /import\(["'](node|npm):/);
  for (const f of ["index.html", "demo.js", "hdpissa.js.map"]) await Deno.stat(join(out, f));
});

Deno.test("bundle: the module imports and runs the DSL (Deno as a plain ES module host)", async () => {
  const script = `import * as H from ${JSON.stringify("file://" + built.path)};
const g = H.interpret(H.grad((w) => H.sum(H.tanh(H.matmul(H.array([[1, 0, 0], [0, 1, 0]]), w)))), H.array([[1, 2], [3, 4], [5, 6]]));
console.log(JSON.stringify({ g: Array.from(g.data), api: ["jit", "grad", "vmap", "createTrainer", "gpu", "toDevice"].every((k) => typeof H[k] === "function") }));`;
  const res = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=js", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(res.code, 0, new TextDecoder().decode(res.stderr));
  const got = JSON.parse(new TextDecoder().decode(res.stdout));
  assert.ok(got.api);
  assert.deepEqual(got.g, Array.from(expectedGrad().data));
});

function expectedGrad() {
  const f = (w: Parameters<typeof matmul>[1]) =>
    sum(tanh(matmul(array([[1, 0, 0], [0, 1, 0]]), w)));
  return interpret(grad(f), array([[1, 2], [3, 4], [5, 6]])) as { data: Float32Array };
}

Deno.test({
  name: "browser: the demo page runs the DSL and, on WebGPU, HD-PiSSA training lowers the loss",
  ignore: ignoreBrowser,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const { value, console: lines } = await runInChromium(
      out,
      "index.html?steps=12",
      "window.demoResult",
    );
    const r = value as {
      dsl: number[];
      webgpu: string;
      losses: number[];
      error?: string;
      adapter?: string;
    };
    assert.ok(!r.error, `page error: ${r.error} ${lines.join(" | ")}`);
    const want = Array.from(expectedGrad().data);
    r.dsl.forEach((v, i) =>
      assert.ok(Math.abs(v - want[i]) < 1e-6, `grad[${i}] ${v} vs ${want[i]}`)
    );
    if (r.webgpu !== "trained") {
      // Say exactly why, and fail where the environment promises WebGPU.
      assert.notEqual(Deno.env.get("REQUIRE_BROWSER_WEBGPU"), "1", `no WebGPU: ${r.webgpu}`);
      console.warn(`browser WebGPU unavailable: ${r.webgpu}`);
      return;
    }
    assert.equal(r.losses.length, 12);
    assert.ok(r.losses.every(Number.isFinite));
    assert.ok(r.losses.at(-1)! < r.losses[0] - 0.05, `loss ${r.losses[0]} → ${r.losses.at(-1)}`);
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
    const r = value as Record<string, { ok: boolean; worst?: number; error?: string }> & {
      skipped?: string;
    };
    if (r.skipped) {
      assert.notEqual(Deno.env.get("REQUIRE_BROWSER_WEBGPU"), "1", r.skipped);
      return;
    }
    const failed = Object.entries(r).filter(([, v]) => typeof v === "string" || !v.ok);
    assert.deepEqual(failed, [], JSON.stringify(failed, null, 1));
    assert.ok(Object.keys(r).length >= 15);
  },
});
