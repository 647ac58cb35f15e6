/**
 * Final answers of math responses, as the HD-PiSSA paper scores GSM8K and MATH: the answer a
 * response states last (MetaMathQA's "The answer is: N", GSM8K's "#### N", LaTeX `\boxed{N}`, or
 * the first capture group of a pattern of the user's), normalised so that "$1,200." and "1200"
 * or "3.0" and "3" compare equal, then matched exactly.
 */

/** MetaMathQA's "The answer is: N" (colon optional, any case) and GSM8K's "#### N". */
const MARKER = /the answer is:?|####/gi;

/**
 * The final answer a response states, before normalisation: the rest of the line after its last
 * "The answer is:" or "####" (the content of a `\boxed{…}` on that line when there is one), else
 * the content of its last `\boxed{…}`. With `pattern`, the first capture group of its last match
 * instead. `undefined` when the text states no answer (or states an empty one).
 */
export function extractFinalAnswer(text: string, pattern?: RegExp): string | undefined {
  let found: string | undefined;
  if (pattern) {
    const global = new RegExp(
      pattern.source,
      pattern.flags.includes("g") ? pattern.flags : pattern.flags + "g",
    );
    found = [...text.matchAll(global)].at(-1)?.[1];
  } else {
    const last = [...text.matchAll(MARKER)].at(-1);
    found = last ? text.slice(last.index + last[0].length).split("\n")[0] : lastBoxed(text);
  }
  if (found === undefined) return undefined;
  const answer = (lastBoxed(found) ?? found).trim();
  return answer === "" ? undefined : answer;
}

/** The content of the last `\boxed{…}` in `text` (braces balanced), if any. */
function lastBoxed(text: string): string | undefined {
  const start = text.lastIndexOf("\\boxed{");
  if (start < 0) return undefined;
  let depth = 0;
  for (let i = start + "\\boxed".length; i < text.length; i++) {
    if (text[i] === "{") depth++;
    else if (text[i] === "}" && --depth === 0) return text.slice(start + "\\boxed{".length, i);
  }
  return undefined; // unclosed: a generation cut off mid-answer
}

/** A decimal number, optionally signed, with optional "," thousands separators. */
const NUMBER = /^([+-]?)((?:\d{1,3}(?:,\d{3})+|\d*))(?:\.(\d*))?$/;

/**
 * An answer in the form answers are compared in: `$`, `\$` and LaTeX's `\!` dropped, white space
 * collapsed, trailing periods dropped, lower case; numbers written canonically (thousands
 * separators and leading/trailing zeros dropped, so "1,200.50" → "1200.5", "3.0" → "3", "-0" →
 * "0"). Anything else, fractions like "1/2" included, is compared as written. Idempotent.
 */
export function normalizeAnswer(answer: string): string {
  let s = answer.replaceAll("\u2212", "-"); // Unicode minus
  // Removing one of these can join the characters around it into another: repeat until none.
  for (let prev = ""; prev !== s;) prev = s, s = s.replace(/\\?\$|\\!/g, "");
  s = s.replace(/\s+/g, " ").trim().replace(/[\s.]+$/, "").toLowerCase();
  const m = NUMBER.exec(s);
  if (!m || !/\d/.test(s)) return s;
  const whole = m[2].replaceAll(",", "").replace(/^0+/, "") || "0";
  const fraction = (m[3] ?? "").replace(/0+$/, "");
  const digits = fraction ? `${whole}.${fraction}` : whole;
  return m[1] === "-" && digits !== "0" ? `-${digits}` : digits;
}

/** `extractFinalAnswer`, normalised (`normalizeAnswer`): the form eval answers are compared in. */
export function finalAnswer(text: string, pattern?: RegExp): string | undefined {
  const answer = extractFinalAnswer(text, pattern);
  return answer === undefined ? undefined : normalizeAnswer(answer);
}

/** Whether two answers are equal once normalised (see `normalizeAnswer`). */
export function sameAnswer(a: string, b: string): boolean {
  return normalizeAnswer(a) === normalizeAnswer(b);
}

/**
 * Compiles a user's answer pattern (`--answer-regex`): flags `m` (so `^` and `$` match at line
 * ends); its first capture group is the answer. Throws, saying why, when the pattern does not
 * compile or has no capture group.
 */
export function answerPattern(source: string): RegExp {
  let re: RegExp;
  try {
    re = new RegExp(source, "m");
  } catch (e) {
    throw new Error(`not a valid regular expression: ${(e as Error).message}`);
  }
  // An alternative that always matches shows how many groups the pattern has.
  const groups = new RegExp(`${source}|`).exec("")!.length - 1;
  if (groups < 1) {
    throw new Error(
      `${JSON.stringify(source)} has no capture group: put the answer in parentheses, ` +
        `e.g. "Answer: (.+)"`,
    );
  }
  return re;
}
