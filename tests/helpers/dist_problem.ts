/**
 * One deterministic fine-tuning problem for the distributed-runtime tests: a tiny Llama whose
 * attention and MLP projections are adapted, K shards of token batches per step. The MPI worker
 * and the in-process tests build it from the same numbers, so every mode sees the same data.
 */

import type { HostArray } from "../../dsl/host_array.ts";
import { initParams, lmLoss } from "../../dsl/nn/transformer.ts";
import type { Tensor } from "../../dsl/trace.ts";
import type { Method, TrainerConfig } from "../../runtime/trainer.ts";
import { randomArray } from "./models.ts";
import { TINY_LLAMA } from "./tiny_models.ts";

export interface DistProblem {
  method: Method;
  devices: number;
  rank: number;
  steps: number;
}

const ids = (shape: number[], seed: number): HostArray => ({
  shape,
  dtype: "i32",
  data: Int32Array.from(randomArray(shape, seed).data, (v) => Math.floor((v + 1) * 8)),
});

/** The trainer configuration (without the mode) and every step's K shard batches. */
export function distProblem(p: DistProblem): {
  config: TrainerConfig;
  batches: Record<string, HostArray>[][];
} {
  const cfg = TINY_LLAMA;
  const params = initParams(cfg, 7);
  const adapt = Object.keys(params).filter((n) =>
    /layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$/.test(n)
  );
  const batches = Array.from(
    { length: p.steps },
    (_, s) =>
      Array.from({ length: p.devices }, (_, k) => ({
        ids: ids([2, 6], 1000 * s + 10 * k),
        targets: ids([2, 6], 1000 * s + 10 * k + 5),
        mask: { shape: [2, 6], dtype: "f32" as const, data: new Float32Array(12).fill(1) },
      })),
  );
  return {
    config: {
      loss: (q: Record<string, Tensor>, b: { ids: Tensor; targets: Tensor; mask: Tensor }) =>
        lmLoss(cfg, q, b),
      params,
      adapt,
      method: p.method,
      devices: p.devices,
      rank: p.rank,
      optimizer: { lr: 0.01 },
      seed: 3,
    },
    batches,
  };
}

/** Largest |a[i] − b[i]|: NaN if any difference is NaN; arrays of different lengths throw. */
export function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`maxDiff: ${a.length} values against ${b.length}`);
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i] - b[i]);
    d = Number.isNaN(e) ? NaN : Math.max(d, e);
  }
  return d;
}
