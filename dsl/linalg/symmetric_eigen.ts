/**
 * Eigenvalues of a real symmetric matrix in f64 (Golub & Van Loan, Matrix Computations, §8.3):
 * Householder reduction to tridiagonal form, then implicit symmetric QR steps with the Wilkinson
 * shift, deflating as off-diagonal entries become negligible. Values only: no eigenvectors are
 * accumulated. Backward stable: each eigenvalue is exact for a matrix within ≈ n·ε·‖A‖₂ of A.
 */

import { DslError } from "../errors.ts";

/**
 * Reduces the symmetric row-major n×n `a` (overwritten) to tridiagonal form with the same
 * eigenvalues: returns its diagonal d and subdiagonal e (e[i] joins rows i and i + 1).
 */
function tridiagonalize(a: Float64Array, n: number): { d: Float64Array; e: Float64Array } {
  const d = new Float64Array(n), e = new Float64Array(Math.max(n - 1, 0));
  const v = new Float64Array(n), p = new Float64Array(n);
  for (let k = 0; k < n - 2; k++) {
    // Householder vector of column k below the subdiagonal (rows k+1…n−1; symmetric, so row k).
    let norm = 0;
    for (let i = k + 1; i < n; i++) norm += a[k * n + i] * a[k * n + i];
    norm = Math.sqrt(norm);
    d[k] = a[k * n + k];
    const x0 = a[k * n + k + 1];
    if (norm === 0) continue; // column k is already reduced (e[k] = 0)
    const alpha = x0 > 0 ? -norm : norm;
    for (let i = k + 1; i < n; i++) v[i] = a[k * n + i];
    v[k + 1] -= alpha;
    const beta = 1 / (norm * (norm + Math.abs(x0))); // 2 / vᵀv
    e[k] = alpha;
    // A₂₂ ← (I − β·vvᵀ)·A₂₂·(I − β·vvᵀ) = A₂₂ − v·wᵀ − w·vᵀ, p = β·A₂₂·v, w = p − (β·pᵀv/2)·v.
    let pv = 0;
    for (let i = k + 1; i < n; i++) {
      const row = i * n;
      let s = 0;
      for (let j = k + 1; j < n; j++) s += a[row + j] * v[j];
      p[i] = beta * s;
      pv += p[i] * v[i];
    }
    const half = (beta * pv) / 2;
    for (let i = k + 1; i < n; i++) p[i] -= half * v[i];
    for (let i = k + 1; i < n; i++) {
      const row = i * n, vi = v[i], wi = p[i];
      for (let j = k + 1; j < n; j++) a[row + j] -= vi * p[j] + wi * v[j];
    }
  }
  if (n >= 2) {
    d[n - 2] = a[(n - 2) * n + n - 2];
    e[n - 2] = a[(n - 1) * n + n - 2];
  }
  if (n >= 1) d[n - 1] = a[n * n - 1];
  return { d, e };
}

/** One implicit QR step with the Wilkinson shift on the unreduced block lo…hi of (d, e). */
function qrStep(d: Float64Array, e: Float64Array, lo: number, hi: number): void {
  const half = (d[hi - 1] - d[hi]) / 2, last = e[hi - 1];
  const shift = d[hi] - (last * last) / (half + (half < 0 ? -1 : 1) * Math.hypot(half, last));
  let x = d[lo] - shift, z = e[lo];
  for (let k = lo; k < hi; k++) {
    // The rotation of rows and columns k, k+1 that zeroes z against x (the bulge, after the first).
    const r = Math.hypot(x, z);
    const c = r === 0 ? 1 : x / r, s = r === 0 ? 0 : -z / r;
    if (k > lo) e[k - 1] = r;
    const a = d[k], b = e[k], f = d[k + 1];
    d[k] = c * c * a - 2 * c * s * b + s * s * f;
    d[k + 1] = s * s * a + 2 * c * s * b + c * c * f;
    e[k] = c * s * (a - f) + (c * c - s * s) * b;
    if (k < hi - 1) {
      z = -s * e[k + 1];
      e[k + 1] = c * e[k + 1];
      x = e[k];
    }
  }
}

/**
 * Eigenvalues of the symmetric row-major n×n matrix `a` (only symmetric input is meaningful; `a`
 * is not modified), descending.
 */
export function symmetricEigenvalues(a: ArrayLike<number>, n: number): Float64Array {
  if (a.length !== n * n || n <= 0) {
    throw new DslError(
      "eigenvalues",
      `expected a non-empty ${n}×${n} matrix, got ${a.length} values`,
    );
  }
  const { d, e } = tridiagonalize(Float64Array.from(a), n);
  const eps = Number.EPSILON, tiny = 2 ** -966;
  let hi = n - 1, iterations = 0;
  while (hi > 0) {
    if (iterations++ > 30 * n) throw new DslError("eigenvalues", "QR iteration did not converge");
    // The unreduced block lo…hi: e[lo−1] negligible (or lo = 0), no e after it.
    let lo = hi;
    while (lo > 0 && Math.abs(e[lo - 1]) > tiny + eps * (Math.abs(d[lo - 1]) + Math.abs(d[lo]))) {
      lo--;
    }
    if (lo > 0) e[lo - 1] = 0;
    if (lo === hi) {
      hi--;
      continue;
    }
    qrStep(d, e, lo, hi);
  }
  return d.sort().reverse();
}
