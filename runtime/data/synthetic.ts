/**
 * Synthetic fine-tuning tasks with exact answers: a GSM8K-style multi-step arithmetic word-problem
 * task (worked solution, then a final answer line) and a suite of small skills — the small-scale
 * stand-in for the HD-PiSSA paper's math and 12-benchmark multi-task settings. Every response
 * ends with MetaMathQA's final line "The answer is: X"; test items are unique and never appear in
 * the training split.
 */

import type { Example } from "./instruct.ts";
import { RANK_SUITE, RANK_TASKS, splitOf } from "./rank_tasks.ts";
import { Rng } from "./rng.ts";

/** A generated task example with its exact final answer. */
export interface TaskItem extends Example {
  /** The final answer, as the response's last line states it. */
  answer: string;
}

/** Draws one task instance: the query, an optional worked solution, and the answer. */
export type Generator = (rng: Rng) => { query: string; work?: string; answer: string | number };

const NAMES = [
  "Ana",
  "Ben",
  "Carl",
  "Dina",
  "Eva",
  "Finn",
  "Gus",
  "Hana",
  "Ivan",
  "Jo",
  "Kim",
  "Leo",
];
const ITEMS = ["apples", "books", "cards", "pens", "stamps", "shells", "coins", "eggs", "cups"];
const LETTERS = "abcdefghijklmnopqrstuvwxyz";
const WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const UNITS: [string, string, number][] = [
  ["hours", "minutes", 60],
  ["minutes", "seconds", 60],
  ["meters", "centimeters", 100],
  ["kilograms", "grams", 1000],
  ["weeks", "days", 7],
  ["years", "months", 12],
  ["feet", "inches", 12],
  ["days", "hours", 24],
];

const letters = (rng: Rng, n: number, alphabet = LETTERS) =>
  Array.from({ length: n }, () => rng.pick([...alphabet])).join("");

const WORD_PROBLEMS: Generator[] = [
  (rng) => {
    const [name, friend] = [rng.pick(NAMES), rng.pick(NAMES)];
    const item = rng.pick(ITEMS);
    const [a, b] = [rng.int(5, 40), rng.int(2, 30)];
    const c = rng.int(1, a + b - 1);
    const total = a + b;
    return {
      query: `${name} has ${a} ${item}. ${name} buys ${b} more and then gives ${c} to ${friend}. ` +
        `How many ${item} does ${name} have now?`,
      work: `After buying, ${name} has ${a} + ${b} = ${total} ${item}. ` +
        `After giving ${c} away, ${name} has ${total} - ${c} = ${total - c} ${item}.`,
      answer: total - c,
    };
  },
  (rng) => {
    const name = rng.pick(NAMES);
    const item = rng.pick(ITEMS);
    const [per, boxes] = [rng.int(2, 12), rng.int(2, 9)];
    const sold = rng.int(1, per * boxes - 1);
    const total = per * boxes;
    return {
      query:
        `A box holds ${per} ${item}. ${name} fills ${boxes} boxes and sells ${sold} ${item}. ` +
        `How many ${item} are left?`,
      work: `${boxes} boxes hold ${boxes} * ${per} = ${total} ${item}. ` +
        `After selling ${sold}, ${total} - ${sold} = ${total - sold} are left.`,
      answer: total - sold,
    };
  },
  (rng) => {
    const name = rng.pick(NAMES);
    const [wage, hours, days] = [rng.int(5, 20), rng.int(2, 8), rng.int(2, 6)];
    const daily = wage * hours;
    return {
      query:
        `${name} earns ${wage} dollars an hour and works ${hours} hours a day for ${days} days. ` +
        `How many dollars does ${name} earn?`,
      work: `Each day ${name} earns ${wage} * ${hours} = ${daily} dollars. ` +
        `In ${days} days that is ${daily} * ${days} = ${daily * days} dollars.`,
      answer: daily * days,
    };
  },
  (rng) => {
    const name = rng.pick(NAMES);
    const [perDay, days] = [rng.int(3, 15), rng.int(2, 7)];
    const pages = perDay * days + rng.int(5, 60);
    const read = perDay * days;
    return {
      query: `A book has ${pages} pages. ${name} reads ${perDay} pages a day for ${days} days. ` +
        `How many pages are left?`,
      work: `${name} reads ${perDay} * ${days} = ${read} pages. ${pages} - ${read} = ${
        pages - read
      } pages are left.`,
      answer: pages - read,
    };
  },
];

/** Each task's generator; the keys are the task names used by the CLI and reports. */
export const TASKS: Record<string, Generator> = {
  gsm8k: (rng) => rng.pick(WORD_PROBLEMS)(rng),
  addition: (rng) => {
    const [a, b] = [rng.int(1, 99), rng.int(1, 99)];
    return { query: `What is ${a} + ${b}?`, answer: a + b };
  },
  subtraction: (rng) => {
    const a = rng.int(10, 99);
    const b = rng.int(1, a);
    return { query: `What is ${a} - ${b}?`, answer: a - b };
  },
  multiplication: (rng) => {
    const [a, b] = [rng.int(10, 99), rng.int(2, 9)];
    return { query: `What is ${a} * ${b}?`, answer: a * b };
  },
  counting: (rng) => {
    const s = letters(rng, rng.int(5, 10), "abc");
    const c = rng.pick(["a", "b", "c"]);
    return {
      query: `How many times does the letter ${c} appear in ${s}?`,
      answer: [...s].filter((x) => x === c).length,
    };
  },
  sorting: (rng) => {
    const xs = Array.from({ length: rng.int(3, 6) }, () => rng.int(0, 9));
    return {
      query: `Sort these numbers from smallest to largest: ${xs.join(", ")}`,
      answer: [...xs].sort((a, b) => a - b).join(", "),
    };
  },
  reversal: (rng) => {
    const w = letters(rng, rng.int(3, 7));
    return { query: `Reverse the letters of ${w}.`, answer: [...w].reverse().join("") };
  },
  comparison: (rng) => {
    const a = rng.int(1, 999);
    let b = rng.int(1, 999);
    if (b === a) b = a + 1;
    return { query: `Which number is larger, ${a} or ${b}?`, answer: Math.max(a, b) };
  },
  units: (rng) => {
    const [big, small, factor] = rng.pick(UNITS);
    const n = rng.int(2, 40);
    return { query: `How many ${small} are in ${n} ${big}?`, answer: n * factor };
  },
  dates: (rng) => {
    const d = rng.int(0, 6);
    const n = rng.int(1, 30);
    return {
      query: `Today is ${WEEKDAYS[d]}. What day of the week will it be in ${n} days?`,
      answer: WEEKDAYS[(d + n) % 7],
    };
  },
  parity: (rng) => {
    const n = rng.int(1, 9999);
    return { query: `Is ${n} even or odd?`, answer: n % 2 === 0 ? "even" : "odd" };
  },
  // Last, so that the tasks above keep their data streams (a stream is a task's index).
  ...RANK_TASKS,
};

/** The multi-task suite: the skills above (neither the word problems nor the cipher). */
export const MULTITASK_SUITE: string[] = Object.keys(TASKS).filter((t) =>
  t !== "gsm8k" && !RANK_SUITE.includes(t)
);

/**
 * Task names that stand for several tasks (`--task multitask`): training data mixed evenly,
 * each task scored on its own.
 */
export const SUITES: Readonly<Record<string, readonly string[]>> = {
  multitask: MULTITASK_SUITE,
  ranksuite: RANK_SUITE,
};

/** The tasks a `--task` name stands for: a suite's, or the task itself. */
export const suiteTasks = (name: string): readonly string[] => SUITES[name] ?? [name];

/** The text before the final answer on a response's last line (MetaMathQA's convention). */
export const ANSWER_PREFIX = "The answer is: ";

function makeItem(gen: Generator, rng: Rng): TaskItem {
  const { query, work, answer } = gen(rng);
  const a = String(answer);
  return { query, response: `${work ? work + "\n" : ""}${ANSWER_PREFIX}${a}`, answer: a };
}

const taskIndex = (name: string) => {
  const i = Object.keys(TASKS).indexOf(name);
  if (i < 0) throw new Error(`unknown task "${name}" (tasks: ${Object.keys(TASKS).join(", ")})`);
  return i;
};

/**
 * Seeded train/validation/test splits. The test split is generated first and is unique, then the
 * validation split (empty unless asked for), unique and disjoint from it; training items are drawn
 * from another stream, skipping any held-out query, so scores measure generalisation. The rank
 * suite's tasks go further: a word's split is a function of the word (`splitOf`), so held-out
 * words are never trained on even when a split is drawn with no held-out items. Held-out splits
 * are capped by how many distinct items the task has.
 */
export function taskSplits(
  name: string,
  sizes: { train: number; test: number; validation?: number },
  seed = 0,
): { train: TaskItem[]; test: TaskItem[]; validation: TaskItem[] } {
  const index = taskIndex(name);
  const gen = TASKS[name];
  const partitioned = RANK_SUITE.includes(name);
  const belongs = (item: TaskItem, split: "train" | "validation" | "test") =>
    !partitioned || splitOf(item.query) === split;
  const seen = new Set<string>();
  const heldOut = (split: "validation" | "test", stream: number, size: number) => {
    const rng = new Rng(seed, stream);
    const items: TaskItem[] = [];
    // Partitioned tasks keep 1 draw in 8 per held-out split: allow for that in the tries.
    const limit = size * (partitioned ? 400 : 50);
    for (let tries = 0; items.length < size && tries < limit; tries++) {
      const item = makeItem(gen, rng);
      if (!seen.has(item.query) && belongs(item, split)) seen.add(item.query), items.push(item);
    }
    return items;
  };
  const test = heldOut("test", 1000 + 2 * index, sizes.test);
  const validation = heldOut("validation", 5000 + index, sizes.validation ?? 0);
  const trainRng = new Rng(seed, 1001 + 2 * index);
  const train: TaskItem[] = [];
  for (let tries = 0; train.length < sizes.train && tries < sizes.train * 50; tries++) {
    const item = makeItem(gen, trainRng);
    if (!seen.has(item.query) && belongs(item, "train")) train.push(item);
  }
  if (train.length < sizes.train) {
    throw new Error(
      `task ${name}: cannot draw ${sizes.train} training items outside the held-out splits`,
    );
  }
  return { train, test, validation };
}

/** The final answer in a generated response: the text after the last "The answer is:". */
export function extractAnswer(text: string): string | undefined {
  const at = text.lastIndexOf(ANSWER_PREFIX.trim());
  if (at < 0) return undefined;
  return text.slice(at + ANSWER_PREFIX.trim().length).split("\n")[0].trim();
}

/** Exact match after trimming, lower-casing and dropping a trailing period. */
export function answersMatch(predicted: string | undefined, answer: string): boolean {
  if (predicted === undefined) return false;
  const norm = (s: string) => s.trim().toLowerCase().replace(/\.$/, "");
  return norm(predicted) === norm(answer);
}
