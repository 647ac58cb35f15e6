/**
 * How a run reports its scores on `--eval-data`: a record per evaluation in `metrics.jsonl`
 * (before: first line, step 0; after: last line) and the summary's lines — what was scored and
 * what was not, and a few wrong answers (prompt excerpt, expected, got).
 */

import { writeTextAtomic } from "../io/atomic.ts";
import { type EvalData, oneLineExcerpt } from "../data/eval_data.ts";
import type { TaskScore } from "../models/evaluate.ts";

/** One wrong answer as the reports show it. */
export interface WrongAnswer {
  /** The start of the prompt's query. */
  prompt: string;
  /** The reference's final answer (normalised). */
  expected: string;
  /** The generation's final answer (normalised), or null when it states none. */
  got: string | null;
  /** The end of the generation, where the answer should be. */
  output: string;
}

/** A `metrics.jsonl` record of one evaluation on the eval data. */
export interface EvalRecord {
  /** Which evaluation: before or after training. */
  eval: "before" | "after";
  /** Training steps taken when it ran. */
  step: number;
  /** The eval file. */
  data: string;
  /** correct / scored. */
  accuracy: number;
  /** Records whose final answer matched. */
  correct: number;
  /** Records scored. */
  scored: number;
  /** Records read whose reference states no final answer (not scored). */
  unscored: number;
  /** The first few wrong answers. */
  wrong: WrongAnswer[];
}

/** The wrong answers of a score, shortened for reports. */
export function wrongAnswers(score: TaskScore): WrongAnswer[] {
  return score.wrong.map((w) => ({
    prompt: oneLineExcerpt(w.query, 80),
    expected: w.answer,
    got: w.predicted ?? null,
    output: oneLineExcerpt(w.output, 80, "end"),
  }));
}

/** The metrics record of an evaluation on `data`. */
export function evalRecord(
  when: "before" | "after",
  step: number,
  score: TaskScore,
  data: EvalData,
): EvalRecord {
  return {
    eval: when,
    step,
    data: data.source,
    accuracy: score.accuracy,
    correct: score.correct,
    scored: score.total,
    unscored: data.unscored.length,
    wrong: wrongAnswers(score),
  };
}

/**
 * Puts `record` into the metrics file, replacing an earlier record of the same evaluation (a
 * resumed run): "before" as the first line, "after" as the last.
 */
export async function writeEvalRecord(path: string, record: EvalRecord): Promise<void> {
  let lines: string[] = [];
  try {
    lines = (await Deno.readTextFile(path)).split("\n").filter(Boolean);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const others = lines.filter((l) => JSON.parse(l).eval !== record.eval);
  const line = JSON.stringify(record);
  const all = record.eval === "before" ? [line, ...others] : [...others, line];
  await writeTextAtomic(path, all.map((l) => l + "\n").join(""));
}

/** "4 records scored (the first 6 of 10 read; 2 without a final answer: lines 3, 7)". */
export function evalDataLine(data: EvalData, responseField: string): string {
  const lines = data.unscored.slice(0, 5).join(", ") + (data.unscored.length > 5 ? ", …" : "");
  return `${data.items.length} records scored (${
    data.read < data.inFile ? `the first ${data.read} of ${data.inFile} read` : "all read"
  }${
    data.unscored.length
      ? `; ${data.unscored.length} without a final answer in "${responseField}", not scored: ` +
        `line${data.unscored.length > 1 ? "s" : ""} ${lines}`
      : ""
  })`;
}

/** Markdown list items: prompt excerpt, expected and got, then the end of the generation. */
export function wrongAnswerList(wrong: readonly WrongAnswer[]): string {
  return wrong.map((w) =>
    `- **${w.prompt}** expected ${w.expected}, got ${w.got ?? "no final answer"} ` +
    `(${JSON.stringify(w.output)})`
  ).join("\n");
}
