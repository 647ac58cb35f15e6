/**
 * Exact SVD on the host in f64. By default Golub–Kahan (bidiagonal_svd.ts): O(mn²), a 512² matrix
 * in about a second. On request one-sided Jacobi (Hestenes 1958; Demmel & Veselić 1992 show it is
 * accurate to high relative precision): columns of the working matrix are rotated pairwise until
 * they are mutually orthogonal, their norms being the singular values; it is the oracle of the
 * tests. Used for PiSSA/HD-PiSSA initialisation and inside the randomised SVD.
 */

import { DslError } from "../errors.ts";
import type { HostArray } from "../host_array.ts";
import { type ColumnMajorSvd, golubKahanSvd } from "./bidiagonal_svd.ts";

/** W = U·diag(S)·Vᵀ with U [m, k], S [k] descending, V [n, k], k = min(m, n); row-major f64. */
export interface Svd {
  /** Rows of W. */
  m: number;
  /** Columns of W. */
  n: number;
  /** Number of singular values, min(m, n). */
  k: number;
  /** Left singular vectors, [m, k] row-major. */
  u: Float64Array;
  /** Singular values [k], descending. */
  s: Float64Array;
  /** Right singular vectors, [n, k] row-major. */
  v: Float64Array;
}

/** Options of `svd`. */
export interface SvdOptions {
  /**
   * "golub-kahan" (default): Householder bidiagonalisation and implicit QR, O(mn²) and fast;
   * "jacobi": one-sided Jacobi, slower but accurate to high relative precision in tiny singular
   * values (the oracle the tests compare with).
   */
  method?: "golub-kahan" | "jacobi";
  /** Most Jacobi sweeps (default 60). */
  maxSweeps?: number;
}

/** SVD of the row-major matrix `a` [m, n]. */
export function svd(
  a: ArrayLike<number>,
  m: number,
  n: number,
  opts: SvdOptions = {},
): Svd {
  if (a.length !== m * n || m <= 0 || n <= 0) {
    throw new DslError("svd", `expected a non-empty ${m}×${n} matrix, got ${a.length} values`);
  }
  if (m < n) {
    // SVD of Aᵀ, with the roles of U and V exchanged.
    const t = new Float64Array(m * n);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) t[j * m + i] = a[i * n + j];
    const r = svd(t, n, m, opts);
    return { m, n, k: r.k, u: r.v, s: r.s, v: r.u };
  }
  const w = tallColumnMajor(a, m, n);
  if (opts.method !== "jacobi") return rowMajor(golubKahanSvd(w, m, n), m, n);
  const v = new Float64Array(n * n);
  for (let j = 0; j < n; j++) v[j * n + j] = 1;
  const maxSweeps = opts.maxSweeps ?? 60;
  const eps = 1e-15;
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let rotated = false;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        let alpha = 0, beta = 0, gamma = 0;
        const P = p * m, Q = q * m;
        for (let i = 0; i < m; i++) {
          const x = w[P + i], y = w[Q + i];
          alpha += x * x;
          beta += y * y;
          gamma += x * y;
        }
        if (gamma === 0 || Math.abs(gamma) <= eps * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (let i = 0; i < m; i++) {
          const x = w[P + i], y = w[Q + i];
          w[P + i] = c * x - s * y;
          w[Q + i] = s * x + c * y;
        }
        for (let i = 0; i < n; i++) {
          const x = v[i * n + p], y = v[i * n + q];
          v[i * n + p] = c * x - s * y;
          v[i * n + q] = s * x + c * y;
        }
      }
    }
    if (!rotated) break;
  }
  const norms = Array.from({ length: n }, (_, j) => {
    let s = 0;
    for (let i = 0; i < m; i++) s += w[j * m + i] ** 2;
    return Math.sqrt(s);
  });
  const order = norms.map((_, j) => j).sort((x, y) => norms[y] - norms[x]);
  const k = n;
  const u = new Float64Array(m * k);
  const s = new Float64Array(k);
  const vs = new Float64Array(n * k);
  const tiny = (norms[order[0]] || 1) * m * Number.EPSILON;
  order.forEach((j, c) => {
    s[c] = norms[j];
    for (let i = 0; i < n; i++) vs[i * k + c] = v[i * n + j];
    if (norms[j] > tiny) { for (let i = 0; i < m; i++) u[i * k + c] = w[j * m + i] / norms[j]; }
  });
  completeColumns(u, m, k, (c) => s[c] > tiny);
  return { m, n, k, u, s, v: vs };
}

/** The row-major `Svd` of a column-major thin SVD (m ≥ n). */
function rowMajor(f: ColumnMajorSvd, m: number, n: number): Svd {
  const u = new Float64Array(m * n), v = new Float64Array(n * n);
  for (let c = 0; c < n; c++) {
    for (let i = 0; i < m; i++) u[i * n + c] = f.u[c * m + i];
    for (let i = 0; i < n; i++) v[i * n + c] = f.v[c * n + i];
  }
  return { m, n, k: n, u, s: f.s, v };
}

/**
 * Gives the columns `keep(c)` rejects unit vectors orthogonal to all others (Gram–Schmidt on
 * standard basis vectors): a rank-deficient matrix still gets an orthonormal U.
 */
function completeColumns(
  u: Float64Array,
  m: number,
  k: number,
  keep: (c: number) => boolean,
): void {
  let candidate = 0;
  for (let c = 0; c < k; c++) {
    if (keep(c)) continue;
    for (; candidate < m; candidate++) {
      const x = new Float64Array(m);
      x[candidate] = 1;
      for (let pass = 0; pass < 2; pass++) {
        for (let d = 0; d < k; d++) {
          if (d === c || (!keep(d) && d > c)) continue;
          let dot = 0;
          for (let i = 0; i < m; i++) dot += u[i * k + d] * x[i];
          for (let i = 0; i < m; i++) x[i] -= dot * u[i * k + d];
        }
      }
      const norm = Math.sqrt(x.reduce((a, b) => a + b * b, 0));
      if (norm > 1e-6) {
        for (let i = 0; i < m; i++) u[i * k + c] = x[i] / norm;
        candidate++;
        break;
      }
    }
  }
}

/**
 * The singular values of a 2-D HostArray, descending (Golub–Kahan without the singular vectors:
 * what rank measures need, several times faster than `svdOf` for a tall matrix).
 */
export function singularValues(w: HostArray): Float64Array {
  if (w.shape.length !== 2) {
    throw new DslError("svd", `expected a 2-D matrix, got shape [${w.shape}]`, [`[${w.shape}]`]);
  }
  const [rows, cols] = w.shape;
  if (w.data.length !== rows * cols || rows <= 0 || cols <= 0) {
    throw new DslError("svd", `expected a non-empty ${rows}×${cols} matrix`);
  }
  // A, or Aᵀ (same singular values) when A is wide: Golub–Kahan takes m ≥ n.
  const [m, n] = rows >= cols ? [rows, cols] : [cols, rows];
  return golubKahanSvd(tallColumnMajor(w.data, rows, cols), m, n, false).s;
}

/**
 * The row-major rows×cols matrix `a` in f64, column-major and tall: A itself when rows ≥ cols,
 * else Aᵀ (so column j of the result is w[j·m … j·m+m), m = max(rows, cols)). Non-finite entries
 * are rejected.
 */
function tallColumnMajor(a: ArrayLike<number>, rows: number, cols: number): Float64Array {
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i])) throw new DslError("svd", `matrix has a non-finite entry at ${i}`);
  }
  const m = Math.max(rows, cols);
  const w = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) w[rows >= cols ? j * m + i : i * m + j] = a[i * cols + j];
  }
  return w;
}

/** SVD of a 2-D HostArray. */
export function svdOf(w: HostArray): Svd {
  if (w.shape.length !== 2) {
    throw new DslError("svd", `expected a 2-D matrix, got shape [${w.shape}]`, [`[${w.shape}]`]);
  }
  return svd(w.data, w.shape[0], w.shape[1]);
}

/** ‖W − U·diag(S)·Vᵀ‖_F / ‖W‖_F using the first `rank` components (default all). */
export function reconstructionError(a: ArrayLike<number>, f: Svd, rank = f.k): number {
  let num = 0, den = 0;
  for (let i = 0; i < f.m; i++) {
    for (let j = 0; j < f.n; j++) {
      let x = 0;
      for (let c = 0; c < rank; c++) x += f.u[i * f.k + c] * f.s[c] * f.v[j * f.k + c];
      num += (a[i * f.n + j] - x) ** 2;
      den += a[i * f.n + j] ** 2;
    }
  }
  return Math.sqrt(num / (den || 1));
}

/** max |XᵀX − I| over the first `cols` columns of a row-major [rows, k] matrix. */
export function orthogonalityError(x: Float64Array, rows: number, k: number, cols = k): number {
  let worst = 0;
  for (let a = 0; a < cols; a++) {
    for (let b = a; b < cols; b++) {
      let dot = 0;
      for (let i = 0; i < rows; i++) dot += x[i * k + a] * x[i * k + b];
      worst = Math.max(worst, Math.abs(dot - (a === b ? 1 : 0)));
    }
  }
  return worst;
}
