/**
 * Shared pieces of the compiled-vs-reference tests: an async fast-check runner with the suite's
 * seed, pytree comparison (bit-exact or with a tolerance), random inputs with IEEE edge values,
 * and `expectJitMatches`, which runs a function through `jit` and through `interpret` and compares
 * every output leaf (shape, dtype, values). It also records which primitives the traced programs
 * contained, so a test file can assert it covered all of them.
 */

import {
  flattenTree,
  type HostArray,
  interpret,
  isHostArray,
  jit,
  type JitOptions,
  toNested,
  trace,
} from "../../mod.ts";
import { arbNumber } from "../helpers/arrays.ts";
import { fc, SEED } from "../helpers/property.ts";

export { fc, SEED };

function envNumber(name: string): number | undefined {
  try {
    const v = Deno.env.get(name);
    return v === undefined ? undefined : Number(v);
  } catch {
    return undefined;
  }
}

const RUN_SCALE = envNumber("FC_RUNS") ?? 1;

/** `checkProperty` for async properties: fixed seed, replay hint on failure. */
export async function checkAsyncProperty<T>(
  property: fc.IAsyncProperty<T>,
  opts: { numRuns?: number } = {},
): Promise<void> {
  const numRuns = Math.max(1, Math.round((opts.numRuns ?? 5) * RUN_SCALE));
  try {
    // Shrinking recompiles a kernel per step: cap the run at 60 s so a failure reports in time;
    // a run cut short fails (it checked fewer cases than asked).
    await fc.assert(property, {
      seed: SEED,
      numRuns,
      interruptAfterTimeLimit: 60_000,
      markInterruptAsFailure: true,
    });
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    const cause = e instanceof Error && e.cause instanceof Error ? `\n${e.cause.message}` : "";
    throw new Error(`property failed (replay with FC_SEED=${SEED})\n${msg}${cause}`);
  }
}

/**
 * "exact": bit for bit, except that NaN matches any NaN, −0 matches +0 and a subnormal may read as
 * ±0 (all three allowed by WGSL); else a relative/absolute bound. With `scaled`, atol is relative
 * to the array's largest finite magnitude (at least 1): for long random programs whose
 * cancellations turn a rounding difference of a large intermediate into an absolute one.
 */
export type Tol = "exact" | { rtol: number; atol: number; scaled?: boolean };

/** Exact ops: arithmetic that WGSL and IEEE round identically, views, selects, casts, compares. */
export const EXACT: Tol = "exact";
/** div / reciprocal / sqrt / rsqrt: Vulkan allows 2.5 ULP (div) and 3 ULP (sqrt, via rsqrt). */
export const ULPS: Tol = { rtol: 1e-6, atol: 0 };
/**
 * exp, log, tanh, sigmoid, erf, sin, cos, pow and composites built on them: GPU transcendentals
 * are not correctly rounded (Vulkan: exp 3+2|x| ULP, log 3 ULP or 2⁻²¹ absolute near 1, tanh via
 * exp, sin/cos absolute). rtol 1e-4 / atol 1e-5 leaves room for that and still catches any wrong
 * formula, which is off by far more.
 */
export const TRANSCENDENTAL: Tol = { rtol: 1e-4, atol: 1e-5 };
/**
 * Sums, means, matmuls of a few thousand elements or fewer: the kernels round once per step (fma
 * in matmul), the reference sums in f64 and matmuls in the same order, so differences are a few
 * ULPs of the partial sums. Larger sums use bounds from the summation order (jit_size_test.ts).
 */
export const ACCUMULATE: Tol = { rtol: 1e-5, atol: 1e-5 };

const MIN_NORMAL_F32 = 2 ** -126;

function sameBits(a: number, b: number): boolean {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && Number.isNaN(b);
  // WGSL lets a device flush a subnormal result to zero, and ignore the sign of a zero (WGSL §
  // "Floating point evaluation"): llvmpipe folds select(0, -1, c) into -f32(c), so sign(0) = -0.
  if (b !== 0 && Math.abs(b) < MIN_NORMAL_F32 && a === 0) return true;
  return a === b;
}

function close(a: number, b: number, rtol: number, atol: number): boolean {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && Number.isNaN(b);
  if (!Number.isFinite(a) || !Number.isFinite(b)) return a === b;
  return Math.abs(a - b) <= atol + rtol * Math.abs(b);
}

function preview(x: HostArray): string {
  const s = JSON.stringify(
    toNested(x),
    (_k, v) => typeof v === "number" && !Number.isFinite(v) ? String(v) : v,
  );
  return s.length > 2000 ? s.slice(0, 2000) + "…" : s;
}

/** Asserts one array equals another: shape, dtype and every value within `tol`. */
export function assertArrayMatches(
  actual: HostArray,
  expected: HostArray,
  tol: Tol,
  label = "",
): void {
  const where = label ? `${label}: ` : "";
  if (actual.shape.join() !== expected.shape.join()) {
    throw new Error(`${where}shape [${actual.shape}] ≠ expected [${expected.shape}]`);
  }
  if (actual.dtype !== expected.dtype) {
    throw new Error(`${where}dtype ${actual.dtype} ≠ expected ${expected.dtype}`);
  }
  if (actual.data.length !== expected.data.length) {
    throw new Error(`${where}${actual.data.length} values ≠ expected ${expected.data.length}`);
  }
  let scale = 1;
  if (tol !== "exact" && tol.scaled) {
    for (const v of expected.data) if (Number.isFinite(v)) scale = Math.max(scale, Math.abs(v));
  }
  for (let i = 0; i < actual.data.length; i++) {
    const [a, b] = [actual.data[i], expected.data[i]];
    const ok = tol === "exact" ? sameBits(a, b) : close(a, b, tol.rtol, tol.atol * scale);
    if (!ok) {
      const t = tol === "exact" ? "bit-exact" : `rtol ${tol.rtol}, atol ${tol.atol * scale}`;
      throw new Error(
        `${where}element ${i}: got ${Object.is(a, -0) ? "-0" : a}, expected ${
          Object.is(b, -0) ? "-0" : b
        } (${t}) in ${actual.dtype}[${actual.shape}]\n` +
          `got:      ${preview(actual)}\nexpected: ${preview(expected)}`,
      );
    }
  }
}

/** Leaves of a pytree of host arrays. */
export function leaves(tree: unknown): HostArray[] {
  return flattenTree(tree, isHostArray)[0];
}

/** Asserts two pytrees of host arrays match leaf by leaf (same structure). */
export function assertTreeMatches(
  actual: unknown,
  expected: unknown,
  tol: Tol | ((leaf: number) => Tol),
  label = "",
): void {
  const [a, defA] = flattenTree(actual, isHostArray);
  const [e, defE] = flattenTree(expected, isHostArray);
  if (JSON.stringify(defA) !== JSON.stringify(defE)) {
    throw new Error(
      `${label}: pytree ${JSON.stringify(defA)} ≠ expected ${JSON.stringify(defE)}`,
    );
  }
  a.forEach((x, i) =>
    assertArrayMatches(x, e[i], typeof tol === "function" ? tol(i) : tol, `${label} leaf ${i}`)
  );
}

/** Primitives seen in traced programs checked so far (for coverage assertions). */
export const seenPrimitives = new Set<string>();

// deno-lint-ignore no-explicit-any
type Fn = (...args: any[]) => unknown;

/** Records the primitives of `f` traced on `args`. */
export function recordPrimitives(f: Fn, args: unknown[]): void {
  for (const n of trace(f, ...args).nodes) seenPrimitives.add(n.op);
}

/**
 * Runs `f` through `jit` (with `opts`) and through `interpret`, and asserts the outputs match.
 * Returns the jitted results.
 */
export async function expectJitMatches(
  f: Fn,
  args: unknown[],
  tol: Tol | ((leaf: number) => Tol),
  label = "",
  opts: JitOptions = {},
): Promise<unknown> {
  recordPrimitives(f, args);
  const expected = interpret(f, ...args);
  const actual = await jit(f, opts)(...args);
  try {
    assertTreeMatches(actual, expected, tol, label);
  } catch (e) {
    const program = await jit(f, opts).lower(...args);
    throw new Error(`${(e as Error).message}\n${String(program)}`);
  }
  return actual;
}

/**
 * f32 data without subnormals: WGSL lets a device flush them to zero (llvmpipe's log(1e-45) is
 * log(2⁻¹²⁷)), so they are replaced by 0.
 */
function f32Data(values: readonly number[]): Float32Array {
  return Float32Array.from(values, (v) => (Math.abs(Math.fround(v)) < MIN_NORMAL_F32 ? 0 : v));
}

/** Values: ordinary f32 spread over [min, max] (`arbNumber`; no subnormals). */
export function arbF32(
  shape: readonly number[],
  min = -2,
  max = 2,
): fc.Arbitrary<HostArray> {
  const n = shape.reduce((a, b) => a * b, 1);
  return fc.array(arbNumber(min, max), {
    minLength: n,
    maxLength: n,
  }).map((v) => ({ shape: [...shape], dtype: "f32" as const, data: f32Data(v) }));
}

/** IEEE edge values mixed into ordinary ones. */
export const SPECIAL_F32 = [NaN, Infinity, -Infinity, 0, -0, 1, -1, 100, -100, 1e30, -1e30, 1e-30];

/** f32 values where about a third are edge cases (NaN, ±Inf, ±0, huge, tiny). */
export function arbF32Special(
  shape: readonly number[],
  min = -3,
  max = 3,
): fc.Arbitrary<HostArray> {
  const n = shape.reduce((a, b) => a * b, 1);
  const value = fc.oneof(
    { weight: 2, arbitrary: arbNumber(min, max) },
    { weight: 1, arbitrary: fc.constantFrom(...SPECIAL_F32) },
  );
  return fc.array(value, { minLength: n, maxLength: n }).map((v) => ({
    shape: [...shape],
    dtype: "f32" as const,
    data: f32Data(v),
  }));
}

/** i32 values in [min, max] (full range by default, so arithmetic wraps around). */
export function arbI32(
  shape: readonly number[],
  min = -(2 ** 31),
  max = 2 ** 31 - 1,
): fc.Arbitrary<HostArray> {
  const n = shape.reduce((a, b) => a * b, 1);
  const value = fc.oneof(
    fc.integer({ min, max }),
    fc.constantFrom(...[0, 1, -1, min, max].filter((v) => v >= min && v <= max)),
  );
  return fc.array(value, { minLength: n, maxLength: n }).map((v) => ({
    shape: [...shape],
    dtype: "i32" as const,
    data: Int32Array.from(v),
  }));
}

/** bool values (stored 0/1 in an Int32Array). */
export function arbBool(shape: readonly number[]): fc.Arbitrary<HostArray> {
  const n = shape.reduce((a, b) => a * b, 1);
  return fc.array(fc.boolean(), { minLength: n, maxLength: n }).map((v) => ({
    shape: [...shape],
    dtype: "bool" as const,
    data: Int32Array.from(v, (b) => +b),
  }));
}

/** A deterministic pseudo-random f32 array (mulberry32), for fixed test inputs. */
export function seeded(shape: readonly number[], seed: number, min = -1, max = 1): HostArray {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const n = shape.reduce((a, b) => a * b, 1);
  return {
    shape: [...shape],
    dtype: "f32",
    data: Float32Array.from({ length: n }, () => min + (max - min) * next()),
  };
}

/** Random distinct axes of a rank-r tensor, each possibly written negatively. */
export function arbAxes(rank: number, minLength = 0): fc.Arbitrary<number[]> {
  const all = Array.from({ length: rank }, (_, i) => i);
  return fc.subarray(all, { minLength: Math.min(minLength, rank) }).chain((axes) =>
    fc.array(fc.boolean(), { minLength: axes.length, maxLength: axes.length }).map((negs) =>
      axes.map((a, i) => (negs[i] ? a - rank : a))
    )
  );
}
