/**
 * `deno task evaluate [--model DIR] [--tasks a,b|all] [--n N]`: per-task exact-match accuracy of
 * greedy answers on the synthetic test splits, plus a free-text sample — how the shipped base is
 * checked to know the prompt format but not the tasks.
 */

import { parseArgs } from "node:util";
import { formatPrompt } from "../runtime/data/instruct.ts";
import { TASKS, taskSplits } from "../runtime/data/synthetic.ts";
import { toDevice } from "../runtime/jit.ts";
import { evaluateItems } from "../runtime/models/evaluate.ts";
import { generate } from "../runtime/models/generate.ts";
import { loadModel } from "../runtime/models/model_dir.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    model: { type: "string", default: "models/base" },
    tasks: { type: "string", default: "all" },
    n: { type: "string", default: "100" },
    seed: { type: "string", default: "0" },
    prompt: { type: "string", default: "Continue the text.\nThe state of the Union is strong." },
    json: { type: "boolean", default: false },
  },
});
const model = await loadModel(flags.model!);
const tasks = flags.tasks === "all" ? Object.keys(TASKS) : flags.tasks!.split(",");
const params = await toDevice(model.params) as Record<string, never>;
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
