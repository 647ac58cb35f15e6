/** Exact-match accuracy of greedy answers on a synthetic task's test split. */

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
}

/** Greedily answers every item's prompt and scores the extracted answers by exact match. */
export async function evaluateItems(
  cfg: ModelConfig,
  tok: Tokenizer,
  params: Record<string, HostArray | DeviceArray>,
  items: readonly TaskItem[],
  opts: { template: string; maxNewTokens?: number; batchSize?: number },
): Promise<TaskScore> {
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
  outputs.forEach((out, i) => {
    if (answersMatch(extractAnswer(out), items[i].answer)) correct++;
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
  };
}
