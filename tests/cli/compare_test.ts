import assert from "node:assert/strict";
import { join } from "node:path";
import { train } from "../helpers/train_cli.ts";

const COMPARE = new URL("../../cli/compare.ts", import.meta.url).pathname;

Deno.test({
  name: "deno task compare: grid on validation, seeds at the chosen rate, report, reuse",
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const args = [
      ...["--methods", "lora", "--lrs", "1e-3,2e-2", "--seeds", "2", "--steps", "3"],
      ...["--train-size", "64", "--validation-size", "4", "--test-size", "6"],
      ...["--out", join(dir, "results.md"), "--charts", join(dir, "charts")],
      ...["--runs", join(dir, "runs")],
    ];
    const first = await train(args, COMPARE, ["--allow-run=deno"]);
    assert.equal(first.code, 0, first.stderr);
    const report = await Deno.readTextFile(join(dir, "results.md"));
    // Two grid runs at seed 0, then seed 1 at the chosen rate: three runs.
    assert.match(report, /3 training runs/);
    const row = report.match(/\| DP-LoRA +\| K 4, r 1, lr ([^ ]+) +\| \*\*([\d.]+)\*\* \[/);
    assert.ok(row, report);
    assert.match(row[1], /^(1e−3|2e−2)$/);
    const seeds = await Array.fromAsync(Deno.readDir(join(dir, "runs")), (e) => e.name);
    assert.deepEqual(
      seeds.sort(),
      [
        "lora-lr1e-3-seed0",
        "lora-lr2e-2-seed0",
        `lora-lr${row[1].replace("−", "-")}-seed1`,
      ].sort(),
    );
    for (const name of ["loss.svg", "rank.svg"]) {
      assert.match(await Deno.readTextFile(join(dir, "charts", name)), /^<svg/);
    }
    // Started again with the same settings, it trains nothing and writes the same tables.
    const again = await train(args, COMPARE, ["--allow-run=deno"]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout.match(/done before, reused/g)?.length, 3, again.stdout);
    const strip = (s: string) => s.split("\n").slice(1).join("\n").replace(/\d+ min/, "");
    assert.equal(strip(await Deno.readTextFile(join(dir, "results.md"))), strip(report));
    await Deno.remove(dir, { recursive: true });
  },
});
