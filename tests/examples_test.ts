/**
 * Every research script in examples/ runs (as a user would run it, with the permissions its header
 * names) and prints what it promises.
 */

import assert from "node:assert/strict";

const root = new URL("../", import.meta.url).pathname;

/** Runs `deno <args>` from the repository root; asserts success and returns stdout. */
async function deno(args: string[]): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: root,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(
    out.code,
    0,
    `deno ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}\n${text}`,
  );
  return text;
}

function runExample(file: string, permissions: string[], args: string[] = []) {
  return deno(["run", ...permissions, `${root}examples/${file}`, ...args]);
}

const READ = ["--allow-read", "--allow-env"];

Deno.test("examples/grad_ir.ts prints the gradient's IR and values", async () => {
  const text = await runExample("grad_ir.ts", []);
  assert.match(text, /matmul/);
});

Deno.test("examples/update_rank.ts: HD-PiSSA's update rank exceeds PiSSA's and LoRA's", async () => {
  const text = await runExample("update_rank.ts", READ);
  const rankOf = (method: string) =>
    Number(text.match(new RegExp(`^${method}\\s+(\\d+)`, "m"))?.[1]);
  assert.ok(rankOf("hdpissa") > rankOf("pissa") && rankOf("pissa") > rankOf("lora"), text);
});

Deno.test("examples/custom_model.ts trains a custom model to a higher accuracy", async () => {
  const text = await runExample("custom_model.ts", READ);
  const acc = [...text.matchAll(/accuracy (?:before|after): ([\d.]+)%/g)].map((m) => Number(m[1]));
  assert.equal(acc.length, 2, text);
  assert.ok(acc[1] > acc[0] + 20, text);
});

Deno.test("examples/inspect_kernels.ts lists the fused kernels, one kernel's WGSL and timings", async () => {
  const text = await runExample("inspect_kernels.ts", READ);
  assert.match(text, /^Program: \d+ kernel\(s\)/m);
  assert.match(text, /@compute @workgroup_size/);
  assert.match(text, /kernel times \((the device.s clock|each run alone, wall)\):\n\s+[\d.]+ ms/);
});

Deno.test("examples/export_pissa_adapter.ts writes a PEFT adapter that reproduces the trained model", async () => {
  const dir = await Deno.makeTempDir();
  const text = await runExample("export_pissa_adapter.ts", [...READ, "--allow-write"], [dir]);
  const err = Number(text.match(/reproduces the trained weights to ([\d.e+-]+)/)?.[1]);
  assert.ok(err < 1e-5, text);
  const config = JSON.parse(await Deno.readTextFile(`${dir}/adapter_config.json`));
  assert.equal(config.peft_type, "LORA");
  assert.equal(config.r, 8);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("examples/load_hf_checkpoint.ts loads the shipped Hugging Face folder and generates", async () => {
  const text = await runExample("load_hf_checkpoint.ts", READ);
  assert.match(text, /1,034,064 parameters/);
  assert.match(text, /greedy continuation/);
  const nats = Number(text.match(/([\d.]+) nats\/byte/)?.[1]);
  assert.ok(nats > 0 && nats < 3, text);
});

Deno.test("docs/getting-started.md: the first script runs as written and its loss falls", async () => {
  const doc = await Deno.readTextFile(`${root}docs/getting-started.md`);
  const blocks = [...doc.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.equal(blocks.length, 2);
  const dir = await Deno.makeTempDir();
  const mod = JSON.stringify(`${root}mod.ts`);
  const source = blocks.map((b) => b.replaceAll('"./mod.ts"', mod)).join("\n") +
    "\nconsole.log(JSON.stringify(Object.keys(g)));\n";
  await Deno.writeTextFile(`${dir}/first.ts`, source);
  await deno(["check", `${dir}/first.ts`]); // the doc's code type-checks
  const text = await deno(["run", "--allow-read", "--allow-env", `${dir}/first.ts`]);
  const losses = [...text.matchAll(/^(\d+) \[ ([\d.]+), ([\d.]+) \]/gm)].map((m) => +m[2] + +m[3]);
  assert.equal(losses.length, 5, text);
  assert.ok(losses[4] < losses[0], text);
  assert.match(text, /\["head","hidden"\]/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("docs/training.md: the fine-tuning script runs as written and its saved model loads back", async () => {
  const doc = await Deno.readTextFile(`${root}docs/training.md`);
  const block = [...doc.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1])
    .find((b) => b.includes('loadModel("models/base")'));
  assert.ok(block, "the script block is missing");
  const dir = await Deno.makeTempDir();
  const out = `${dir}/my-model`;
  const source = block.replaceAll('"./mod.ts"', JSON.stringify(`${root}mod.ts`))
    .replaceAll('"runs/my-model"', JSON.stringify(out)) +
    `\nconst back = await loadModel(${
      JSON.stringify(out)
    });\nconsole.log("reloaded", back.config.layers);\n`;
  await Deno.writeTextFile(`${dir}/script.ts`, source);
  await deno(["check", `${dir}/script.ts`]);
  const text = await deno([
    "run",
    "--allow-read",
    "--allow-write",
    "--allow-env",
    `${dir}/script.ts`,
  ]);
  assert.equal([...text.matchAll(/^\d \[/gm)].length, 4, text);
  assert.match(text, /→/);
  assert.match(text, /reloaded 4/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("examples/custom_method.ts: a user-defined method learns, the same in modes virtual, devices and mpi", async () => {
  const lastLoss = (text: string) => Number(text.match(/loss last step: ([\d.]+)/)?.[1]);
  const virtual = await runExample("custom_method.ts", READ);
  const first = Number(virtual.match(/loss first step: ([\d.]+)/)?.[1]);
  assert.ok(lastLoss(virtual) < 0.8 * first, virtual);
  const devices = await runExample("custom_method.ts", READ, ["devices"]);
  assert.equal(lastLoss(devices), lastLoss(virtual), devices);
  let hasMpirun = false;
  try {
    hasMpirun = new Deno.Command("mpirun", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch { /* not installed */ }
  if (!hasMpirun && Deno.env.get("REQUIRE_MPI") !== "1") return;
  const out = await new Deno.Command("mpirun", {
    args: [
      "--allow-run-as-root",
      "--oversubscribe",
      "--bind-to",
      "none",
      "-np",
      "2",
      Deno.execPath(),
      "run",
      ...READ,
      "--allow-ffi",
      `${root}examples/custom_method.ts`,
      "mpi",
    ],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, text + new TextDecoder().decode(out.stderr));
  assert.equal(lastLoss(text), lastLoss(virtual), text);
});
