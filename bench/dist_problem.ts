/** The distributed benchmark's problem: a small Llama, every projection adapted, K shards. */

import type { HostArray } from "../dsl/host_array.ts";
import type { ModelConfig } from "../dsl/nn/config.ts";
import { initParams, lmLoss } from "../dsl/nn/transformer.ts";
import type { Tensor } from "../dsl/trace.ts";
import type { Method, TrainerConfig } from "../runtime/trainer.ts";

export interface BenchProblem {
  method: Method;
  devices: number;
  rank: number;
}

export const BENCH_MODEL: ModelConfig = {
  family: "llama",
  vocab: 64,
  width: 64,
  layers: 2,
  heads: 4,
  kvHeads: 4,
  ffn: 128,
  context: 64,
  normEps: 1e-5,
  ropeTheta: 10000,
  tieEmbeddings: false,
  bos: 61,
  eos: 62,
  pad: 63,
};

const BATCH = 2, SEQ = 32;

function tokens(seed: number): HostArray {
  const data = new Int32Array(BATCH * SEQ);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s % 60;
  }
  return { shape: [BATCH, SEQ], dtype: "i32", data };
}

export function benchProblem(p: BenchProblem): {
  config: TrainerConfig;
  batches: Record<string, HostArray>[][];
} {
  const params = initParams(BENCH_MODEL, 5);
  const adapt = Object.keys(params).filter((n) => /_proj\.weight$/.test(n));
  const batches = Array.from({ length: 4 }, (_, s) =>
    Array.from({ length: p.devices }, (_, k) => ({
      ids: tokens(100 * s + k),
      targets: tokens(100 * s + k + 50),
      mask: {
        shape: [BATCH, SEQ],
        dtype: "f32" as const,
        data: new Float32Array(BATCH * SEQ).fill(1),
      },
    })));
  return {
    config: {
      loss: (q: Record<string, Tensor>, b: { ids: Tensor; targets: Tensor; mask: Tensor }) =>
        lmLoss(BENCH_MODEL, q, b),
      params,
      adapt,
      method: p.method,
      devices: p.devices,
      rank: p.rank,
      optimizer: { lr: 1e-3 },
    },
    batches,
  };
}
