/**
 * Batched matrix product [...B, M, K] × [...B, K, N] → [...B, M, N] with identical batch dims.
 * numpy's 1-D promotion and batch broadcasting live in the `matmul` op; transposed operands are
 * `transpose` views that the compiler folds into the kernel's indexing.
 */

import * as lax from "../lax.ts";
import { isFloat } from "../dtype.ts";
import { definePrimitive, fail, requireDTypes } from "../primitive.ts";
import { alloc, rounder } from "../reference.ts";
import { shapesEqual, sizeOf } from "../shape.ts";
import type { Tensor } from "../trace.ts";

/** Swaps the last two axes. */
export function transposeLast2(x: Tensor): Tensor {
  const perm = x.shape.map((_, i) => i);
  const r = perm.length;
  [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
  return lax.transpose(x, perm);
}

definePrimitive({
  name: "matmul",
  abstractEval(inputs) {
    const [a, b] = inputs;
    requireDTypes("matmul", inputs, ["f32", "f16", "i32"]);
    if (a.dtype !== b.dtype) fail("matmul", "operands must have the same dtype", inputs);
    if (a.shape.length < 2 || a.shape.length !== b.shape.length) {
      fail("matmul", "operands must have the same rank ≥ 2", inputs);
    }
    const r = a.shape.length;
    if (!shapesEqual(a.shape.slice(0, r - 2), b.shape.slice(0, r - 2))) {
      fail("matmul", "batch dimensions differ", inputs);
    }
    if (a.shape[r - 1] !== b.shape[r - 2]) {
      fail(
        "matmul",
        `contraction dimensions differ (${a.shape[r - 1]} vs ${b.shape[r - 2]})`,
        inputs,
      );
    }
    return { shape: [...a.shape.slice(0, r - 1), b.shape[r - 1]], dtype: a.dtype };
  },
  vjp(g, { inputs: [a, b], needs }) {
    return [
      needs[0] ? lax.matmul(g, transposeLast2(b)) : null,
      needs[1] ? lax.matmul(transposeLast2(a), g) : null,
    ];
  },
  evaluate([a, b], _p, ctx) {
    const r = a.shape.length;
    const [m, k, n] = [a.shape[r - 2], a.shape[r - 1], b.shape[r - 1]];
    const batch = sizeOf(a.shape.slice(0, r - 2));
    const out = alloc([...a.shape.slice(0, r - 1), n], a.dtype, ctx);
    const round = rounder(a.dtype, ctx);
    const isInt = !isFloat(a.dtype);
    const [A, B, C] = [a.data, b.data, out.data];
    for (let p = 0; p < batch; p++) {
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let acc = 0;
          for (let q = 0; q < k; q++) {
            const x = A[p * m * k + i * k + q], y = B[p * k * n + q * n + j];
            // One rounding per step: the product is exact in f64, as in a fused multiply-add.
            acc = round(acc + (isInt ? Math.imul(x, y) : x * y));
          }
          C[p * m * n + i * n + j] = acc;
        }
      }
    }
    return out;
  },
  wgsl: { kind: "matmul" },
});
