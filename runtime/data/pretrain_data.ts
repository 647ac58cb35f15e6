/**
 * The pretraining stream for the shipped base model: random windows of corpus text, mixed with
 * generic instruction-formatted examples made from corpus sentences (continue a passage, complete
 * a sentence, repeat a sentence) so the base knows the prompt format — and nothing about the
 * fine-tuning tasks.
 */

import type { HostArray } from "../../dsl/host_array.ts";
import type { Tokenizer } from "../text/tokenizer.ts";
import { sentences } from "./corpus.ts";
import { encodeExample, type Example, type TemplateName } from "./instruct.ts";
import { Rng } from "./rng.ts";

export interface PretrainStreamOptions {
  batch: number;
  length: number;
  /** Fraction of rows that are formatted examples (default 0.25). */
  formattedFraction?: number;
  template?: TemplateName | string;
  seed: number;
}

function formattedExample(rng: Rng, sents: string[]): Example {
  const i = rng.int(0, sents.length - 2);
  const kind = rng.int(0, 2);
  if (kind === 0) return { query: `Continue the text.\n${sents[i]}`, response: sents[i + 1] };
  if (kind === 1) {
    const words = sents[i].split(" ");
    const cut = Math.max(1, Math.floor(words.length / 2));
    return {
      query: `Complete the sentence: ${words.slice(0, cut).join(" ")}`,
      response: words.slice(cut).join(" "),
    };
  }
  return { query: `Repeat this sentence: ${sents[i]}`, response: sents[i] };
}

/**
 * Batch `step` of the stream: a pure function of (text, options, step), so a run can be resumed
 * or reproduced at any step. Loss covers every real token (pads are masked).
 */
export class PretrainStream {
  private readonly bytes: Uint8Array;
  private readonly sents: string[];

  /** A stream over `text` (the byte tokenizer is required). */
  constructor(
    private readonly text: string,
    private readonly tok: Tokenizer,
    private readonly opts: PretrainStreamOptions,
  ) {
    if (tok.kind !== "byte") throw new Error("PretrainStream: the byte tokenizer is expected");
    this.bytes = new TextEncoder().encode(text);
    this.sents = sentences(text);
  }

  /** Batch `step`: ids, next-token targets and loss mask, each [batch, length]. */
  batch(step: number): { ids: HostArray; targets: HostArray; mask: HostArray } {
    const { batch: b, length: t, formattedFraction = 0.25, template = "compact" } = this.opts;
    const rng = new Rng(this.opts.seed, step + 1);
    const ids = new Int32Array(b * t).fill(this.tok.pad);
    const targets = new Int32Array(b * t).fill(this.tok.pad);
    const mask = new Float32Array(b * t);
    const formattedRows = Math.round(b * formattedFraction);
    for (let row = 0; row < b; row++) {
      let seq: number[];
      if (row < formattedRows) {
        seq = encodeExample(this.tok, formattedExample(rng, this.sents), template).tokens;
      } else {
        const start = rng.int(0, this.bytes.length - t - 2);
        seq = Array.from(this.bytes.subarray(start, start + t + 1));
      }
      const n = Math.min(seq.length - 1, t);
      for (let i = 0; i < n; i++) {
        ids[row * t + i] = seq[i];
        targets[row * t + i] = seq[i + 1];
        mask[row * t + i] = 1;
      }
    }
    const shape = [b, t];
    return {
      ids: { shape, dtype: "i32", data: ids },
      targets: { shape, dtype: "i32", data: targets },
      mask: { shape, dtype: "f32", data: mask },
    };
  }
}

/** Non-overlapping [B, T] windows covering `text` (for perplexity); the last batch may be short. */
export function evaluationWindows(
  text: string,
  tok: Tokenizer,
  length: number,
  batch: number,
): { ids: HostArray; targets: HostArray; mask: HostArray }[] {
  const tokens = tok.encode(text);
  const windows: number[][] = [];
  for (let s = 0; s + 1 < tokens.length; s += length) windows.push(tokens.slice(s, s + length + 1));
  const out = [];
  for (let i = 0; i < windows.length; i += batch) {
    const rows = windows.slice(i, i + batch);
    const ids = new Int32Array(batch * length).fill(tok.pad);
    const targets = new Int32Array(batch * length).fill(tok.pad);
    const mask = new Float32Array(batch * length);
    rows.forEach((w, r) => {
      for (let j = 0; j + 1 < w.length; j++) {
        ids[r * length + j] = w[j];
        targets[r * length + j] = w[j + 1];
        mask[r * length + j] = 1;
      }
    });
    const shape = [batch, length];
    out.push({
      ids: { shape, dtype: "i32" as const, data: ids },
      targets: { shape, dtype: "i32" as const, data: targets },
      mask: { shape, dtype: "f32" as const, data: mask },
    });
  }
  return out;
}
