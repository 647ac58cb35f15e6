/** Neural-network building blocks written from primitives (no primitive of their own). */

import { customVjp } from "../custom_vjp.ts";
import { isFloat } from "../dtype.ts";
import { DslError } from "../errors.ts";
import { formatAval } from "../graph.ts";
import * as lax from "../lax.ts";
import { shapesEqual } from "../shape.ts";
import type { Tensor } from "../trace.ts";
import { asTensor, computeInF32, normalizeOneAxis, type TensorLike } from "./coerce.ts";
import { add, div, mul, rsqrt, square, sub } from "./elementwise.ts";
import { logsumexp, max, mean, sum } from "./reduce.ts";
import { oneHot } from "./shape.ts";

/** exp(x) / Σ exp(x) along `axis`, computed with the maximum subtracted. */
export function softmax(x: TensorLike, axis = -1): Tensor {
  const [t, back] = computeInF32(x, "softmax");
  const a = normalizeOneAxis("softmax", t, axis);
  const keepDims = { keepDims: true };
  // The gradient needs only the result: dx = y·(g − Σ g·y).
  return back(
    customVjp(
      (u) => {
        const e = lax.exp(sub(u, lax.stopGradient(max(u, a, keepDims))));
        return div(e, sum(e, a, keepDims));
      },
      (g, _, y) => [mul(y, sub(g, sum(mul(g, y), a, keepDims)))],
    )(t),
  );
}

/** x − logsumexp(x) along `axis`. */
export function logSoftmax(x: TensorLike, axis = -1): Tensor {
  const [t, back] = computeInF32(x, "logSoftmax");
  const a = normalizeOneAxis("logSoftmax", t, axis);
  return back(sub(t, logsumexp(t, a, { keepDims: true })));
}

/** Options of `crossEntropy`. */
export interface CrossEntropyOptions {
  /** Weights per position (bool or 0/1): the loss is Σ mask·ℓ / max(Σ mask, 1). */
  mask?: TensorLike;
  /** "mean" (default), "sum", or "none" for the per-position losses. */
  reduction?: "mean" | "sum" | "none";
}

/**
 * Softmax cross-entropy over the last axis of `logits`. `labels` are class indices (i32, shape =
 * logits' shape without the last axis) or probabilities (f32, same shape as logits).
 */
export function crossEntropy(
  logits: TensorLike,
  labels: TensorLike,
  opts: CrossEntropyOptions = {},
): Tensor {
  const [z, back] = computeInF32(logits, "crossEntropy");
  const y = asTensor(labels, "crossEntropy");
  const shapes = [formatAval(z), formatAval(y)];
  if (z.ndim === 0) throw new DslError("crossEntropy", "logits must have a class axis", shapes);
  const positions = z.shape.slice(0, -1);
  let target: Tensor;
  if (y.dtype === "i32" && shapesEqual(y.shape, positions)) {
    target = oneHot(y, z.shape[z.ndim - 1]);
  } else if (isFloat(y.dtype) && shapesEqual(y.shape, z.shape)) {
    target = lax.cast(y, "f32");
  } else {
    throw new DslError(
      "crossEntropy",
      `labels must be i32 class indices of shape [${positions}] or f32/f16 probabilities of the ` +
        `logits' shape (got ${shapes.join(", ")})`,
      shapes,
    );
  }
  const perPosition = sum(mul(target, sub(logsumexp(z, -1, { keepDims: true }), z)), -1);
  const reduction = opts.reduction ?? "mean";
  if (opts.mask === undefined) {
    if (reduction === "none") return back(perPosition);
    return back(reduction === "sum" ? sum(perPosition) : mean(perPosition));
  }
  const m = lax.cast(asTensor(opts.mask, "crossEntropy"), "f32");
  if (!shapesEqual(m.shape, positions)) {
    throw new DslError(
      "crossEntropy",
      `mask must have shape [${positions}] (got ${formatAval(m)})`,
      [...shapes, formatAval(m)],
    );
  }
  const weighted = mul(perPosition, m);
  if (reduction === "none") return back(weighted);
  if (reduction === "sum") return back(sum(weighted));
  return back(div(sum(weighted), lax.maximum(sum(m), lax.scalar(1))));
}

/** Layer normalisation over the last axis: (x − μ)/√(σ² + eps)·γ + β. */
export function layerNorm(
  x: TensorLike,
  gamma?: TensorLike | null,
  beta?: TensorLike | null,
  eps = 1e-5,
): Tensor {
  const [t, back] = computeInF32(x, "layerNorm");
  const keepDims = { keepDims: true };
  const normalized = (u: Tensor) => {
    const centered = sub(u, mean(u, -1, keepDims));
    return mul(centered, rsqrt(add(mean(square(centered), -1, keepDims), eps)));
  };
  // The gradient keeps only x (the row statistics are recomputed in the gradient's kernel):
  // dx = r·(h − mean(h) − x̂·mean(h·x̂)), with x̂ the normalised row and r = 1/√(σ² + eps).
  let y = back(
    customVjp(normalized, (h, [x]) => {
      const u = lax.recomputeBarrier(x); // the forward's statistics stay in its own kernel
      const centered = sub(u, mean(u, -1, keepDims));
      const r = rsqrt(add(mean(square(centered), -1, keepDims), eps));
      const xHat = mul(centered, r);
      const inner = sub(sub(h, mean(h, -1, keepDims)), mul(xHat, mean(mul(h, xHat), -1, keepDims)));
      return [mul(r, inner)];
    })(t),
  );
  if (gamma !== undefined && gamma !== null) y = mul(y, gamma);
  if (beta !== undefined && beta !== null) y = add(y, beta);
  return y;
}

/** Root-mean-square normalisation over the last axis: x/√(mean(x²) + eps)·γ (Llama). */
export function rmsNorm(x: TensorLike, gamma?: TensorLike | null, eps = 1e-6): Tensor {
  const [t, back] = computeInF32(x, "rmsNorm");
  const keepDims = { keepDims: true };
  const reciprocalRms = (u: Tensor) => rsqrt(add(mean(square(u), -1, keepDims), eps));
  // The gradient keeps only x: dx = r·(h − x·r²·mean(h·x)), r = 1/√(mean(x²) + eps).
  const y = back(
    customVjp((u) => mul(u, reciprocalRms(u)), (h, [x]) => {
      const u = lax.recomputeBarrier(x); // the forward's statistic stays in its own kernel
      const r = reciprocalRms(u);
      return [mul(r, sub(h, mul(u, mul(square(r), mean(mul(h, u), -1, keepDims)))))];
    })(t),
  );
  return gamma === undefined || gamma === null ? y : mul(y, gamma);
}
