/**
 * Neural-network layers as pure functions of their weights (no modules, no state). Weights use
 * PyTorch's layout so Hugging Face checkpoints load unchanged: a linear weight is [out, in] and is
 * applied as x·Wᵀ (GPT-2's Conv1D is the exception: [in, out], applied as x·W).
 */

import { DslError } from "../errors.ts";
import * as lax from "../lax.ts";
import { asTensor, type TensorLike } from "../ops/coerce.ts";
import { add, gelu, greaterEqual, mul, silu, sub, where } from "../ops/elementwise.ts";
import { matmul } from "../ops/linalg.ts";
import { softmax } from "../ops/nn.ts";
import { concat, reshape, slice, take, transpose } from "../ops/shape.ts";
import type { Tensor } from "../trace.ts";

/** x·Wᵀ + b with W stored [out, in] (torch.nn.Linear). */
export function linear(x: TensorLike, weight: TensorLike, bias?: TensorLike | null): Tensor {
  const w = asTensor(weight, "linear");
  const t = asTensor(x, "linear");
  if (w.ndim !== 2 || t.shape[t.ndim - 1] !== w.shape[1]) {
    throw new DslError(
      "linear",
      `weight must be [out, in] with in = x's last dim (x: [${t.shape}], weight: [${w.shape}])`,
      [`[${t.shape}]`, `[${w.shape}]`],
    );
  }
  const y = matmul(t, transpose(w));
  return bias === undefined || bias === null ? y : add(y, bias);
}

/** x·W + b with W stored [in, out] (GPT-2's Conv1D). */
export function conv1d(x: TensorLike, weight: TensorLike, bias?: TensorLike | null): Tensor {
  const y = matmul(x, weight);
  return bias === undefined || bias === null ? y : add(y, bias);
}

/** Rows of `table` [vocab, width] for integer `ids` of any shape: result [...ids, width]. */
export function embedding(table: TensorLike, ids: TensorLike): Tensor {
  return take(table, ids, 0);
}

/** [T, T] bool: true where key position ≤ query position (built in the graph from iota). */
export function causalMask(length: number): Tensor {
  const rows = lax.iota([length, length], 0);
  const cols = lax.iota([length, length], 1);
  return greaterEqual(rows, cols);
}

/**
 * Causal scaled dot-product attention. q: [B, H, T, D]; k, v: [B, Hkv, T, D] with H a multiple of
 * Hkv (grouped-query attention repeats each key/value head H/Hkv times). Returns [B, H, T, D].
 */
export function causalAttention(q: Tensor, k: Tensor, v: Tensor): Tensor {
  return maskedAttention(q, k, v, causalMask(q.shape[2]), "causalAttention");
}

/**
 * Scaled dot-product attention of q [B, H, T, D] over k, v [B, Hkv, S, D] where `visible` (bool,
 * broadcastable to [B, H, T, S]) holds; H a multiple of Hkv (grouped-query attention). A query
 * that sees no key gets a uniform mix, never NaN. Returns [B, H, T, D].
 */
export function maskedAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  visible: Tensor,
  op = "maskedAttention",
): Tensor {
  const [b, h, , d] = q.shape;
  const [, hkv, s] = k.shape;
  if (h % hkv !== 0) {
    throw new DslError(op, `query heads ${h} must be a multiple of kv heads ${hkv}`);
  }
  const repeat = (x: Tensor) =>
    hkv === h ? x : reshape(
      lax.broadcast(reshape(x, [b, hkv, 1, s, d]), [b, hkv, h / hkv, s, d]),
      [b, h, s, d],
    );
  const scores = mul(matmul(q, transpose(repeat(k), [0, 1, 3, 2])), 1 / Math.sqrt(d));
  return matmul(softmax(where(visible, scores, -1e9), -1), repeat(v));
}

/** [B, T, H·D] → [B, H, T, D]. */
export function splitHeads(x: Tensor, heads: number): Tensor {
  const [b, t, w] = x.shape;
  return transpose(reshape(x, [b, t, heads, w / heads]), [0, 2, 1, 3]);
}

/** [B, H, T, D] → [B, T, H·D]. */
export function mergeHeads(x: Tensor): Tensor {
  const [b, h, t, d] = x.shape;
  return reshape(transpose(x, [0, 2, 1, 3]), [b, t, h * d]);
}

/** cos and sin tables [T, D] for rotary embeddings (Hugging Face's half-split layout). */
export function rotaryTables(length: number, dim: number, theta = 10000): [Tensor, Tensor] {
  const half = dim / 2;
  const cos = new Float32Array(length * dim);
  const sin = new Float32Array(length * dim);
  for (let p = 0; p < length; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p / theta ** ((2 * i) / dim);
      for (const j of [i, i + half]) {
        cos[p * dim + j] = Math.cos(angle);
        sin[p * dim + j] = Math.sin(angle);
      }
    }
  }
  const table = (data: Float32Array) => lax.constant({ shape: [length, dim], dtype: "f32", data });
  return [table(cos), table(sin)];
}

/** x·cos + rotate_half(x)·sin for x [..., D] with cos/sin broadcastable to x (HF Llama's RoPE). */
export function rotate(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const d = x.shape[x.ndim - 1];
  const zeros = x.shape.map(() => 0);
  const lo = slice(x, zeros, [...x.shape.slice(0, -1), d / 2]);
  const hi = slice(x, [...zeros.slice(0, -1), d / 2], x.shape);
  const rotated = concat([sub(0, hi), lo], -1);
  return add(mul(x, cos), mul(rotated, sin));
}

/** Rotary position embedding of x [B, H, T, D] at positions 0…T−1. */
export function applyRotary(x: Tensor, theta = 10000): Tensor {
  const [, , t, d] = x.shape;
  const [cos, sin] = rotaryTables(t, d, theta);
  return rotate(x, cos, sin);
}

/** Transformer MLP with GELU (tanh approximation, GPT-2's gelu_new). */
export function mlpGelu(
  x: Tensor,
  fc: { weight: Tensor; bias?: Tensor | null },
  proj: { weight: Tensor; bias?: Tensor | null },
  layout: "linear" | "conv1d" = "linear",
): Tensor {
  const apply = layout === "linear" ? linear : conv1d;
  return apply(gelu(apply(x, fc.weight, fc.bias)), proj.weight, proj.bias);
}

/** SwiGLU MLP (Llama): down(silu(gate(x)) ⊙ up(x)). */
export function swiglu(x: Tensor, gate: Tensor, up: Tensor, down: Tensor): Tensor {
  return linear(mul(silu(linear(x, gate)), linear(x, up)), down);
}
