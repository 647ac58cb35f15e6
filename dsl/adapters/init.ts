/**
 * Adapter initialisation of the built-in methods, exactly as ../shared/docs/hdpissa-spec.md states
 * (PEFT naming: B [m, r] up, A [r, n] down, product B·A; W [m, n] used as x·Wᵀ).
 */

import { DslError } from "../errors.ts";
import { type HostArray, transposed } from "../host_array.ts";
import { interpret } from "../interpret.ts";
import { type Svd, svdOf } from "../linalg/svd.ts";
import { kaimingUniform, prngKey } from "../random.ts";

const f32 = (shape: number[], data: Float64Array | Float32Array): HostArray => ({
  shape,
  dtype: "f32",
  data: Float32Array.from(data),
});

function checkMatrix(op: string, w: HostArray): [number, number] {
  if (w.shape.length !== 2 || w.dtype !== "f32") {
    throw new DslError(op, `adapted weights must be 2-D f32 matrices, got ${w.dtype}[${w.shape}]`);
  }
  return [w.shape[0], w.shape[1]];
}

/** √σ-scaled factors of components [from, from + r): A [r, n], B [m, r]; slots past k are zero. */
function scaledFactors(
  f: Svd,
  from: number,
  r: number,
  scale = 1,
): { a: Float64Array; b: Float64Array } {
  const a = new Float64Array(r * f.n);
  const b = new Float64Array(f.m * r);
  for (let c = 0; c < r; c++) {
    const j = from + c;
    if (j >= f.k) break; // zero padding past min(m, n)
    const root = Math.sqrt(f.s[j] / scale);
    for (let i = 0; i < f.n; i++) a[c * f.n + i] = root * f.v[i * f.k + j];
    for (let i = 0; i < f.m; i++) b[i * r + c] = root * f.u[i * f.k + j];
  }
  return { a, b };
}

/** PiSSA's initial adapter factors and the residual weight they leave. */
export interface PissaInit {
  /** A [r, n]: the top-r right singular vectors scaled by √(σ/s). */
  a: HostArray;
  /** B [m, r]: the top-r left singular vectors scaled by √(σ/s). */
  b: HostArray;
  /** W − s·B·A, computed by subtraction from the stored (f32) factors. */
  residual: HostArray;
  /** The adapter scale s = α/r. */
  scale: number;
}

/** PiSSA: A = diag(√(Σ_r/s))·V_rᵀ, B = U_r·diag(√(Σ_r/s)), W_res = W − s·B·A, s = α/r. */
export function pissaInit(
  w: HostArray,
  rank: number,
  alpha = rank,
  svd?: Svd,
): PissaInit {
  return componentInit("pissaInit", w, rank, alpha / rank, svd ?? svdOf(w), 0);
}

/**
 * MiLoRA: PiSSA's construction on the r *minor* singular components (the smallest), so the
 * residual keeps the principal ones: A = diag(√(Σ_min/s))·V_minᵀ, B = U_min·diag(√(Σ_min/s)).
 * `svd` must hold every component (an exact SVD).
 */
export function miloraInit(w: HostArray, rank: number, scale: number, svd: Svd): PissaInit {
  return componentInit("miloraInit", w, rank, scale, svd, Math.max(0, svd.k - rank));
}

/** Factors of components [from, from + r) scaled by √(σ/s), and the residual W − s·B·A. */
function componentInit(
  op: string,
  w: HostArray,
  rank: number,
  scale: number,
  factors: Svd,
  from: number,
): PissaInit {
  const [m, n] = checkMatrix(op, w);
  checkRank(op, rank, Math.min(m, n));
  if (!(scale > 0) || !Number.isFinite(scale)) {
    throw new DslError(
      op,
      `alpha must be > 0 (got scale ${scale}; s = alpha/rank scales the adapter)`,
    );
  }
  const { a, b } = scaledFactors(factors, from, rank, scale);
  const a32 = Float32Array.from(a), b32 = Float32Array.from(b);
  const residual = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let ba = 0;
      for (let c = 0; c < rank; c++) ba += b32[i * rank + c] * a32[c * n + j];
      residual[i * n + j] = w.data[i * n + j] - scale * ba;
    }
  }
  return { a: f32([rank, n], a32), b: f32([m, rank], b32), residual: f32([m, n], residual), scale };
}

/** HD-PiSSA's initial factors: every device's slices of one SVD, concatenated. */
export interface HdPissaInit {
  /** All devices' slices stacked: A_cat [K·r, n] (device j owns rows [j·r, (j+1)·r)). */
  aCat: HostArray;
  /** B_cat [m, K·r] (device j owns columns [j·r, (j+1)·r)). */
  bCat: HostArray;
  /** Components that exist (min(m, n, K·r)); the rest are zero padding and stay zero. */
  active: number;
}

/**
 * HD-PiSSA: device j gets A_j = diag(√Σ[I_j])·V[:, I_j]ᵀ and B_j = U[:, I_j]·diag(√Σ[I_j]) for
 * I_j = [j·r, (j+1)·r), from one shared SVD, zero-padded past min(m, n); no α scaling, no residual.
 */
export function hdpissaInit(
  w: HostArray,
  rank: number,
  devices: number,
  svd?: Svd,
  /** First component of device 0's slice (HD-MiLoRA starts at the minor ones). */
  from = 0,
): HdPissaInit {
  const [m, n] = checkMatrix("hdpissaInit", w);
  checkRank("hdpissaInit", rank, Math.min(m, n));
  if (!Number.isInteger(devices) || devices < 1) {
    throw new DslError("hdpissaInit", `devices must be a positive integer (got ${devices})`);
  }
  const width = devices * rank;
  const factors = svd ?? svdOf(w);
  const { a, b } = scaledFactors(factors, from, width);
  return {
    aCat: f32([width, n], a),
    bCat: f32([m, width], b),
    active: Math.max(0, Math.min(width, factors.k - from)),
  };
}

function checkRank(op: string, rank: number, d: number): void {
  if (!Number.isInteger(rank) || rank <= 0) {
    throw new DslError(op, `rank must be a positive integer (got ${rank})`);
  }
  if (rank > d) throw new DslError(op, `rank ${rank} exceeds min(m, n) = ${d}`);
}

/** Rows [j·r, (j+1)·r) of A_cat / columns of B_cat: device j's slice. */
export function deviceSlice(
  init: HdPissaInit,
  j: number,
  rank: number,
): { a: HostArray; b: HostArray } {
  const [width, n] = init.aCat.shape;
  const m = init.bCat.shape[0];
  if (j < 0 || (j + 1) * rank > width) {
    throw new DslError("deviceSlice", `device ${j} has no slice`);
  }
  const a = init.aCat.data.slice(j * rank * n, (j + 1) * rank * n);
  const b = new Float32Array(m * rank);
  for (let i = 0; i < m; i++) {
    for (let c = 0; c < rank; c++) b[i * rank + c] = init.bCat.data[i * width + j * rank + c];
  }
  return { a: f32([rank, n], a as Float32Array), b: f32([m, rank], b) };
}

/**
 * LoRA: A ~ Kaiming-uniform U(±1/√n) from the counter-based PRNG, B = 0 (so B·A = 0 at init).
 * With `fanInFanOut` W is stored [in, out] (GPT-2's Conv1D): the random factor goes on the input
 * side as PEFT puts it, B = lora_Aᵀ [in, r] ~ U(±1/√in) and A = lora_Bᵀ = 0.
 */
export function loraInit(
  w: HostArray,
  rank: number,
  seed: number,
  fanInFanOut = false,
): { a: HostArray; b: HostArray } {
  const [m, n] = checkMatrix("loraInit", w);
  checkRank("loraInit", rank, Math.min(m, n));
  if (fanInFanOut) {
    const loraA = interpret(() => kaimingUniform(prngKey(seed), [rank, m], m)) as HostArray;
    return { a: f32([rank, n], new Float32Array(rank * n)), b: transposed(loraA) };
  }
  const a = interpret(() => kaimingUniform(prngKey(seed), [rank, n], n)) as HostArray;
  return { a, b: f32([m, rank], new Float32Array(m * rank)) };
}
