/**
 * The benchmark workloads as plain data: parameter shapes and deterministic initial values, shared
 * by every library so that all of them start from bit-identical inputs.
 */

import { randomData } from "./util.ts";

export interface Init {
  shape: number[];
  data: Float32Array<ArrayBuffer>;
}

function init(shape: number[], seed: number, scale: number, base = 0): Init {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = randomData(n, seed, scale);
  if (base) { for (let i = 0; i < n; i++) data[i] += base; }
  return { shape, data };
}

/** Names of the MLP parameters, in a fixed order. */
export const MLP_KEYS = ["w1", "b1", "w2", "b2"] as const;
export type MlpKey = (typeof MLP_KEYS)[number];

export interface MlpCase {
  name: string;
  batch: number;
  inputs: number;
  hidden: number;
  classes: number;
  params: Record<MlpKey, Init>;
  x: Init;
  /** Class indices (i32). */
  labels: Int32Array<ArrayBuffer>;
}

export function mlpCase(batch: number, inputs: number, hidden: number, classes: number): MlpCase {
  return {
    name: `MLP ${batch}×${inputs}→${hidden}→${classes}`,
    batch,
    inputs,
    hidden,
    classes,
    params: {
      w1: init([inputs, hidden], 1, 1 / Math.sqrt(inputs)),
      b1: init([hidden], 2, 0.1),
      w2: init([hidden, classes], 3, 1 / Math.sqrt(hidden)),
      b2: init([classes], 4, 0.1),
    },
    x: init([batch, inputs], 5, 1),
    labels: Int32Array.from({ length: batch }, (_, i) => (i * 7) % classes),
  };
}

export const BLOCK_KEYS = [
  "ln1g",
  "ln1b",
  "wq",
  "wk",
  "wv",
  "wo",
  "ln2g",
  "ln2b",
  "w1",
  "c1",
  "w2",
  "c2",
] as const;
export type BlockKey = (typeof BLOCK_KEYS)[number];

export interface BlockCase {
  name: string;
  batch: number;
  seq: number;
  width: number;
  heads: number;
  ff: number;
  params: Record<BlockKey, Init>;
  /** Input activations [batch·seq, width]. */
  x: Init;
  /** Regression target [batch·seq, width]. */
  target: Init;
}

/**
 * A pre-LayerNorm transformer block: x + Attn(LN(x)), then + MLP(LN(·)) with GELU (tanh form),
 * multi-head causal self-attention; loss = mean squared error against a fixed target.
 */
export function blockCase(batch: number, seq: number, width: number, heads: number): BlockCase {
  const d = width;
  const ff = 4 * width;
  return {
    name: `transformer block b${batch} s${seq} d${d} h${heads}`,
    batch,
    seq,
    width,
    heads,
    ff,
    params: {
      ln1g: init([d], 11, 0.1, 1),
      ln1b: init([d], 12, 0.1),
      wq: init([d, d], 13, 1 / Math.sqrt(d)),
      wk: init([d, d], 14, 1 / Math.sqrt(d)),
      wv: init([d, d], 15, 1 / Math.sqrt(d)),
      wo: init([d, d], 16, 1 / Math.sqrt(d)),
      ln2g: init([d], 17, 0.1, 1),
      ln2b: init([d], 18, 0.1),
      w1: init([d, ff], 19, 1 / Math.sqrt(d)),
      c1: init([ff], 20, 0.1),
      w2: init([ff, d], 21, 1 / Math.sqrt(ff)),
      c2: init([d], 22, 0.1),
    },
    x: init([batch * seq, d], 23, 1),
    target: init([batch * seq, d], 24, 1),
  };
}

/** Adam hyper-parameters (bias correction uses step t = 1 as a compile-time constant). */
export const ADAM = { lr: 1e-3, b1: 0.9, b2: 0.999, eps: 1e-8, t: 1 };
