/**
 * Incremental decoding with a key/value cache: one token per row per step, attending to the
 * cached keys and values of earlier positions. Rows are left-padded to a common prompt end, so all
 * rows advance in lockstep; `offsets` marks where each row's real tokens start (its position 0).
 */

import { DslError } from "../errors.ts";
import { formatAval } from "../graph.ts";
import * as lax from "../lax.ts";
import {
  add,
  greaterEqual,
  less,
  lessEqual,
  logicalAnd,
  logicalOr,
  maximum,
  sub,
} from "../ops/elementwise.ts";
import { broadcastTo, pad, reshape, scatterAdd, slice } from "../ops/shape.ts";
import type { Tensor } from "../trace.ts";
import type { ModelConfig } from "./config.ts";
import { linear, maskedAttention } from "./layers.ts";
import {
  type AttentionPlan,
  forward,
  headWeight,
  hiddenStates,
  type Params,
} from "./transformer.ts";

/** Keys and values per layer, each [B, Hkv, slots, D]; zero-initialised, each slot written once. */
export interface KvCache<T> {
  /** Cached keys, one tensor per layer. */
  keys: T[];
  /** Cached values, one tensor per layer. */
  values: T[];
}

/** Shape of one cache tensor for `batch` rows and `length` slots (default: the context). */
export function cacheShape(cfg: ModelConfig, batch: number, length = cfg.context): number[] {
  return [batch, cfg.kvHeads, length, cfg.width / cfg.heads];
}

/**
 * One decoding step at absolute slot `slot` (i32 scalar, the same for every row): feeds `tokens`
 * [B] (i32), writes their keys/values into the cache at `slot`, and returns next-token logits
 * [B, vocab] with the updated cache. Row r sees slots offsets[r]…slot, at positions slot − offsets[r].
 * With `shared` (i32 scalar, default none), slots 0…shared−1 hold a prefix every row shares (see
 * `extend`): each row also sees them, and its own slots sit at positions shared + slot − offsets[r].
 */
export function decodeStep(
  cfg: ModelConfig,
  params: Params<Tensor>,
  cache: KvCache<Tensor>,
  tokens: Tensor,
  slot: Tensor,
  offsets: Tensor,
  shared?: Tensor,
): { logits: Tensor; cache: KvCache<Tensor> } {
  const [b] = tokens.shape;
  const length = cache.keys[0].shape[2];
  const slotIndex = reshape(slot, [1]);
  const keyIndex = lax.iota([b, 1, 1, length], 3);
  const own = logicalAnd(
    lessEqual(keyIndex, broadcastTo(slot, keyIndex.shape)),
    greaterEqual(keyIndex, reshape(offsets, [b, 1, 1, 1])),
  );
  const visible = shared
    ? logicalOr(own, less(keyIndex, broadcastTo(shared, keyIndex.shape)))
    : own;
  const position = sub(broadcastTo(slot, [b]), offsets);
  const keys: Tensor[] = [];
  const values: Tensor[] = [];
  const plan: AttentionPlan = {
    positions: reshape(shared ? add(position, broadcastTo(shared, [b])) : position, [b, 1]),
    attend(layer, q, k, v) {
      // Slot `slot` is still zero (each slot is written once): adding writes it, and with the cache
      // donated the compiler updates it in place — O(B·D) per step instead of the whole cache.
      const kc = scatterAdd(cache.keys[layer], slotIndex, k, 2);
      const vc = scatterAdd(cache.values[layer], slotIndex, v, 2);
      keys.push(kc);
      values.push(vc);
      return maskedAttention(q, kc, vc, visible, "decodeStep");
    },
  };
  const logits = forward(cfg, params, reshape(tokens, [b, 1]), plan);
  return { logits: reshape(logits, [b, cfg.vocab]), cache: { keys, values } };
}

/**
 * The prompt pass of decoding, all prompt positions at once: feeds left-padded `tokens` [B, P]
 * (i32; row r's real tokens start at `offsets[r]`), returns the next-token logits [B, vocab] after
 * slot P − 1 and a cache of `length` ≥ P slots holding the keys/values of slots 0…P−1 (the rest
 * zero), as P calls of `decodeStep` would leave it. Only the last position reaches the LM head.
 */
export function prefill(
  cfg: ModelConfig,
  params: Params<Tensor>,
  tokens: Tensor,
  offsets: Tensor,
  length: number,
): { logits: Tensor; cache: KvCache<Tensor> } {
  const [b, p] = tokens.shape;
  if (length < p || length > cfg.context) {
    throw new DslError(
      "prefill",
      `cache length ${length} must lie between the prompt length ${p} and the context ${cfg.context}`,
    );
  }
  const start = reshape(offsets, [b, 1, 1, 1]);
  const query = lax.iota([b, 1, p, p], 2);
  const key = lax.iota([b, 1, p, p], 3);
  const visible = logicalAnd(lessEqual(key, query), greaterEqual(key, start));
  // Padding positions (before a row's start) take position 0: their keys are never visible.
  const positions = maximum(sub(lax.iota([b, p], 1), reshape(offsets, [b, 1])), 0);
  const keys: Tensor[] = [];
  const values: Tensor[] = [];
  const toCache = (x: Tensor) => pad(x, [[0, 0], [0, 0], [0, length - p]]);
  const plan: AttentionPlan = {
    positions,
    attend(_layer, q, k, v) {
      keys.push(toCache(k));
      values.push(toCache(v));
      return maskedAttention(q, k, v, visible, "prefill");
    },
  };
  const h = hiddenStates(cfg, params, tokens, plan, {});
  return { logits: lastLogits(cfg, params, h), cache: { keys, values } };
}

/**
 * A chunk of prompt tokens on top of a cache (a chunked prefill): feeds `tokens` [B, T] (i32,
 * left-padded; row r's real tokens start at slot offsets[r]) into slots start…start+T−1, which
 * must still be zero, and returns the next-token logits [B, vocab] after slot start+T−1 with the
 * updated cache. Slots 0…shared−1 hold a prefix every row sees (`shared` ≤ `start`); a row's own
 * slots sit at positions shared + slot − offsets[r]. So a prompt prefix that every row shares is
 * computed once, for one row: `prefill` it, broadcast its cache to B rows and `extend` each row's
 * rest (shared = start = its length); the logits and cache equal a `prefill` of the whole prompts
 * placed that way. With shared 0 and start 0 on a zero cache this is `prefill`.
 */
export function extend(
  cfg: ModelConfig,
  params: Params<Tensor>,
  cache: KvCache<Tensor>,
  tokens: Tensor,
  offsets: Tensor,
  start: number,
  shared: number,
): { logits: Tensor; cache: KvCache<Tensor> } {
  const [b, t] = tokens.shape;
  const length = cache.keys[0].shape[2];
  if (!(shared >= 0 && shared <= start && start + t <= length)) {
    throw new DslError(
      "extend",
      `slots ${start}…${start + t - 1} must lie in the cache's ${length}, after the ${shared} ` +
        "shared ones",
      [formatAval(tokens), formatAval(cache.keys[0])],
    );
  }
  const slotIndex = lax.iota([t], 0);
  const slots = add(lax.iota([b, t], 1), start);
  const query = reshape(slots, [b, 1, t, 1]);
  const key = lax.iota([b, 1, t, length], 3);
  const own = logicalAnd(lessEqual(key, query), greaterEqual(key, reshape(offsets, [b, 1, 1, 1])));
  const visible = shared > 0 ? logicalOr(own, less(key, shared)) : own;
  // Padding slots (before a row's start) take the first own position: their keys are never seen.
  const positions = add(maximum(sub(slots, reshape(offsets, [b, 1])), 0), shared);
  const keys: Tensor[] = [];
  const values: Tensor[] = [];
  const plan: AttentionPlan = {
    positions,
    attend(layer, q, k, v) {
      const at = add(slotIndex, start);
      const kc = scatterAdd(cache.keys[layer], at, k, 2);
      const vc = scatterAdd(cache.values[layer], at, v, 2);
      keys.push(kc);
      values.push(vc);
      return maskedAttention(q, kc, vc, visible, "extend");
    },
  };
  const h = hiddenStates(cfg, params, tokens, plan, {});
  return { logits: lastLogits(cfg, params, h), cache: { keys, values } };
}

/** Next-token logits [B, vocab] of the last position of hidden states h [B, T, width]. */
function lastLogits(cfg: ModelConfig, params: Params<Tensor>, h: Tensor): Tensor {
  const [b, t] = h.shape;
  const last = reshape(slice(h, [0, t - 1, 0], [b, t, cfg.width]), [b, cfg.width]);
  return linear(last, headWeight(cfg, params));
}
