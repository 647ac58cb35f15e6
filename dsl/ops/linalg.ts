/** Matrix products with numpy semantics. */

import { DslError } from "../errors.ts";
import { formatAval } from "../graph.ts";
import * as lax from "../lax.ts";
import { broadcastShapes } from "../shape.ts";
import type { Tensor } from "../trace.ts";
import { asTensor, broadcastTensor, resultDType, type TensorLike } from "./coerce.ts";

/**
 * numpy `matmul`: a 1-D left operand is a row and a 1-D right operand a column (the added axis is
 * removed from the result); leading batch dimensions broadcast.
 */
export function matmul(a: TensorLike, b: TensorLike): Tensor {
  const dtype = resultDType([a, b], "arith");
  const x = lax.cast(asTensor(a, "matmul"), dtype);
  const y = lax.cast(asTensor(b, "matmul"), dtype);
  const shapes = [formatAval(x), formatAval(y)];
  if (x.ndim === 0 || y.ndim === 0) {
    throw new DslError("matmul", `operands must have rank ≥ 1 (got ${shapes.join(", ")})`, shapes);
  }
  const x2 = x.ndim === 1 ? lax.reshape(x, [1, x.shape[0]]) : x;
  const y2 = y.ndim === 1 ? lax.reshape(y, [y.shape[0], 1]) : y;
  const k = x2.shape[x2.ndim - 1];
  if (k !== y2.shape[y2.ndim - 2]) {
    throw new DslError(
      "matmul",
      `contraction dimensions differ (${k} vs ${y2.shape[y2.ndim - 2]}) (got ${shapes.join(", ")})`,
      shapes,
    );
  }
  const batch = broadcastShapes(x2.shape.slice(0, -2), y2.shape.slice(0, -2));
  if (!batch) {
    throw new DslError(
      "matmul",
      `batch dimensions cannot be broadcast together (got ${shapes.join(", ")})`,
      shapes,
    );
  }
  if (y2.ndim === 2 && x2.ndim > 2) {
    // [..., M, K]·[K, N] is one [(…·M), K]·[K, N] product (as JAX's dot_general contracts): no
    // broadcast copy of the weight per batch, and its gradient is one 2-D product too.
    const lead = x2.shape.slice(0, -1);
    const flat = lax.matmul(lax.reshape(x2, [lead.reduce((p, d) => p * d, 1), k]), y2);
    return lax.reshape(flat, y.ndim > 1 ? [...lead, y2.shape[1]] : lead);
  }
  const xb = broadcastTensor(x2, [...batch, ...x2.shape.slice(-2)]);
  const yb = broadcastTensor(y2, [...batch, ...y2.shape.slice(-2)]);
  const out = lax.matmul(xb, yb);
  const outShape = [...batch];
  if (x.ndim > 1) outShape.push(x2.shape[x2.ndim - 2]);
  if (y.ndim > 1) outShape.push(y2.shape[y2.ndim - 1]);
  return lax.reshape(out, outShape);
}

/** Sum of elementwise products of two vectors (numpy `dot` for 1-D operands). */
export function dot(a: TensorLike, b: TensorLike): Tensor {
  return matmul(a, b);
}
