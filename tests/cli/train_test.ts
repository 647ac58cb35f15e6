/**
 * `deno task train` end to end on a tiny byte-level model (seconds per run): a default-style run,
 * resume after SIGKILL at a random step, corrupt-checkpoint fallback, the NaN guard, bad flags.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { initParams } from "../../dsl/nn/transformer.ts";
import { readSafetensors } from "../../runtime/io/safetensors.ts";
import { saveModel } from "../../runtime/models/model_dir.ts";
import { saveTinyByteModel, TINY_BYTE_LLAMA } from "../helpers/tiny_models.ts";
import { train, trainCommand as command } from "../helpers/train_cli.ts";

const root = await Deno.makeTempDir({ prefix: "train-cli-" });
const modelDir = join(root, "model");
await saveTinyByteModel(modelDir);
const BASE = [
  "--model",
  modelDir,
  "--task",
  "addition",
  "--devices",
  "2",
  "--rank",
  "2",
  "--batch",
  "2",
  "--max-len",
  "48",
  "--train-size",
  "64",
  "--eval-size",
  "4",
  "--lr",
  "0.01",
];

const weights = (dir: string) => readSafetensors(join(dir, "model", "model.safetensors"));

Deno.test({
  name: "train CLI: a default-style run writes the whole run folder and a summary",
  sanitizeResources: false,
  async fn() {
    const out = join(root, "plain");
    const r = await train([...BASE, "--steps", "6", "--checkpoint-every", "3", "--out", out]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /accuracy before \(addition\): .*%/);
    assert.match(r.stdout, /# Run summary/);
    for (
      const f of [
        "config.json",
        "metrics.jsonl",
        "summary.md",
        "loss.svg",
        "rank.svg",
        "model/model.safetensors",
        "model/config.json",
      ]
    ) {
      await Deno.stat(join(out, f));
    }
    const metrics = (await Deno.readTextFile(join(out, "metrics.jsonl"))).trim().split("\n").map((
      l,
    ) => JSON.parse(l));
    assert.deepEqual(metrics.map((m) => m.step), [1, 2, 3, 4, 5, 6]);
    assert.ok(metrics.every((m) => Number.isFinite(m.loss) && m.shardLosses.length === 2));
    const ckpts = [...Deno.readDirSync(join(out, "checkpoints"))].map((e) => e.name).sort();
    assert.deepEqual(ckpts, ["step-00000003.safetensors", "step-00000006.safetensors"]);
    const summary = await Deno.readTextFile(join(out, "summary.md"));
    assert.match(summary, /\| q_proj \| 1 \|/);
    assert.match(await Deno.readTextFile(join(out, "loss.svg")), /^<svg/);
  },
});

Deno.test({
  name:
    "train CLI: SIGKILL at a random step, then --resume, ends with the uninterrupted run's weights",
  sanitizeResources: false,
  async fn() {
    const straight = join(root, "straight");
    assert.equal((await train([...BASE, "--steps", "8", "--out", straight])).code, 0);
    const killed = join(root, "killed");
    const killAt = 2 + Math.floor(Math.random() * 5); // 2…6
    const child = command([...BASE, "--steps", "8", "--checkpoint-every", "1", "--out", killed])
      .spawn();
    const metrics = join(killed, "metrics.jsonl");
    for (let i = 0; i < 1200; i++) {
      await new Promise((r) => setTimeout(r, 50));
      const lines = await Deno.readTextFile(metrics).then((t) =>
        t.trim().split("\n").filter(Boolean).length
      ).catch(() => 0);
      if (lines >= killAt) break;
    }
    child.kill("SIGKILL");
    // The kill must have cut the run short (a run that had finished would make --resume vacuous).
    assert.equal((await child.status).signal, "SIGKILL", "the run ended before the kill");
    const resumed = await train([
      ...BASE,
      "--steps",
      "8",
      "--checkpoint-every",
      "1",
      "--out",
      killed,
      "--resume",
    ]);
    assert.equal(resumed.code, 0, resumed.stderr + resumed.stdout);
    const from = Number(resumed.stdout.match(/resumed from step (\d+)/)?.[1]);
    assert.ok(from >= 1 && from < 8, `resumed from step ${from}: nothing left to train`);
    assert.deepEqual(await weights(killed), await weights(straight));
    const steps = (await Deno.readTextFile(metrics)).trim().split("\n").map((l) =>
      JSON.parse(l).step
    );
    assert.deepEqual(steps, [1, 2, 3, 4, 5, 6, 7, 8]);
  },
});

Deno.test({
  name:
    "train CLI: a corrupt newest checkpoint is skipped with a warning; the previous one is used",
  sanitizeResources: false,
  async fn() {
    const out = join(root, "corrupt");
    const first = await train([...BASE, "--steps", "4", "--checkpoint-every", "2", "--out", out]);
    assert.equal(first.code, 0);
    const newest = join(out, "checkpoints", "step-00000004.safetensors");
    const bytes = await Deno.readFile(newest);
    bytes[bytes.length - 3] ^= 0xff;
    await Deno.writeFile(newest, bytes);
    const r = await train([
      ...BASE,
      "--steps",
      "4",
      "--checkpoint-every",
      "2",
      "--out",
      out,
      "--resume",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /warning: skipping checkpoint .*step-00000004.*checksum mismatch/);
    assert.match(r.stdout, /resumed from step 2/);
  },
});

Deno.test({
  name:
    "train CLI: a non-finite loss stops the run with a clear message and keeps the last good checkpoint",
  sanitizeResources: false,
  async fn() {
    const bad = join(root, "nan-model");
    const params = initParams(TINY_BYTE_LLAMA, 1);
    params["model.norm.weight"].data[0] = NaN;
    await saveModel(bad, TINY_BYTE_LLAMA, params, {
      dsl_tokenizer: "byte",
      dsl_template: "compact",
    });
    const r = await train([
      ...BASE,
      "--model",
      bad,
      "--method",
      "full",
      "--steps",
      "3",
      "--out",
      join(root, "nan"),
    ]);
    assert.equal(r.code, 3);
    assert.match(
      r.stderr,
      /loss became NaN at step 1 .*stopped before the first checkpoint\. Rerun with a lower --lr/,
    );
  },
});

Deno.test({
  name: "train CLI: bad flags name the field and the allowed values",
  sanitizeResources: false,
  async fn() {
    const cases: [string[], RegExp][] = [
      [["--rank=-1"], /--rank: must be an integer in \[1, 4096\] \(got -1\)/],
      [["--rank", "0"], /--rank: must be an integer in \[1, 4096\] \(got 0\)/],
      [["--lr", "abc"], /--lr: expects a number \(got "abc"\)/],
      [
        ["--method", "vera"],
        /--method: must be one of hdpissa, hd-milora, pissa, milora, lora, dora, full/,
      ],
      [["--bogus", "1"], /Unknown option '--bogus'/],
      [["--schedule", "step"], /--schedule: must be cosine, constant or linear/],
      [["--svd", "approx"], /--svd: must be auto, exact or randomized \(got approx\)/],
      [["--frozen-dtype", "fp8"], /--frozen-dtype: must be auto, f32, bf16 or f16 \(got fp8\)/],
      // Caught once the model and data are known: still configuration errors (exit 2).
      [[...BASE, "--task", "chess"], /--task: unknown task "chess" \(tasks: multitask, /],
      [[...BASE, "--adapt", "nope_proj"], /--adapt: no 2-D weights named nope_proj in /],
    ];
    for (const [args, pattern] of cases) {
      const r = await train([...args, "--out", join(root, "never")]);
      assert.equal(r.code, 2, args.join(" "));
      assert.match(r.stderr, pattern);
    }
    const help = await train(["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--method NAME +hdpissa\|hd-milora\|pissa\|milora\|lora\|dora\|full/);
  },
});

Deno.test("train: out-of-device-memory errors say which sizes to reduce", async () => {
  const { explainDeviceMemory } = await import("../../runtime/train/run.ts");
  const { DEFAULT_RUN } = await import("../../runtime/train/config.ts");
  const e = explainDeviceMemory(
    new Error("out of device memory allocating 3 buffer(s)"),
    DEFAULT_RUN,
  ) as Error;
  assert.match(
    e.message,
    /ran out of memory .*--batch \(now 4\).*--max-len \(now \d+\).*Reduce --batch or --max-len/,
  );
  const other = new Error("shader failed");
  assert.equal(explainDeviceMemory(other, DEFAULT_RUN), other);
});

Deno.test({
  name: "train CLI: Ctrl-C (SIGINT) writes a checkpoint after the current step and exits 130",
  sanitizeResources: false,
  async fn() {
    const out = join(root, "interrupted");
    const child = command([...BASE, "--steps", "200", "--checkpoint-every", "1000", "--out", out])
      .spawn();
    const metrics = join(out, "metrics.jsonl");
    for (let i = 0; i < 1200; i++) {
      await new Promise((r) => setTimeout(r, 50));
      const lines = await Deno.readTextFile(metrics).then((t) =>
        t.trim().split("\n").filter(Boolean).length
      ).catch(() => 0);
      if (lines >= 2) break;
    }
    child.kill("SIGINT");
    const { code, stdout } = await child.output();
    assert.equal(code, 130);
    const steps = (await Deno.readTextFile(metrics)).trim().split("\n").length;
    const ckpts = [...Deno.readDirSync(join(out, "checkpoints"))].map((e) => e.name);
    assert.deepEqual(ckpts, [`step-${String(steps).padStart(8, "0")}.safetensors`]);
    assert.match(new TextDecoder().decode(stdout), /stopped at step \d+; checkpoint written/);
  },
});

Deno.test({
  name:
    "train CLI: a run folder's config.json feeds back through --config and gives the same model",
  sanitizeResources: false,
  async fn() {
    const first = join(root, "config-first"), again = join(root, "config-again");
    const r1 = await train([
      ...[...BASE, "--steps", "2", "--eval-size", "0", "--svd", "randomized", "--out", first],
    ]);
    assert.equal(r1.code, 0, r1.stderr);
    const r2 = await train(["--config", join(first, "config.json"), "--out", again]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(JSON.parse(await Deno.readTextFile(join(again, "config.json"))).svd, "randomized");
    const [a, b] = [await weights(first), await weights(again)];
    for (const name of Object.keys(a)) assert.deepEqual(b[name].data, a[name].data, name);
  },
});

Deno.test({
  name:
    "train CLI: SIGTERM before training (SVD, compilation, evaluation) stops within 2 s, saying where",
  sanitizeResources: false,
  async fn() {
    const out = join(root, "early-stop");
    const child = command([...BASE, "--steps", "50", "--eval-size", "8", "--out", out]).spawn();
    // The SVD choice is printed right before the SVD and the compilation start.
    const reader = child.stdout.getReader();
    let seen = "";
    while (!/svd auto: exact/.test(seen)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the run ended before its SVD:\n${seen}`);
      seen += new TextDecoder().decode(value);
    }
    const sent = performance.now();
    child.kill("SIGTERM");
    reader.releaseLock();
    const { code, stderr } = await child.output();
    const seconds = (performance.now() - sent) / 1000;
    const message = new TextDecoder().decode(stderr);
    assert.equal(code, 130, message);
    assert.ok(seconds < 2, `took ${seconds.toFixed(2)} s to stop`);
    assert.match(
      message,
      /interrupt during (the initial SVD and compilation|evaluation before training): stopped/,
    );
    const ckpts = await Array.fromAsync(Deno.readDir(join(out, "checkpoints"))).catch(() => []);
    assert.equal(ckpts.length, 0, "no checkpoint before training");
  },
});

Deno.test({
  name: "train CLI: --autotune tunes the step's matmuls once per machine, then reads the choices",
  sanitizeResources: false,
  async fn() {
    const env = { HDPISSA_CACHE_DIR: join(root, "tune-cache") };
    const file = join(env.HDPISSA_CACHE_DIR, "autotune.json");
    const run = (name: string) =>
      train([...BASE, "--steps", "2", "--autotune", "--out", join(root, name)], undefined, [], env);
    const first = await run("autotuned");
    assert.equal(first.code, 0, first.stderr + first.stdout);
    const stored = JSON.parse(await Deno.readTextFile(file));
    assert.ok(Object.keys(stored).length >= 2, "one choice per shape class of the step");
    const written = (await Deno.stat(file)).mtime!.getTime();
    const second = await run("autotuned-again");
    assert.equal(second.code, 0, second.stderr + second.stdout);
    assert.equal((await Deno.stat(file)).mtime!.getTime(), written, "nothing tuned again");
    // Which kernels run does not change the run's identity: the config hashes agree.
    const hash = async (name: string) =>
      JSON.parse(await Deno.readTextFile(join(root, name, "config.json"))).configHash;
    const plain = await train([...BASE, "--steps", "2", "--out", join(root, "untuned")]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(await hash("autotuned"), await hash("untuned"));
  },
});

Deno.test({
  name:
    "train CLI: --dry-run prints the memory plan, the work and a probed step time, writes nothing",
  sanitizeResources: false,
  async fn() {
    const out = join(root, "dry-run");
    const r = await train([...BASE, "--dry-run", "--out", out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /dry run: weights [\d.]+ MiB, adapter and optimizer state [\d.]+ MiB, batch [\d.]+ MiB, activations at the peak [\d.]+ MiB; [\d.]+ MiB in all at the peak/,
    );
    assert.match(r.stdout, /largest buffer: .+, [\d.]+ MiB/);
    const work = r.stdout.match(
      /matmul work per step: [\d.]+ GFLOP in (\d+) kernels \((\d+) distinct pipelines to compile\)/,
    );
    assert.ok(work, r.stdout);
    assert.ok(+work[2] > 0 && +work[2] < +work[1], "repeated layers share pipelines");
    // No --steps given: the estimate is for the default run's length.
    const { DEFAULT_RUN } = await import("../../runtime/train/config.ts");
    const estimate = new RegExp(`estimated step time [\\d.]+ s .*: ${DEFAULT_RUN.steps} steps ≈`);
    assert.match(r.stdout, estimate);
    assert.doesNotMatch(r.stdout, /accuracy/);
    await assert.rejects(Deno.stat(out), Deno.errors.NotFound);
  },
});
