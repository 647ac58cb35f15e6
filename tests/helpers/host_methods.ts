/**
 * Host f64 building blocks for the methods' straightforward reference implementations: row-major
 * products, Adam, batches of a linear regression, and a relative comparison.
 */

import type { HostArray } from "../../dsl/host_array.ts";
import { randomArray } from "./models.ts";

/** Row-major f64 matrix helpers. */
export const mm = (a: Float64Array, b: Float64Array, m: number, k: number, n: number) => {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let c = 0; c < k; c++) {
      for (let j = 0; j < n; j++) out[i * n + j] += a[i * k + c] * b[c * n + j];
    }
  }
  return out;
};
export const tr = (a: Float64Array, m: number, n: number) => {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) out[j * m + i] = a[i * n + j];
  return out;
};
export const f64 = (a: HostArray) => Float64Array.from(a.data);

export class Adam {
  m: Float64Array;
  v: Float64Array;
  constructor(size: number, readonly lr: number) {
    this.m = new Float64Array(size);
    this.v = new Float64Array(size);
  }
  /** The update Δ = lr·m̂/(√v̂+ε) for gradient g at step t. */
  delta(g: Float64Array, t: number): Float64Array {
    return g.map((gv, i) => {
      this.m[i] = 0.9 * this.m[i] + 0.1 * gv;
      this.v[i] = 0.999 * this.v[i] + 0.001 * gv * gv;
      return (this.lr * (this.m[i] / (1 - 0.9 ** t))) /
        (Math.sqrt(this.v[i] / (1 - 0.999 ** t)) + 1e-8);
    });
  }
}

/**
 * Asserts |got − want| ≤ rtol·max|want| elementwise. The lengths must agree, and a NaN on either
 * side fails (written as !(d ≤ tol), which NaN never satisfies).
 */
export function assertNear(got: HostArray, want: Float64Array, rtol: number, label: string) {
  if (got.data.length !== want.length) {
    throw new Error(`${label}: ${got.data.length} values ≠ expected ${want.length}`);
  }
  const scale = Math.max(...want.map(Math.abs));
  got.data.forEach((v, i) => {
    if (!(Math.abs(v - want[i]) <= rtol * scale)) {
      throw new Error(`${label} element ${i}: ${v} vs ${want[i]} (scale ${scale})`);
    }
  });
}

export const regressionBatches = (K: number, steps: number, m: number, n: number) =>
  Array.from(
    { length: steps },
    (_, s) =>
      Array.from(
        { length: K },
        (_, k) => ({
          x: randomArray([5, n], 100 + 10 * s + k),
          y: randomArray([5, m], 500 + 10 * s + k),
        }),
      ),
  );
