/**
 * Tasks whose solution needs a high-rank weight change: a fixed substitution cipher (a random
 * permutation of the 26 letters, with no letter left in place) applied to, or undone from, the one
 * capital letter of a short random word. Finding the capital is content-based attention, which the
 * shipped base learns within a few hundred steps; the rest is the 26-entry letter map: moving every
 * letter's output to another letter is a change of rank about 26 in the letter subspace, where a
 * rank-r adapter can rewrite only a few letters at a time in any one matrix. Scored on held-out
 * words, so the map must generalise letter by letter rather than be memorised per word.
 */

import { Rng } from "./rng.ts";
import type { Generator } from "./synthetic.ts";

const ALPHABET = "abcdefghijklmnopqrstuvwxyz";

/**
 * The cipher: a seeded random derangement of a–z (no letter maps to itself, so copying a word
 * scores nothing). Fixed for the task, independent of the run's seed: the seed varies the words.
 */
export const CIPHER: Readonly<Record<string, string>> = (() => {
  const rng = new Rng(20250518, 7);
  for (;;) {
    const image = rng.shuffle([...ALPHABET]);
    if (image.every((c, i) => c !== ALPHABET[i])) {
      return Object.fromEntries([...ALPHABET].map((c, i) => [c, image[i]]));
    }
  }
})();

const DECIPHER: Readonly<Record<string, string>> = Object.fromEntries(
  Object.entries(CIPHER).map(([plain, coded]) => [coded, plain]),
);

/**
 * A short random word with one capital letter, the key: the model must find the key (content
 * based attention, which the base learns within a few dozen steps) and map it through the cipher.
 * The other letters vary, so held-out words test the map, not memorised queries.
 */
function keyedWord(rng: Rng): { word: string; key: string } {
  const letters = Array.from({ length: rng.int(3, 5) }, () => rng.pick([...ALPHABET]));
  const at = rng.int(0, letters.length - 1);
  const key = letters[at];
  letters[at] = key.toUpperCase();
  return { word: letters.join(""), key };
}

/** `text` with every letter mapped through `map` (other characters kept). */
export const substitute = (text: string, map: Readonly<Record<string, string>>): string =>
  [...text].map((c) => map[c] ?? c).join("");

/** Where an item belongs: a hash of its query puts every word in one split for good. */
export type Split = "train" | "validation" | "test";

/**
 * The split of a query: 1/8 of all words are validation, 1/8 test, the rest training. Because
 * the split is a function of the word itself, a held-out word is never trained on, whatever the
 * seed or the sizes drawn.
 */
export function splitOf(query: string): Split {
  let h = 2166136261;
  for (let i = 0; i < query.length; i++) h = Math.imul(h ^ query.charCodeAt(i), 16777619);
  const bucket = (h >>> 0) % 8;
  return bucket === 0 ? "validation" : bucket === 1 ? "test" : "train";
}

/** The rank suite's generators: the cipher and its inverse, applied to a word's capital. */
export const RANK_TASKS: Readonly<Record<"cipher" | "decipher", Generator>> = {
  cipher: (rng: Rng) => {
    const { word, key } = keyedWord(rng);
    return { query: `Encode ${word}`, answer: CIPHER[key] };
  },
  decipher: (rng: Rng) => {
    const { word, key } = keyedWord(rng);
    return { query: `Decode ${word}`, answer: DECIPHER[key] };
  },
};

/** The suite `deno task compare` runs (`--task ranksuite`): both directions, mixed. */
export const RANK_SUITE: string[] = Object.keys(RANK_TASKS);
