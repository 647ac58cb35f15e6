import assert from "node:assert/strict";
import {
  ANSWER_PREFIX,
  answersMatch,
  extractAnswer,
  MULTITASK_SUITE,
  type TaskItem,
  TASKS,
  taskSplits,
} from "../../../runtime/data/synthetic.ts";
import { CIPHER } from "../../../runtime/data/rank_tasks.ts";

const DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const FACTORS: Record<string, number> = {
  "minutes/hours": 60,
  "seconds/minutes": 60,
  "centimeters/meters": 100,
  "grams/kilograms": 1000,
  "days/weeks": 7,
  "months/years": 12,
  "inches/feet": 12,
  "hours/days": 24,
};

/** Each task's answer recomputed from the query text alone. */
function solve(task: string, q: string): string {
  const nums = (q.match(/\d+/g) ?? []).map(Number);
  const m = (re: RegExp) => q.match(re)!;
  switch (task) {
    case "addition":
      return String(nums[0] + nums[1]);
    case "subtraction":
      return String(nums[0] - nums[1]);
    case "multiplication":
      return String(nums[0] * nums[1]);
    case "counting": {
      const [, c, s] = m(/letter (\w) appear in (\w+)\?/);
      return String(s.split(c).length - 1);
    }
    case "sorting":
      return nums.sort((a, b) => a - b).join(", ");
    case "reversal":
      return m(/of (\w+)\./)[1].split("").reverse().join("");
    case "comparison":
      return String(Math.max(nums[0], nums[1]));
    case "units": {
      const [, small, n, big] = m(/many (\w+) are in (\d+) (\w+)\?/);
      return String(Number(n) * FACTORS[`${small}/${big}`]);
    }
    case "dates": {
      const [, day, n] = m(/Today is (\w+)\. .* in (\d+) days/);
      return DAYS[(DAYS.indexOf(day) + Number(n)) % 7];
    }
    case "parity":
      return nums[0] % 2 === 0 ? "even" : "odd";
    case "cipher":
    case "decipher": {
      const key = m(/ [a-z]*([A-Z])/)[1].toLowerCase();
      const inverse = Object.entries(CIPHER).find(([, coded]) => coded === key)![0];
      return task === "cipher" ? CIPHER[key] : inverse;
    }
  }
  throw new Error(task);
}

/** Every "a op b = c" in a worked solution holds, and the final answer is the last result. */
function checkWorked(item: TaskItem): void {
  const steps = [...item.response.matchAll(/(\d+) ([-+*]) (\d+) = (\d+)/g)];
  assert.ok(steps.length >= 2, `multi-step solution expected: ${item.response}`);
  for (const [, a, op, b, c] of steps) {
    const v = op === "+" ? +a + +b : op === "-" ? +a - +b : +a * +b;
    assert.equal(v, +c, item.response);
  }
  assert.equal(steps[steps.length - 1][4], item.answer);
  assert.ok(Number(item.answer) >= 0);
}

Deno.test("synthetic: every answer is right (recomputed from the query) and ends the response", () => {
  assert.ok(MULTITASK_SUITE.length >= 8);
  for (const task of Object.keys(TASKS)) {
    const { train, test } = taskSplits(task, { train: 200, test: 50 }, 7);
    for (const item of [...train, ...test]) {
      assert.ok(item.response.endsWith(ANSWER_PREFIX + item.answer), item.response);
      assert.equal(extractAnswer(item.response), item.answer);
      if (task === "gsm8k") checkWorked(item);
      else assert.equal(item.answer, solve(task, item.query), `${task}: ${item.query}`);
    }
  }
});

Deno.test("synthetic: splits are seeded, test items are unique and never in the training split", () => {
  for (const task of Object.keys(TASKS)) {
    const a = taskSplits(task, { train: 300, test: 100 }, 1);
    assert.deepEqual(taskSplits(task, { train: 300, test: 100 }, 1), a);
    assert.notDeepEqual(taskSplits(task, { train: 300, test: 100 }, 2).test, a.test);
    const queries = new Set(a.test.map((x) => x.query));
    assert.equal(queries.size, a.test.length);
    assert.ok(a.test.length === 100, `${task} has ${a.test.length} test items`);
    assert.ok(a.train.every((x) => !queries.has(x.query)), task);
    // The test split does not depend on the size of the training split.
    assert.deepEqual(taskSplits(task, { train: 10, test: 100 }, 1).test, a.test);
  }
  assert.throws(() => taskSplits("poetry", { train: 1, test: 1 }), /unknown task "poetry"/);
});

Deno.test("synthetic: answer extraction and matching", () => {
  assert.equal(extractAnswer("5 + 3 = 8.\nThe answer is: 8\nextra"), "8");
  assert.equal(extractAnswer("The answer is: 1\nThe answer is:  2 "), "2");
  assert.equal(extractAnswer("no final line"), undefined);
  assert.ok(answersMatch("Friday.", "friday"));
  assert.ok(!answersMatch("18", "81"));
  assert.ok(!answersMatch(undefined, "1"));
});
