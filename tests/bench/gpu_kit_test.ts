/**
 * The GPU session kit (bench/gpu_kit) has one chance per lent machine, so its two halves must agree
 * before a machine is ever asked for: every program session.sh runs from the kit is one pack.sh
 * bundles, every step it lists has its function, and its logs fit the device tool's eight files.
 * (bench/gpu_kit/rehearse.sh runs the whole session offline; this only guards edits.)
 */
import assert from "node:assert/strict";

const dir = new URL("../../bench/gpu_kit/", import.meta.url);
const read = (name: string) => Deno.readTextFileSync(new URL(name, dir));
const session = read("session.sh");
/** pack.sh without its comments (they name programs it does not bundle). */
const pack = read("pack.sh").split("\n").filter((l) => !l.trimStart().startsWith("#")).join("\n");

Deno.test("gpu kit: the scripts parse (bash -n)", async () => {
  for (const name of ["pack.sh", "session.sh", "rehearse.sh"]) {
    const out = await new Deno.Command("bash", {
      args: ["-n", new URL(name, dir).pathname],
      stderr: "piped",
    }).output();
    assert.ok(out.success, `${name}: ${new TextDecoder().decode(out.stderr)}`);
  }
});

Deno.test("gpu kit: every program the session runs is bundled by pack.sh", () => {
  const used = new Set([...session.matchAll(/bench\/_kit_([\w-]+)\.js/g)].map((m) => m[1]));
  const bundled = new Set(
    [...pack.matchAll(/(?:bench|cli)\/(?:gpu_kit\/)?([\w-]+)\.ts/g)].map((m) => m[1]),
  );
  assert.ok(used.size >= 7, `only ${used.size} kit programs found in session.sh`);
  for (const name of used) {
    assert.ok(bundled.has(name), `session.sh runs bench/_kit_${name}.js; pack.sh bundles none`);
  }
});

Deno.test("gpu kit: each step has its function, and the logs fit eight files", () => {
  const list = /^steps=\(([^)]*)\)/m.exec(session);
  assert.ok(list, "no steps=(…) list in session.sh");
  const steps = list[1].trim().split(/\s+/).map((s) => s.split(":"));
  for (const [name, cap, need] of steps) {
    assert.match(session, new RegExp(`^s_${name}\\(\\) \\{`, "m"), `no s_${name}() function`);
    assert.ok(Number(need) <= Number(cap), `${name}: needs ${need} s but is limited to ${cap} s`);
  }
  // One log per step, plus session.log: the device tool returns at most eight files.
  assert.ok(steps.length + 1 <= 8, `${steps.length} steps + session.log exceed eight files`);
});
