/**
 * Incremental decoding with a key/value cache: one token per row per step, attending to the
 * cached keys and values of earlier positions. Rows are left-padded to a common prompt end, so all
 * rows advance in lockstep; `offsets` marks where each row's real tokens start (its position 0).
 */

import * as lax from "../lax.ts";
import { greaterEqual, lessEqual, logicalAnd, mul, sub, where } from "../ops/elementwise.ts";
import { matmul } from "../ops/linalg.ts";
import { softmax } from "../ops/nn.ts";
import { broadcastTo, reshape, scatterAdd, transpose } from "../ops/shape.ts";
import type { Tensor } from "../trace.ts";
import type { ModelConfig } from "./config.ts";
import { type AttentionPlan, forward, type Params } from "./transformer.ts";

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
 */
export function decodeStep(
  cfg: ModelConfig,
  params: Params<Tensor>,
  cache: KvCache<Tensor>,
  tokens: Tensor,
  slot: Tensor,
  offsets: Tensor,
): { logits: Tensor; cache: KvCache<Tensor> } {
  const [b] = tokens.shape;
  const shape = [...cache.keys[0].shape];
  const length = shape[2];
  const slotIndex = reshape(slot, [1]);
  const keyIndex = lax.iota([b, 1, 1, length], 3);
  const visible = logicalAnd(
    lessEqual(keyIndex, broadcastTo(slot, keyIndex.shape)),
    greaterEqual(keyIndex, reshape(offsets, [b, 1, 1, 1])),
  );
  const keys: Tensor[] = [];
  const values: Tensor[] = [];
  const group = cfg.heads / cfg.kvHeads;
  const repeat = (x: Tensor) =>
    group === 1 ? x : reshape(
      broadcastTo(reshape(x, [b, cfg.kvHeads, 1, length, shape[3]]), [
        b,
        cfg.kvHeads,
        group,
        length,
        shape[3],
      ]),
      [b, cfg.heads, length, shape[3]],
    );
  const plan: AttentionPlan = {
    positions: reshape(sub(broadcastTo(slot, [b]), offsets), [b, 1]),
    attend(layer, q, k, v) {
      // Slot `slot` is still zero (each slot is written once): adding writes it, and with the cache
      // donated the compiler updates it in place — O(B·D) per step instead of the whole cache.
      const kc = scatterAdd(cache.keys[layer], slotIndex, k, 2);
      const vc = scatterAdd(cache.values[layer], slotIndex, v, 2);
      keys.push(kc);
      values.push(vc);
      const scores = mul(matmul(q, transpose(repeat(kc), [0, 1, 3, 2])), 1 / Math.sqrt(shape[3]));
      return matmul(softmax(where(visible, scores, -1e9), -1), repeat(vc));
    },
  };
  const logits = forward(cfg, params, reshape(tokens, [b, 1]), plan);
  return { logits: reshape(logits, [b, cfg.vocab]), cache: { keys, values } };
}
