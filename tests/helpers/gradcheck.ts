/**
 * Gradient checking for the CPU reference: reverse-mode gradients in f64 against central
 * differences, plus input generators that keep away from kinks (zero, ties).
 */

import {
  evaluateGraph,
  flattenTree,
  grad,
  type HostArray,
  interpretF64,
  isHostArray,
  mul,
  sum,
  type Tensor,
  trace,
} from "../../mod.ts";
import { assertClose } from "./arrays.ts";
import { fc } from "./property.ts";

export const H = 1e-6;
export const RTOL = 1e-5;
export const ATOL = 1e-6;

// deno-lint-ignore no-explicit-any
export type Loss = (...args: any[]) => Tensor;

export const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
export const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** Leaves of one argument (a HostArray or a pytree of them). */
export function leavesOf(arg: unknown): HostArray[] {
  return flattenTree(arg, isHostArray)[0];
}

/** Central differences of `f` (a scalar loss) w.r.t. every leaf of the arguments in `argnums`. */
export function numericGrads(f: Loss, args: unknown[], argnums: readonly number[]): HostArray[][] {
  const graph = trace(f, ...args);
  const perArg = args.map(leavesOf);
  const leaves = perArg.flat();
  const offsets = perArg.map((_, a) => perArg.slice(0, a).reduce((n, l) => n + l.length, 0));
  const loss = () => evaluateGraph(graph, leaves, { precision: "f64" })[0].data[0];
  return argnums.map((a) =>
    perArg[a].map((leaf, j) => {
      const k = offsets[a] + j;
      const x: HostArray = {
        shape: [...leaf.shape],
        dtype: "f32",
        data: Float64Array.from(leaf.data),
      };
      leaves[k] = x;
      const out = new Float64Array(x.data.length);
      for (let i = 0; i < x.data.length; i++) {
        const x0 = x.data[i], xp = x0 + H, xm = x0 - H;
        x.data[i] = xp;
        const lp = loss();
        x.data[i] = xm;
        const lm = loss();
        x.data[i] = x0;
        out[i] = (lp - lm) / (xp - xm);
      }
      leaves[k] = leaf;
      return { shape: [...leaf.shape], dtype: "f32" as const, data: out };
    })
  );
}

/**
 * Asserts that `grad(f, { argnums })`, evaluated in f64, matches central differences. `argnums`
 * defaults to every argument whose leaves are all f32.
 */
export function checkGrad(
  f: Loss,
  args: unknown[],
  opts: { argnums?: readonly number[]; rtol?: number; atol?: number; label?: string } = {},
): void {
  const argnums = opts.argnums ??
    range(args.length).filter((a) => leavesOf(args[a]).every((l) => l.dtype === "f32"));
  const analytic = interpretF64(grad(f, { argnums }), ...args) as unknown[];
  const numeric = numericGrads(f, args, argnums);
  argnums.forEach((a, i) => {
    const got = leavesOf(analytic[i]);
    if (got.length !== numeric[i].length) throw new Error(`argument ${a}: wrong pytree`);
    got.forEach((g, j) =>
      assertClose(g, numeric[i][j], {
        rtol: opts.rtol ?? RTOL,
        atol: opts.atol ?? ATOL,
        label: `${opts.label ?? "grad"} of argument ${a} leaf ${j}`,
      })
    );
  });
}

/** A fixed pseudo-random weight array in [-1.5, 1.5] (mulberry32 of `seed`), f64-backed. */
export function weights(shape: readonly number[], seed: number): HostArray {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    shape: [...shape],
    dtype: "f32",
    data: Float64Array.from({ length: sizeOf(shape) }, () => 3 * next() - 1.5),
  };
}

/** The scalar loss Σ op(x…)·W for a weight W of op's output shape. */
export function weighted(op: (...xs: Tensor[]) => Tensor, seed: number): Loss {
  return (...xs: Tensor[]) => {
    const y = op(...xs);
    return sum(mul(y, weights(y.shape, seed)));
  };
}

export const arbSeed = fc.integer({ min: 0, max: 0x7fffffff });

/** Values with |x| in [lo, hi] and a random sign (away from 0). */
export function arbAwayFromZero(
  shape: readonly number[],
  lo = 0.2,
  hi = 2,
): fc.Arbitrary<HostArray> {
  const n = sizeOf(shape);
  return fc.array(
    fc.tuple(fc.double({ min: lo, max: hi, noNaN: true }), fc.boolean()),
    { minLength: n, maxLength: n },
  ).map((vs) => ({
    shape: [...shape],
    dtype: "f32" as const,
    data: Float64Array.from(vs, ([v, s]) => (s ? v : -v)),
  }));
}

/** Values k·0.25 + offset (|k| ≤ 8): two lattices with different offsets never tie. */
export function arbLattice(shape: readonly number[], offset: number): fc.Arbitrary<HostArray> {
  const n = sizeOf(shape);
  return fc.array(fc.integer({ min: -8, max: 8 }), { minLength: n, maxLength: n }).map((ks) => ({
    shape: [...shape],
    dtype: "f32" as const,
    data: Float64Array.from(ks, (k) => k * 0.25 + offset),
  }));
}

/** Pairwise distinct values (gaps ≥ 0.15) in a random order: no ties for max reductions. */
export function arbDistinct(shape: readonly number[]): fc.Arbitrary<HostArray> {
  const n = sizeOf(shape);
  return fc.tuple(
    fc.shuffledSubarray(range(n), { minLength: n, maxLength: n }),
    fc.array(fc.double({ min: 0, max: 0.1, noNaN: true }), { minLength: n, maxLength: n }),
  ).map(([perm, jitter]) => ({
    shape: [...shape],
    dtype: "f32" as const,
    data: Float64Array.from(perm, (p, i) => (p - n / 2) * 0.25 + jitter[i]),
  }));
}

/** Random axes of a rank-r tensor (distinct, each possibly written negatively). */
export function arbAxes(rank: number): fc.Arbitrary<number[]> {
  return fc.subarray(range(rank)).chain((axes) =>
    fc.array(fc.boolean(), { minLength: axes.length, maxLength: axes.length }).map((negs) =>
      axes.map((a, i) => (negs[i] ? a - rank : a))
    )
  );
}

/** Asserts that leaf-for-leaf, `got` (per argnum, pytrees) matches `expected`. */
export function assertGradsClose(
  got: unknown[],
  expected: HostArray[][],
  argnums: readonly number[],
  label: string,
): void {
  argnums.forEach((a, i) => {
    const leaves = leavesOf(got[i]);
    if (leaves.length !== expected[i].length) throw new Error(`${label}: argument ${a} pytree`);
    leaves.forEach((g, j) =>
      assertClose(g, expected[i][j], {
        rtol: RTOL,
        atol: ATOL,
        label: `${label}: grad of argument ${a} leaf ${j}`,
      })
    );
  });
}
