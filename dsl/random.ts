/**
 * Counter-based randomness (Threefry-2x32, 20 rounds — Salmon et al. 2011, as JAX uses) written
 * with DSL primitives, so a stream is the same bits on the CPU reference and on WebGPU. A key is an
 * i32 tensor of shape [2]; keys are split, never reused, as in JAX.
 */

import { DslError } from "./errors.ts";
import type { HostArray } from "./host_array.ts";
import * as lax from "./lax.ts";
import { asTensor, type TensorLike } from "./ops/coerce.ts";
import type { Tensor } from "./trace.ts";

const ROTATIONS = [13, 15, 26, 6, 17, 29, 16, 24];
const PARITY = 0x1bd11bda;

/** A PRNG key on the host: `key(seed)` ≙ jax.random.key(seed) (seed taken as 32 bits). */
export function prngKey(seed: number): HostArray {
  if (!Number.isInteger(seed)) {
    throw new DslError("prngKey", `seed must be an integer, got ${seed}`);
  }
  return {
    shape: [2],
    dtype: "i32",
    data: Int32Array.of(Math.floor(seed / 2 ** 32) | 0, seed | 0),
  };
}

const scalar = (v: number, like: Tensor) => lax.splat(v | 0, like.shape, "i32");

function rotl(x: Tensor, r: number): Tensor {
  return lax.bitOr(
    lax.shiftLeft(x, scalar(r, x)),
    lax.shiftRightLogical(x, scalar(32 - r, x)),
  );
}

/** Threefry-2x32-20 of counter words (c0, c1) under key words (k0, k1), all i32 of one shape. */
export function threefry2x32(k0: Tensor, k1: Tensor, c0: Tensor, c1: Tensor): [Tensor, Tensor] {
  const k2 = lax.bitXor(lax.bitXor(k0, k1), scalar(PARITY, k0));
  const ks = [k0, k1, k2];
  let x0 = lax.add(c0, k0);
  let x1 = lax.add(c1, k1);
  for (let block = 0; block < 5; block++) {
    for (let i = 0; i < 4; i++) {
      x0 = lax.add(x0, x1);
      x1 = lax.bitXor(rotl(x1, ROTATIONS[(block % 2) * 4 + i]), x0);
    }
    x0 = lax.add(x0, ks[(block + 1) % 3]);
    x1 = lax.add(lax.add(x1, ks[(block + 2) % 3]), scalar(block + 1, x1));
  }
  return [x0, x1];
}

function keyWords(key: TensorLike, op: string): [Tensor, Tensor] {
  const k = asTensor(key, op);
  if (k.dtype !== "i32" || k.shape.length !== 1 || k.shape[0] !== 2) {
    throw new DslError(op, `a key is an i32 tensor of shape [2], got ${k.dtype}[${k.shape}]`, [
      `${k.dtype}[${k.shape}]`,
    ]);
  }
  const word = (i: number) => lax.reshape(lax.slice(k, [i], [i + 1]), []);
  return [word(0), word(1)];
}

/** `count` random 32-bit words (i32) from `key`: counter i gives words 2i and 2i+1. */
function words(key: TensorLike, count: number, op: string): Tensor {
  const [k0, k1] = keyWords(key, op);
  const half = Math.ceil(count / 2);
  const shape = [half];
  const [x0, x1] = threefry2x32(
    lax.broadcast(lax.reshape(k0, [1]), shape),
    lax.broadcast(lax.reshape(k1, [1]), shape),
    lax.iota(shape, 0),
    lax.splat(0, shape, "i32"),
  );
  const pairs = lax.reshape(
    lax.concat([lax.reshape(x0, [half, 1]), lax.reshape(x1, [half, 1])], 1),
    [
      2 * half,
    ],
  );
  return count === 2 * half ? pairs : lax.slice(pairs, [0], [count]);
}

const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Uniform random i32 bit patterns of `shape`. */
export function randomBits(key: TensorLike, shape: readonly number[]): Tensor {
  return lax.reshape(words(key, sizeOf(shape), "randomBits"), [...shape]);
}

/** `n` new independent keys from `key`, as an i32 tensor [n, 2]. */
export function splitKey(key: TensorLike, n = 2): Tensor {
  return lax.reshape(words(key, 2 * n, "splitKey"), [n, 2]);
}

/** A key derived from `key` and an integer (step, layer index, …). */
export function foldIn(key: TensorLike, data: number): Tensor {
  const [k0, k1] = keyWords(key, "foldIn");
  const [x0, x1] = threefry2x32(k0, k1, lax.splat(0, [], "i32"), lax.splat(data | 0, [], "i32"));
  return lax.concat([lax.reshape(x0, [1]), lax.reshape(x1, [1])], 0);
}

/** 24 random bits as a float in [0, 1): exact on every backend (no rounding anywhere). */
function unitFloat(bits: Tensor): Tensor {
  const top = lax.shiftRightLogical(bits, scalar(8, bits));
  return lax.mul(lax.cast(top, "f32"), lax.splat(2 ** -24, bits.shape));
}

/** Uniform floats in [low, high). */
export function uniform(key: TensorLike, shape: readonly number[], low = 0, high = 1): Tensor {
  const u = unitFloat(randomBits(key, shape));
  if (low === 0 && high === 1) return u;
  return lax.add(lax.mul(u, lax.splat(high - low, u.shape)), lax.splat(low, u.shape));
}

/** Standard normal floats (Box–Muller on two 24-bit uniforms; u₁ ∈ (0, 1] so log is finite). */
export function normal(key: TensorLike, shape: readonly number[], std = 1): Tensor {
  const n = sizeOf(shape);
  const bits = words(key, 2 * n, "normal");
  const u1 = lax.sub(lax.splat(1, [n]), unitFloat(lax.slice(bits, [0], [n])));
  const u2 = unitFloat(lax.slice(bits, [n], [2 * n]));
  const radius = lax.sqrt(lax.mul(lax.splat(-2 * std * std, [n]), lax.log(u1)));
  const z = lax.mul(radius, lax.cos(lax.mul(lax.splat(2 * Math.PI, [n]), u2)));
  return lax.reshape(z, [...shape]);
}

/** Kaiming-uniform (PyTorch's nn.Linear default, a = √5): U(±1/√fanIn). */
export function kaimingUniform(key: TensorLike, shape: readonly number[], fanIn: number): Tensor {
  const bound = 1 / Math.sqrt(fanIn);
  return uniform(key, shape, -bound, bound);
}
