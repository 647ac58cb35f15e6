/**
 * Final-answer extraction and normalisation for `--eval-data`, the eval file's scored and
 * unscored records, and the metrics records a run writes for them.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  answerPattern,
  extractFinalAnswer,
  finalAnswer,
  normalizeAnswer,
  sameAnswer,
} from "../../../runtime/data/answers.ts";
import { parseEvalData } from "../../../runtime/data/eval_data.ts";
import type { TaskScore } from "../../../runtime/models/evaluate.ts";
import { evalRecord, writeEvalRecord } from "../../../runtime/train/eval_report.ts";
import { checkProperty, fc } from "../../helpers/property.ts";

Deno.test("answers: the last 'The answer is:', '####' or \\boxed{} states the final answer", () => {
  assert.equal(extractFinalAnswer("2 + 3 = 5.\nThe answer is: 5\nextra"), "5");
  assert.equal(extractFinalAnswer("The answer is: 1\nso the answer is:  2 "), "2");
  assert.equal(extractFinalAnswer("He pays 3 * 4 = 12.\n#### 12"), "12");
  assert.equal(extractFinalAnswer("#### 7\nThe answer is: 8"), "8");
  assert.equal(
    extractFinalAnswer("So $x = \\boxed{\\frac{1}{2}}$.\nThe answer is: \\frac{1}{2}"),
    "\\frac{1}{2}",
  );
  assert.equal(extractFinalAnswer("The answer is: $\\boxed{42}$."), "42");
  assert.equal(extractFinalAnswer("Thus the sum is \\boxed{1,200}."), "1,200");
  assert.equal(extractFinalAnswer("cut off at \\boxed{12"), undefined);
  assert.equal(extractFinalAnswer("no final line"), undefined);
  assert.equal(extractFinalAnswer("The answer is:\n5"), undefined, "an empty answer line");
});

Deno.test("answers: a user pattern's first capture group of its last match is the answer", () => {
  const re = answerPattern("^Answer: (.+)$");
  assert.equal(extractFinalAnswer("Answer: 3\nwork\nAnswer: 4\nbye", re), "4");
  assert.equal(extractFinalAnswer("The answer is: 4", re), undefined);
  assert.equal(finalAnswer("Answer: $1,000.", re), "1000");
  assert.throws(() => answerPattern("Answer: .+"), /has no capture group: put the answer in/);
  assert.throws(() => answerPattern("(x"), /not a valid regular expression/);
});

Deno.test("answers: numbers are normalised; other answers are compared as written", () => {
  const cases: [string, string][] = [
    ["$1,200.", "1200"],
    [" 3.0 ", "3"],
    ["-0", "0"],
    ["-0.00", "0"],
    ["+5", "5"],
    [".50", "0.5"],
    ["007", "7"],
    ["\u22124", "-4"],
    ["1,\\!000", "1000"],
    ["\\$12.50", "12.5"],
    ["1/2", "1/2"],
    ["1,2", "1,2"],
    ["Friday.", "friday"],
    ["  two   words ", "two words"],
  ];
  for (const [raw, want] of cases) assert.equal(normalizeAnswer(raw), want, raw);
  assert.ok(sameAnswer("3", "3.00"));
  assert.ok(!sameAnswer("1/2", "0.5"), "fractions are compared as given");
  assert.ok(!sameAnswer("18", "81"));
});

Deno.test("answers: normalisation is idempotent", () => {
  const unit = fc.constantFrom(..."0159,.$\\! -+aZ/{}\n\u2212".split(""));
  checkProperty(
    fc.property(fc.string({ unit, maxLength: 12 }), (s) => {
      const once = normalizeAnswer(s);
      return normalizeAnswer(once) === once;
    }),
    { numRuns: 300 },
  );
});

Deno.test("answers: a number written any usual way is extracted and normalised back", () => {
  checkProperty(
    fc.property(
      fc.integer({ min: -1e9, max: 1e9 }),
      fc.integer({ min: 0, max: 3 }),
      fc.constantFrom("The answer is: ", "#### ", "so it is \\boxed{"),
      fc.boolean(),
      fc.boolean(),
      (m, decimals, marker, grouped, dollar) => {
        const value = m / 10 ** decimals;
        const digits = grouped
          ? value.toLocaleString("en-US", {
            minimumFractionDigits: decimals,
            maximumFractionDigits: decimals,
          })
          : value.toFixed(decimals);
        const written = `${value < 0 ? "-" : ""}${dollar ? "$" : ""}${digits.replace("-", "")}`;
        const text = `work.\n${marker}${written}${marker.endsWith("{") ? "}" : ""}.`;
        return finalAnswer(text) === String(value);
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("eval data: records without a final answer are counted by line, not scored", () => {
  const text = [
    JSON.stringify({ query: "2+3?", response: "5\nThe answer is: 5" }),
    "",
    JSON.stringify({ query: "hi", response: "hello" }),
    JSON.stringify({ query: "10-4?", response: "#### 6" }),
    JSON.stringify({ query: "unread", response: "The answer is: 1" }),
  ].join("\n");
  const data = parseEvalData(text, "eval.jsonl", { limit: 3 });
  assert.deepEqual(data.items.map((x) => [x.answer, x.line]), [["5", 1], ["6", 4]]);
  assert.deepEqual(data.unscored, [3]);
  assert.equal(data.read, 3);
  assert.equal(data.inFile, 4);
  assert.throws(
    () =>
      parseEvalData(JSON.stringify({ q: "x", a: "no answer" }), "e.jsonl", {
        query: "q",
        response: "a",
      }),
    /^Error: e\.jsonl:1: field "a" states no final answer \("no answer"\), nor does any of the 1 record\(s\) read: .*--answer-regex/,
  );
  assert.throws(
    () => parseEvalData('{"query": "x"}', "e.jsonl"),
    /e\.jsonl:1: field "response" is missing or not a string/,
  );
});

Deno.test("eval data: metrics records — before first, after last, replaced on a rerun", async () => {
  const dir = await Deno.makeTempDir({ prefix: "eval-record-" });
  const path = join(dir, "metrics.jsonl");
  const data = parseEvalData('{"query": "2+3?", "response": "The answer is: 5"}', "e.jsonl");
  const score: TaskScore = {
    accuracy: 0,
    correct: 0,
    total: 1,
    samples: [],
    wrong: [{ query: "2+3?", output: "It is 4.\nThe answer is: 4", answer: "5", predicted: "4" }],
  };
  await Deno.writeTextFile(path, '{"step":1,"loss":2}\n');
  await writeEvalRecord(path, evalRecord("before", 0, score, data));
  await writeEvalRecord(path, evalRecord("after", 1, { ...score, correct: 1, accuracy: 1 }, data));
  await writeEvalRecord(path, evalRecord("before", 0, score, data)); // a resumed run's
  const records = (await Deno.readTextFile(path)).trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(records.map((r) => r.eval ?? r.step), ["before", 1, "after"]);
  assert.deepEqual(records[0].wrong, [
    { prompt: "2+3?", expected: "5", got: "4", output: "It is 4. The answer is: 4" },
  ]);
  assert.equal(records[2].accuracy, 1);
  await Deno.remove(dir, { recursive: true });
});
