/**
 * `--eval-data` end to end on the shipped base: `deno task train` scores a tiny JSONL before and
 * after one step (summary and metrics.jsonl), `deno task evaluate` scores it once, and bad
 * answer patterns or answerless eval files stop with exit 2 naming the flag, file, line and field.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { evaluate, train } from "../helpers/train_cli.ts";

const root = await Deno.makeTempDir({ prefix: "eval-data-" });
const evalFile = join(root, "eval.jsonl");
await Deno.writeTextFile(
  evalFile,
  [
    { query: "What is 2 + 3?", response: "2 + 3 = 5.\nThe answer is: 5" },
    { query: "Say hello.", response: "Hello!" },
    { query: "What is 10 - 4?", response: "10 - 4 = 6.\n#### 6" },
    { query: "What is 1,000 + 200?", response: "The sum is \\boxed{1,200}." },
  ].map((r) => JSON.stringify(r)).join("\n") + "\n",
);
// One step on the shipped base, as small as it gets: one shard, one matrix per layer.
const SMALL = ["--devices", "1", "--rank", "1", "--batch", "1", "--max-len", "96", "--adapt"];

Deno.test({
  name: "train CLI: --eval-data reports accuracy before/after in the summary and metrics.jsonl",
  sanitizeResources: false,
  async fn() {
    const out = join(root, "run");
    const r = await train([
      ...[...SMALL, "q_proj", "--data", evalFile, "--eval-data", evalFile, "--steps", "1"],
      ...["--eval-max-new-tokens", "12", "--out", out],
    ]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const counted = `3 records scored (all read; 1 without a final answer in "response", ` +
      `not scored: line 2)`;
    assert.ok(r.stdout.includes(`eval data ${evalFile}: ${counted}`), r.stdout);
    assert.match(r.stdout, /accuracy before \(.*eval\.jsonl\): [\d.]+% \(\d\/3\)/);
    const summary = await Deno.readTextFile(join(out, "summary.md"));
    assert.ok(summary.includes(`| eval data | ${evalFile}: ${counted}; exact match`), summary);
    assert.match(summary, /\| accuracy before \| [\d.]+% \(\d\/3\) \|/);
    assert.match(summary, /\| accuracy after \| [\d.]+% \(\d\/3\) \|/);
    const metrics = (await Deno.readTextFile(join(out, "metrics.jsonl"))).trim().split("\n")
      .map((l) => JSON.parse(l));
    assert.deepEqual(metrics.map((m) => m.eval ?? m.step), ["before", 1, "after"]);
    const [before, after] = [metrics[0], metrics[2]];
    assert.deepEqual([before.step, before.scored, before.unscored], [0, 3, 1]);
    assert.deepEqual([after.step, after.scored, after.data], [1, 3, evalFile]);
    assert.equal(after.correct + after.wrong.length, 3, "at most 3 wrong answers, all shown");
    for (const w of after.wrong) assert.ok(["5", "6", "1200"].includes(w.expected), w.expected);
    if (after.wrong.length) {
      assert.match(
        summary,
        /## Wrong answers after training \(first \d\)\n\n- \*\*What is .* expected (5|6|1200), got /,
      );
    }
  },
});

Deno.test({
  name: "evaluate CLI: --eval-data scores the first --n records once",
  sanitizeResources: false,
  async fn() {
    const r = await evaluate([
      "--eval-data",
      evalFile,
      "--n",
      "2",
      "--max-new-tokens",
      "8",
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /1 records scored \(the first 2 of 4 read; 1 without a final answer/);
    assert.match(r.stdout, /accuracy \(.*eval\.jsonl\): [\d.]+% \(\d\/1, [\d.]+ s; exact match/);
    const json = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    assert.deepEqual([json.scored, json.unscored], [1, 1]);
  },
});

Deno.test({
  name:
    "eval data: bad answer patterns and answerless files stop with exit 2, naming what is wrong",
  sanitizeResources: false,
  async fn() {
    const answerless = join(root, "answerless.jsonl");
    await Deno.writeTextFile(answerless, '{"query": "hi", "response": "hello"}\n');
    const cases: [string[], RegExp][] = [
      [
        ["--eval-data", evalFile, "--answer-regex", "Answer: .+"],
        /--answer-regex: "Answer: \.\+" has no capture group/,
      ],
      [
        ["--eval-data", evalFile, "--answer-regex", "(x"],
        /--answer-regex: not a valid regular expression/,
      ],
      [
        ["--answer-regex", "(.+)"],
        /--answer-regex: reads the answers of --eval-data: give that file too/,
      ],
      [
        ["--eval-data", answerless],
        /--eval-data: .*answerless\.jsonl:1: field "response" states no final answer/,
      ],
    ];
    for (const [args, pattern] of cases) {
      const r = await train([...args, "--out", join(root, "never")]);
      assert.equal(r.code, 2, args.join(" ") + r.stderr);
      assert.match(r.stderr, pattern);
    }
    const r = await evaluate(["--eval-data", answerless]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--eval-data: .*answerless\.jsonl:1: field "response" states no final/);
  },
});
