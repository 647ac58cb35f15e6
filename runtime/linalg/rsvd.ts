/**
 * Randomised truncated SVD (Halko, Martinsson & Tropp 2011, Alg. 4.4: randomised subspace
 * iteration). The heavy products with W (m×n) run as compiled DSL programs on the device; the thin
 * orthonormalisations (m×l, l = k + oversampling, rounded up to a multiple of 4) and the small
 * l×n SVD run on the host in f64.
 * The Gaussian sketch comes from the counter-based PRNG, so a seed fixes the result.
 */

import type { HostArray } from "../../dsl/host_array.ts";
import { type Svd, svd } from "../../dsl/linalg/svd.ts";
import { matmul, transpose } from "../../dsl/mod.ts";
import { normal, prngKey } from "../../dsl/random.ts";
import type { Tensor } from "../../dsl/trace.ts";
import type { Device } from "../device.ts";
import type { DeviceArray } from "../device_array.ts";
import { jit, toDevice } from "../jit.ts";

export interface RandomizedSvdOptions {
  /** Power (subspace) iterations; PEFT's pissa_niter_N uses 4–16. Default 4. */
  niter?: number;
  /** Extra sketch columns beyond k (default 10; k + oversample is rounded up to a multiple of 4). */
  oversample?: number;
  seed?: number;
  device?: Device;
}

const times = jit((w: Tensor, q: Tensor) => matmul(w, q)); // W·Q
const timesT = jit((w: Tensor, q: Tensor) => matmul(transpose(w), q)); // Wᵀ·Q
const project = jit((q: Tensor, w: Tensor) => matmul(transpose(q), w)); // Qᵀ·W
const sketches = new Map<string, ReturnType<typeof jit>>();
/** Gaussian [n, l] sketch from `key` (one compiled program per shape). */
function sketch(n: number, l: number) {
  const id = `${n}x${l}`;
  if (!sketches.has(id)) sketches.set(id, jit((key: Tensor) => normal(key, [n, l])));
  return sketches.get(id)!;
}

/**
 * Sketch columns of a randomised SVD of an m×n matrix for k triplets: k + oversample rounded up to
 * a multiple of 4, at most min(m, n). Whole vec4 columns let W·Q and Wᵀ·Q run as vec4 matmul
 * kernels (26 columns fell to the scalar kernel, several times slower); the extra columns only
 * oversample more.
 */
export function sketchWidth(k: number, oversample: number, m: number, n: number): number {
  return Math.min(Math.ceil((k + oversample) / 4) * 4, Math.min(m, n));
}

/** Orthonormal basis of the columns of a row-major [rows, cols] matrix (Gram–Schmidt, twice). */
function orthonormalize(x: Float32Array | Float64Array, rows: number, cols: number): Float64Array {
  const q = Float64Array.from(x);
  for (let c = 0; c < cols; c++) {
    for (let pass = 0; pass < 2; pass++) {
      for (let d = 0; d < c; d++) {
        let dot = 0;
        for (let i = 0; i < rows; i++) dot += q[i * cols + d] * q[i * cols + c];
        for (let i = 0; i < rows; i++) q[i * cols + c] -= dot * q[i * cols + d];
      }
    }
    let norm = 0;
    for (let i = 0; i < rows; i++) norm += q[i * cols + c] ** 2;
    norm = Math.sqrt(norm);
    // A column in the span of the previous ones (rank-deficient W): leave it zero.
    for (let i = 0; i < rows; i++) q[i * cols + c] = norm > 1e-30 ? q[i * cols + c] / norm : 0;
  }
  return q;
}

const host = (shape: number[], data: Float64Array): HostArray => ({
  shape,
  dtype: "f32",
  data: Float32Array.from(data),
});

/** Top-`k` singular triplets of `w` [m, n]. */
export async function randomizedSvd(
  w: HostArray,
  k: number,
  opts: RandomizedSvdOptions = {},
): Promise<Svd> {
  const [m, n] = w.shape;
  if (w.shape.length !== 2 || !Number.isInteger(k) || k < 1 || k > Math.min(m, n)) {
    throw new Error(
      `randomizedSvd: need a 2-D matrix and 1 ≤ k ≤ min(m, n) (got [${w.shape}], k = ${k})`,
    );
  }
  const l = sketchWidth(k, opts.oversample ?? 10, m, n);
  const wd = await toDevice(w, opts.device) as DeviceArray;
  const omega = await sketch(n, l)(prngKey(opts.seed ?? 0)) as HostArray;
  let q = orthonormalize((await times(wd, omega) as HostArray).data as Float32Array, m, l);
  for (let i = 0; i < (opts.niter ?? 4); i++) {
    const z = orthonormalize(
      (await timesT(wd, host([m, l], q)) as HostArray).data as Float32Array,
      n,
      l,
    );
    q = orthonormalize((await times(wd, host([n, l], z)) as HostArray).data as Float32Array, m, l);
  }
  const small = (await project(host([m, l], q), wd) as HostArray).data; // Qᵀ·W [l, n]
  const f = svd(small, l, n); // f.k = l
  // U = Q·Ũ, keeping the top k.
  const u = new Float64Array(m * k);
  for (let i = 0; i < m; i++) {
    for (let c = 0; c < k; c++) {
      let s = 0;
      for (let j = 0; j < l; j++) s += q[i * l + j] * f.u[j * f.k + c];
      u[i * k + c] = s;
    }
  }
  const v = new Float64Array(n * k);
  for (let i = 0; i < n; i++) for (let c = 0; c < k; c++) v[i * k + c] = f.v[i * f.k + c];
  wd.destroy();
  return { m, n, k, u, s: f.s.slice(0, k), v };
}
