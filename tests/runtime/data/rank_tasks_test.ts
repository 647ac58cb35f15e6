import assert from "node:assert/strict";
import {
  CIPHER,
  RANK_SUITE,
  RANK_TASKS,
  splitOf,
  substitute,
} from "../../../runtime/data/rank_tasks.ts";
import { MULTITASK_SUITE, suiteTasks, TASKS, taskSplits } from "../../../runtime/data/synthetic.ts";

const ALPHABET = "abcdefghijklmnopqrstuvwxyz";

Deno.test("rank tasks: the cipher is a fixed permutation of a–z with no letter left in place", () => {
  const images = Object.values(CIPHER);
  assert.deepEqual(Object.keys(CIPHER).sort().join(""), ALPHABET);
  assert.deepEqual([...images].sort().join(""), ALPHABET);
  for (const c of ALPHABET) assert.notEqual(CIPHER[c], c);
  assert.equal(substitute("ab-c", CIPHER), `${CIPHER.a}${CIPHER.b}-${CIPHER.c}`);
});

Deno.test("rank tasks: a word of 3–5 letters with one capital, answered through the cipher", () => {
  for (const task of RANK_SUITE) {
    const { train, test, validation } = taskSplits(
      task,
      { train: 300, test: 50, validation: 50 },
      3,
    );
    for (const item of [...train, ...test, ...validation]) {
      const [, verb, word] = item.query.match(/^(Encode|Decode) ([a-zA-Z]{3,5})$/)!;
      assert.equal(verb, task === "cipher" ? "Encode" : "Decode");
      const capitals = word.match(/[A-Z]/g)!;
      assert.equal(capitals.length, 1, item.query);
      const key = capitals[0].toLowerCase();
      if (task === "cipher") assert.equal(item.answer, CIPHER[key]);
      else assert.equal(CIPHER[item.answer], key);
    }
  }
});

Deno.test("rank tasks: held-out words are never trained on, whatever the seed or sizes", () => {
  for (const task of RANK_SUITE) {
    const a = taskSplits(task, { train: 2000, test: 100, validation: 100 }, 1);
    assert.equal(a.test.length, 100);
    assert.equal(a.validation.length, 100);
    assert.ok(a.test.every((x) => splitOf(x.query) === "test"));
    assert.ok(a.validation.every((x) => splitOf(x.query) === "validation"));
    // A run draws its training split with no held-out items at all (deno task compare does).
    for (const seed of [0, 1, 2]) {
      const { train } = taskSplits(task, { train: 2000, test: 0 }, seed);
      assert.ok(train.every((x) => splitOf(x.query) === "train"), `${task} seed ${seed}`);
    }
    const held = new Set([...a.test, ...a.validation].map((x) => x.query));
    assert.equal(held.size, 200);
  }
  // About 1/8 of the words in each held-out split.
  const words = Array.from({ length: 8000 }, (_, i) => `Encode w${i}`);
  const test = words.filter((w) => splitOf(w) === "test").length;
  assert.ok(test > 850 && test < 1150, `${test}`);
});

Deno.test("suites: ranksuite is the cipher both ways; multitask keeps its ten skills", () => {
  assert.deepEqual([...suiteTasks("ranksuite")], ["cipher", "decipher"]);
  assert.deepEqual([...suiteTasks("cipher")], ["cipher"]);
  assert.deepEqual(Object.keys(RANK_TASKS), RANK_SUITE);
  assert.equal(MULTITASK_SUITE.length, 10);
  assert.ok(MULTITASK_SUITE.every((t) => !RANK_SUITE.includes(t) && t !== "gsm8k"));
  assert.ok(RANK_SUITE.every((t) => t in TASKS));
});

Deno.test("splits: a validation split is unique, disjoint from test and train, and optional", () => {
  for (const task of ["addition", "parity", "cipher"]) {
    const a = taskSplits(task, { train: 300, test: 40, validation: 40 }, 5);
    const test = new Set(a.test.map((x) => x.query));
    const validation = new Set(a.validation.map((x) => x.query));
    assert.equal(validation.size, 40);
    assert.ok(a.validation.every((x) => !test.has(x.query)), task);
    assert.ok(a.train.every((x) => !test.has(x.query) && !validation.has(x.query)), task);
    // Asking for a validation split leaves the test split as it was.
    assert.deepEqual(taskSplits(task, { train: 10, test: 40 }, 5).test, a.test);
    assert.deepEqual(taskSplits(task, { train: 10, test: 40 }, 5).validation, []);
  }
});
