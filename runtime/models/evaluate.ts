/**
 * Exact-match accuracy of greedy answers: on a synthetic task's test split, or on any items with
 * an `answerOf` hook that reads the final answer out of a generation (e.g. `finalAnswer`).
 */

import type { HostArray } from "../../dsl/host_array.ts";
import type { ModelConfig } from "../../dsl/nn/config.ts";
import type { DeviceArray } from "../device_array.ts";
import { formatPrompt } from "../data/instruct.ts";
import { answersMatch, extractAnswer, type TaskItem } from "../data/synthetic.ts";
import type { Tokenizer } from "../text/tokenizer.ts";
import { generate } from "./generate.ts";

/** Exact-match results of a model on a list of task items. */
export interface TaskScore {
  /** correct / total. */
  accuracy: number;
  /** Items whose extracted answer matched. */
  correct: number;
  /** Items evaluated. */
  total: number;
  /** A few (query, generated, answer) triples for reports. */
  samples: { query: string; output: string; answer: string }[];
  /** The first few items answered wrongly, with the answer read from the output (if any). */
  wrong: { query: string; output: string; answer: string; predicted?: string }[];
  /** Per item, in the order given: whether it was answered right (for bootstrap intervals). */
  matched?: boolean[];
}

/** Options of `evaluateItems`. */
export interface EvaluateOptions {
  /** The prompt template, as in training ("alpaca", "compact", "chat" or a text with {query}). */
  template: string;
  /** Most tokens generated per item (default: the longest reference response's + 8). */
  maxNewTokens?: number;
  /** Rows decoded together (see `generate`). */
  batchSize?: number;
  /**
   * The final answer in a generation, compared with the item's `answer` by `answersMatch`
   * (default: the synthetic tasks' `extractAnswer`).
   */
  answerOf?: (output: string) => string | undefined;
}

/** Greedily answers every item's prompt and scores the extracted answers by exact match. */
export async function evaluateItems(
  cfg: ModelConfig,
  tok: Tokenizer,
  params: Record<string, HostArray | DeviceArray>,
  items: readonly TaskItem[],
  opts: EvaluateOptions,
): Promise<TaskScore> {
  const answerOf = opts.answerOf ?? extractAnswer;
  const longest = Math.max(...items.map((x) => tok.encode(x.response).length));
  const outputs = await generate(
    cfg,
    tok,
    params,
    items.map((x) => formatPrompt(x.query, opts.template, tok)),
    {
      maxNewTokens: opts.maxNewTokens ?? Math.min(cfg.context - 1, longest + 8),
      batchSize: opts.batchSize,
    },
  );
  let correct = 0;
  const wrong: TaskScore["wrong"] = [];
  const predictions = outputs.map((output) => answerOf(output));
  const matched = predictions.map((predicted, i) => answersMatch(predicted, items[i].answer));
  outputs.forEach((output, i) => {
    const predicted = predictions[i];
    if (matched[i]) correct++;
    else if (wrong.length < 3) {
      wrong.push({ query: items[i].query, output, answer: items[i].answer, predicted });
    }
  });
  return {
    accuracy: correct / items.length,
    correct,
    total: items.length,
    samples: outputs.slice(0, 3).map((output, i) => ({
      query: items[i].query,
      output,
      answer: items[i].answer,
    })),
    wrong,
    matched,
  };
}
