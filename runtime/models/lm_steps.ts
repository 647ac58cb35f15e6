/** Compiled language-model programs shared by pretraining, evaluation and the trainer. */

import type { HostArray } from "../../dsl/host_array.ts";
import type { ModelConfig } from "../../dsl/nn/config.ts";
import { type LmBatch, lmLoss } from "../../dsl/nn/transformer.ts";
import {
  type AdamOptions,
  type AdamState,
  adamUpdate,
  clipByGlobalNorm,
  globalNorm,
} from "../../dsl/optim.ts";
import { valueAndGrad } from "../../dsl/autodiff.ts";
import { mul, sum } from "../../dsl/mod.ts";
import type { Tensor } from "../../dsl/trace.ts";
import { crossEntropy } from "../../dsl/ops/nn.ts";
import { forward } from "../../dsl/nn/transformer.ts";
import { jit, type Jitted } from "../jit.ts";

type P<T> = Record<string, T>;

/**
 * One full-parameter AdamW step with global-norm clipping, compiled once; parameters and
 * optimizer state are donated (updated in place). Returns { params, state, loss, gradNorm }.
 */
export function adamTrainStep(
  cfg: ModelConfig,
  opts: AdamOptions & { clip?: number } = {},
): Jitted {
  return jit((params: P<Tensor>, state: AdamState<Tensor>, lr: Tensor, batch: LmBatch<Tensor>) => {
    const [loss, raw] = valueAndGrad((p: P<Tensor>) => lmLoss(cfg, p, batch))(params) as [
      Tensor,
      P<Tensor>,
    ];
    const { grads, norm } = opts.clip
      ? clipByGlobalNorm(raw, opts.clip)
      : { grads: raw, norm: globalNorm(raw) };
    const next = adamUpdate(params, grads, state, lr, opts);
    return { params: next.params, state: next.state, loss, gradNorm: norm };
  }, { donate: [0, 1] });
}

/** Summed next-token negative log-likelihood and the number of counted tokens of a batch. */
export function nllSum(cfg: ModelConfig): Jitted {
  return jit((params: P<Tensor>, batch: LmBatch<Tensor>) => {
    const losses = crossEntropy(forward(cfg, params, batch.ids), batch.targets, {
      reduction: "none",
    });
    return { nll: sum(mul(losses, batch.mask)), count: sum(batch.mask) };
  });
}

/** Perplexity (e^(mean NLL per token)) over batches; params may live on the device. */
export async function perplexity(
  cfg: ModelConfig,
  params: unknown,
  batches: LmBatch<HostArray>[],
  step: Jitted = nllSum(cfg),
): Promise<{ perplexity: number; nllPerToken: number; tokens: number }> {
  let nll = 0;
  let tokens = 0;
  for (const b of batches) {
    const out = await step(params, b);
    nll += out.nll.data[0];
    tokens += out.count.data[0];
  }
  const mean = nll / Math.max(1, tokens);
  return { perplexity: Math.exp(mean), nllPerToken: mean, tokens };
}
