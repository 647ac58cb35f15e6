/**
 * Greedy generation on the device with a key/value cache: prompts are left-padded to a common
 * end and run through the model in one prefill pass per batch, then every step runs one compiled
 * decode program for the whole batch (the cache is donated, so it is updated in place), and the
 * host reads tokens back only every few steps to stop early. A prompt prefix that every row of a
 * batch shares (a template, a system prompt, few-shot examples) is computed once, for one row,
 * and only the rows' own tokens run for every row (`extend` in dsl/nn/decode.ts).
 */

import type { HostArray } from "../../dsl/host_array.ts";
import type { ModelConfig } from "../../dsl/nn/config.ts";
import { decodeStep, extend, type KvCache, prefill } from "../../dsl/nn/decode.ts";
import { broadcastTo } from "../../dsl/ops/shape.ts";
import { argmax } from "../../dsl/ops/reduce.ts";
import type { Tensor } from "../../dsl/trace.ts";
import type { DeviceArray } from "../device_array.ts";
import { readArrays } from "../device_array.ts";
import { jit, type Jitted, toDevice } from "../jit.ts";
import type { Tokenizer } from "../text/tokenizer.ts";

/** Options of `generate`. */
export interface GenerateOptions {
  /** Most tokens generated per prompt. */
  maxNewTokens: number;
  /** Rows decoded together (default 64). */
  batchSize?: number;
  /** Host reads between early-stop checks (default 16 steps). */
  checkEvery?: number;
  /**
   * Compute a token prefix that every prompt of a batch shares once, for one row (default true,
   * where it is at least `MIN_SHARED_PREFIX` tokens). The outputs are the same either way.
   */
  sharePrefix?: boolean;
}

/** Shorter shared prefixes run with the rest: a second prompt program would cost more. */
export const MIN_SHARED_PREFIX = 16;
/** Shared prefix lengths are rounded down to this (a few compiled shapes serve every batch). */
const SHARED_QUANTUM = 8;

const decoders = new WeakMap<ModelConfig, Jitted>();

function decoder(cfg: ModelConfig): Jitted {
  let step = decoders.get(cfg);
  if (!step) {
    step = jit(
      (
        params: Record<string, Tensor>,
        cache: KvCache<Tensor>,
        tokens: Tensor,
        slot: Tensor,
        offsets: Tensor,
        shared: Tensor,
      ) => {
        const out = decodeStep(cfg, params, cache, tokens, slot, offsets, shared);
        return { next: argmax(out.logits, -1), cache: out.cache };
      },
      { donate: 1 },
    );
    decoders.set(cfg, step);
  }
  return step;
}

/** Prompt lengths are rounded up to this, so a few compiled prefill shapes serve every batch. */
const PROMPT_QUANTUM = 16;

type ProgramCache = WeakMap<ModelConfig, Map<number, Jitted>>;

/** The program `make` builds for (`cfg`, `key`), compiled once and kept per model config. */
function cached(cache: ProgramCache, cfg: ModelConfig, key: number, make: () => Jitted): Jitted {
  const byKey = cache.get(cfg) ?? new Map<number, Jitted>();
  cache.set(cfg, byKey);
  if (!byKey.has(key)) byKey.set(key, make());
  return byKey.get(key)!;
}

const prefillers: ProgramCache = new WeakMap();

/** The prompt pass into a cache of `length` slots. */
function prefiller(cfg: ModelConfig, length: number): Jitted {
  return cached(
    prefillers,
    cfg,
    length,
    () =>
      jit((params: Record<string, Tensor>, tokens: Tensor, offsets: Tensor) => {
        const out = prefill(cfg, params, tokens, offsets, length);
        return { next: argmax(out.logits, -1), cache: out.cache };
      }),
  );
}

const extenders: ProgramCache = new WeakMap();

/** The prompt pass after a shared prefix of `shared` slots: its cache broadcast to every row. */
function extender(cfg: ModelConfig, shared: number): Jitted {
  return cached(extenders, cfg, shared, () =>
    jit((
      params: Record<string, Tensor>,
      prefix: KvCache<Tensor>,
      tokens: Tensor,
      offsets: Tensor,
    ) => {
      const rows = (x: Tensor) => broadcastTo(x, [tokens.shape[0], ...x.shape.slice(1)]);
      const cache = { keys: prefix.keys.map(rows), values: prefix.values.map(rows) };
      const out = extend(cfg, params, cache, tokens, offsets, shared, shared);
      return { next: argmax(out.logits, -1), cache: out.cache };
    }));
}

/** Length of the token prefix all `rows` share, leaving each row at least one token of its own. */
export function sharedPrefixLength(rows: readonly number[][]): number {
  const shortest = Math.min(...rows.map((r) => r.length));
  let n = 0;
  while (n < shortest - 1 && rows.every((r) => r[n] === rows[0][n])) n++;
  return n;
}

const i32 = (shape: number[], data: Int32Array): HostArray => ({ shape, dtype: "i32", data });

/**
 * Greedy continuations of `prompts` (decoded text, without the prompt, cut at EOS or another of
 * the tokenizer's `stopIds`). `params` may be host arrays or device arrays (kept on the device
 * across calls).
 */
export async function generate(
  cfg: ModelConfig,
  tok: Tokenizer,
  params: Record<string, HostArray | DeviceArray>,
  prompts: readonly string[],
  opts: GenerateOptions,
): Promise<string[]> {
  const rows = Math.min(opts.batchSize ?? 64, prompts.length);
  const maxNew = Math.max(1, Math.min(opts.maxNewTokens, cfg.context - 1));
  const onDevice = await toDevice(params) as Record<string, DeviceArray>;
  const out: string[] = [];
  for (let i = 0; i < prompts.length; i += rows) {
    const chunk = prompts.slice(i, i + rows);
    out.push(
      ...(await generateBatch(cfg, tok, onDevice, chunk, rows, maxNew, {
        checkEvery: opts.checkEvery ?? 16,
        sharePrefix: opts.sharePrefix ?? true,
      })),
    );
  }
  return out;
}

async function generateBatch(
  cfg: ModelConfig,
  tok: Tokenizer,
  params: Record<string, DeviceArray>,
  prompts: readonly string[],
  rows: number,
  maxNew: number,
  opts: { checkEvery: number; sharePrefix: boolean },
): Promise<string[]> {
  const { checkEvery } = opts;
  const room = cfg.context - maxNew;
  const encoded = prompts.map((p) => {
    const ids = tok.bos === undefined ? tok.encode(p) : [tok.bos, ...tok.encode(p)];
    return ids.slice(Math.max(0, ids.length - room)); // keep the prompt's end if it is too long
  });
  // Filler rows of a short batch repeat its first prompt (their outputs are dropped).
  while (encoded.length < rows) encoded.push(encoded[0]);
  // Rounded down to a multiple of 8, so that batches whose prompts share a few more or fewer
  // tokens still reuse the compiled prefix and extend programs.
  const common = rows > 1 && opts.sharePrefix ? sharedPrefixLength(encoded) : 0;
  const shared = common >= MIN_SHARED_PREFIX ? common - (common % SHARED_QUANTUM) : 0;
  // Each row's own tokens, left-padded to end at promptEnd, after the shared prefix's slots.
  const own = encoded.map((e) => e.slice(shared));
  const longest = Math.max(...own.map((e) => e.length));
  const promptEnd = Math.min(room, shared + Math.ceil(longest / PROMPT_QUANTUM) * PROMPT_QUANTUM);
  const width = promptEnd - shared;
  const offsets = Int32Array.from(own, (e) => promptEnd - e.length);
  // Slots actually needed, rounded up to 64 so a few compiled shapes serve every batch.
  const slots = Math.min(cfg.context, Math.ceil((promptEnd + maxNew) / 64) * 64);
  const tokens = Int32Array.from(
    { length: rows * width },
    (_, i) => {
      const r = Math.floor(i / width), s = shared + (i % width);
      return s >= offsets[r] ? own[r][s - offsets[r]] : tok.pad;
    },
  );
  const offsetArray = i32([rows], offsets);
  let first: { next: DeviceArray; cache: KvCache<DeviceArray> };
  if (shared > 0) {
    // The shared prefix once, as one row at slots 0…shared−1; then every row's own tokens.
    const prefix = await prefiller(cfg, slots).onDevice(
      params,
      i32([1, shared], Int32Array.from(encoded[0].slice(0, shared))),
      i32([1], Int32Array.of(0)),
    );
    first = await extender(cfg, shared).onDevice(
      params,
      prefix.cache,
      i32([rows, width], tokens),
      offsetArray,
    );
    prefix.next.destroy();
    [...prefix.cache.keys, ...prefix.cache.values].forEach((a: DeviceArray) => a.destroy());
  } else {
    first = await prefiller(cfg, slots).onDevice(params, i32([rows, width], tokens), offsetArray);
  }
  const sharedArray = i32([], Int32Array.of(shared));
  let cache = first.cache;
  let previous = first.next as DeviceArray;
  const step = decoder(cfg);
  const generated: number[][] = encoded.map(() => []);
  const done = new Array(rows).fill(false);
  const stop = new Set([tok.eos, ...(tok.stopIds ?? [])]);
  let pending: DeviceArray[] = [];
  const drain = async () => {
    const host = await readArrays(pending);
    pending = [];
    for (const a of host) {
      a.data.forEach((t, r) => {
        if (done[r]) return;
        if (stop.has(t)) done[r] = true;
        else generated[r].push(t);
      });
    }
  };
  pending.push(previous);
  for (let s = promptEnd; s < promptEnd - 1 + maxNew; s++) {
    if (pending.length >= checkEvery) {
      await drain();
      if (done.every(Boolean)) break;
    }
    const res = await step.onDevice(
      params,
      cache,
      previous,
      i32([], Int32Array.of(s)),
      offsetArray,
      sharedArray,
    );
    cache = res.cache;
    previous = res.next;
    pending.push(res.next);
  }
  await drain();
  return generated.slice(0, prompts.length).map((ids) => tok.decode(ids));
}
