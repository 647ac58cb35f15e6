/**
 * `deno task evaluate [--model DIR] [--tasks a,b|all] [--n N]`: per-task exact-match accuracy of
 * greedy answers on the synthetic test splits, plus a free-text sample — how the shipped base is
 * checked to know the prompt format but not the tasks. `--eval-data FILE.jsonl` scores the first
 * `--n` records of the user's data instead, by exact match of the final answer (as `deno task
 * train --eval-data` does).
 */

import { parseArgs } from "node:util";
import { answerPattern, finalAnswer } from "../runtime/data/answers.ts";
import { readEvalData } from "../runtime/data/eval_data.ts";
import { formatPrompt, isTemplate } from "../runtime/data/instruct.ts";
import { TASKS, taskSplits } from "../runtime/data/synthetic.ts";
import { toDevice } from "../runtime/jit.ts";
import { evaluateItems } from "../runtime/models/evaluate.ts";
import { generate } from "../runtime/models/generate.ts";
import { loadModel } from "../runtime/models/model_dir.ts";
import { evalDataLine, wrongAnswerList, wrongAnswers } from "../runtime/train/eval_report.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    model: { type: "string", default: "models/base" },
    tasks: { type: "string", default: "all" },
    n: { type: "string", default: "100" },
    seed: { type: "string", default: "0" },
    prompt: { type: "string", default: "Continue the text.\nThe state of the Union is strong." },
    json: { type: "boolean", default: false },
    "eval-data": { type: "string" },
    "answer-regex": { type: "string" },
    "query-field": { type: "string", default: "query" },
    "response-field": { type: "string", default: "response" },
    "max-new-tokens": { type: "string" },
    template: { type: "string" },
  },
});
const model = await loadModel(flags.model!);
const tasks = flags.tasks === "all" ? Object.keys(TASKS) : flags.tasks!.split(",");
const params = await toDevice(model.params) as Record<string, never>;
if (flags["eval-data"] !== undefined) Deno.exit(await evaluateData(flags["eval-data"]));
const samplePrompt = formatPrompt(flags.prompt!, model.template, model.tokenizer);
const [sample] = await generate(model.config, model.tokenizer, params, [samplePrompt], {
  maxNewTokens: 120,
});
console.log(`sample (${flags.model}):\n${samplePrompt}${sample}\n`);
const results: Record<string, number> = {};
for (const task of tasks) {
  const { test } = taskSplits(task, { train: 0, test: Number(flags.n) }, Number(flags.seed));
  const t0 = performance.now();
  const score = await evaluateItems(model.config, model.tokenizer, params, test, {
    template: model.template,
  });
  results[task] = score.accuracy;
  const s = score.samples[0];
  console.log(
    `${task.padEnd(15)} ${
      (100 * score.accuracy).toFixed(1).padStart(5)
    }%  (${score.correct}/${score.total}, ` +
      `${((performance.now() - t0) / 1000).toFixed(1)} s)  e.g. ${JSON.stringify(s.query)} → ${
        JSON.stringify(s.output.slice(0, 60))
      }`,
  );
}
if (flags.json) console.log(JSON.stringify(results));

/** `--eval-data`: the first `--n` records scored by their final answer; the exit code. */
async function evaluateData(path: string): Promise<number> {
  const fail = (flag: string, message: string) => {
    console.error(`error: --${flag}: ${message}`);
    return 2;
  };
  const count = (v: string | undefined) =>
    v === undefined ? undefined : /^[1-9]\d*$/.test(v) ? Number(v) : NaN;
  const n = count(flags.n), maxNewTokens = count(flags["max-new-tokens"]);
  if (Number.isNaN(n)) return fail("n", `must be a positive integer (got "${flags.n}")`);
  if (Number.isNaN(maxNewTokens)) {
    return fail("max-new-tokens", `must be a positive integer (got "${flags["max-new-tokens"]}")`);
  }
  const template = flags.template ?? model.template;
  if (!isTemplate(template)) {
    return fail("template", `must be alpaca, compact, chat or a prompt containing {query}`);
  }
  let pattern: RegExp | undefined;
  try {
    pattern = flags["answer-regex"] === undefined
      ? undefined
      : answerPattern(flags["answer-regex"]);
  } catch (e) {
    return fail("answer-regex", (e as Error).message);
  }
  const field = flags["response-field"]!;
  const data = await readEvalData(path, {
    query: flags["query-field"],
    response: field,
    limit: n,
    pattern,
  }).catch((e) => e as Error);
  if (data instanceof Error) return fail("eval-data", data.message);
  console.log(`eval data ${path}: ${evalDataLine(data, field)}`);
  const t0 = performance.now();
  const score = await evaluateItems(model.config, model.tokenizer, params, data.items, {
    template,
    maxNewTokens,
    answerOf: (output) => finalAnswer(output, pattern),
  });
  console.log(
    `accuracy (${path}): ${(100 * score.accuracy).toFixed(1)}% (${score.correct}/${score.total}, ` +
      `${((performance.now() - t0) / 1000).toFixed(1)} s; exact match of the final answer)`,
  );
  const wrong = wrongAnswers(score);
  if (wrong.length) {
    console.log(`wrong answers (first ${wrong.length}):\n${wrongAnswerList(wrong)}`);
  }
  if (flags.json) {
    const { accuracy, correct, total } = score;
    console.log(
      JSON.stringify({ accuracy, correct, scored: total, unscored: data.unscored.length }),
    );
  }
  return 0;
}
