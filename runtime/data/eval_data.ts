/**
 * Evaluation data of the user's: instruction JSONL (the training data's format) whose reference
 * responses state a final answer. Each record becomes a scored item whose answer is the
 * reference's normalised final answer; records whose reference states none are counted and left
 * out, never scored as wrong.
 */

import { finalAnswer } from "./answers.ts";
import { type JsonlFields, parseJsonlLines } from "./instruct.ts";
import type { TaskItem } from "./synthetic.ts";

/** A scored evaluation record: the query, the reference response and its final answer. */
export interface EvalItem extends TaskItem {
  /** The record's line in the file. */
  line: number;
}

/** The records of an evaluation file that are scored, and those that cannot be. */
export interface EvalData {
  /** The file (or source name) the records came from. */
  source: string;
  /** Records whose reference states a final answer (normalised in `answer`). */
  items: EvalItem[];
  /** Lines of the records read whose reference states no final answer: not scored. */
  unscored: number[];
  /** Records read: the first `limit` of the file. */
  read: number;
  /** Records in the file. */
  inFile: number;
}

/** How evaluation records are read: field names, how many, and the answer pattern. */
export interface EvalDataOptions extends JsonlFields {
  /** Read at most this many records, from the top of the file (default: all). */
  limit?: number;
  /** The answer's pattern (first capture group); default "The answer is:", "####", `\boxed`. */
  pattern?: RegExp;
}

/**
 * Evaluation items from JSONL text. Throws, naming the source, the first line and the field, when
 * no record read states a final answer (then every score would be meaningless).
 */
export function parseEvalData(text: string, source: string, opts: EvalDataOptions = {}): EvalData {
  const records = parseJsonlLines(text, opts, source);
  const read = records.slice(0, opts.limit ?? records.length);
  const items: EvalItem[] = [];
  const unscored: number[] = [];
  for (const r of read) {
    const answer = finalAnswer(r.response, opts.pattern);
    if (answer === undefined) unscored.push(r.line);
    else items.push({ query: r.query, response: r.response, answer, line: r.line });
  }
  if (items.length === 0) {
    const field = opts.response ?? "response";
    throw new Error(
      `${source}:${read[0].line}: field "${field}" states no final answer ` +
        `(${JSON.stringify(oneLineExcerpt(read[0].response, 60, "end"))}), nor does any of the ` +
        `${read.length} record(s) read: the answer is looked for ${
          opts.pattern
            ? `with the pattern ${opts.pattern}`
            : 'after "The answer is:" or "####", or in \\boxed{…}'
        }; give another pattern with --answer-regex`,
    );
  }
  return { source, items, unscored, read: read.length, inFile: records.length };
}

/** Reads an evaluation JSONL file (see `parseEvalData`). */
export async function readEvalData(path: string, opts: EvalDataOptions = {}): Promise<EvalData> {
  return parseEvalData(await Deno.readTextFile(path), path, opts);
}

/** At most `chars` characters of `text` on one line, from its start or its end, with "…". */
export function oneLineExcerpt(
  text: string,
  chars: number,
  from: "start" | "end" = "start",
): string {
  const flat = text.replace(/\s+/g, " ").trim();
  if (flat.length <= chars) return flat;
  return from === "start" ? flat.slice(0, chars - 1) + "…" : "…" + flat.slice(-(chars - 1));
}
