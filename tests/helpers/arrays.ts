/** Random host arrays and closeness checks for tests. */

import { type HostArray, toNested } from "../../mod.ts";
import { fc } from "./property.ts";

/** A shape of rank ≤ maxRank with dims in [minDim, maxDim]. */
export function arbShape(
  opts: { minRank?: number; maxRank?: number; minDim?: number; maxDim?: number } = {},
): fc.Arbitrary<number[]> {
  return fc.array(fc.integer({ min: opts.minDim ?? 1, max: opts.maxDim ?? 4 }), {
    minLength: opts.minRank ?? 0,
    maxLength: opts.maxRank ?? 3,
  });
}

/**
 * Numbers spread over [min, max]. `fc.double` alone draws uniformly over the bit patterns of the
 * doubles in the range, so for a range around 0 nearly every draw is tiny: with the suite's seed,
 * 3 of 300 values of [-2, 2] had |x| ≥ 0.1 (the rest were 0, ±2 or below 1e-6, i.e. 0 once
 * rounded to f32), and properties were checked on zeros. Here most draws are uniform on a grid of
 * 2²⁰ steps per side (shrinking towards 0, or towards `min` for a range without 0), some are the
 * range's ends or 0, and some still come from `fc.double` (tiny magnitudes).
 */
export function arbNumber(min: number, max: number): fc.Arbitrary<number> {
  const steps = 2 ** 20;
  const uniform = min < 0 && max > 0
    ? fc.integer({ min: -steps, max: steps }).map((
      k,
    ) => (k < 0 ? -min * (k / -steps) : max * (k / steps)))
    : fc.integer({ min: 0, max: steps }).map((k) => min + (max - min) * (k / steps));
  const ends = [min, max, ...(min < 0 && max > 0 ? [0] : [])];
  return fc.oneof(
    { weight: 6, arbitrary: uniform },
    { weight: 1, arbitrary: fc.constantFrom(...ends) },
    { weight: 1, arbitrary: fc.double({ min, max, noNaN: true, noDefaultInfinity: true }) },
  );
}

/** An f32 (or f64-backed, for gradient checks) array of `shape` with values in [min, max]. */
export function arbArray(
  shape: readonly number[],
  opts: { min?: number; max?: number; f64?: boolean } = {},
): fc.Arbitrary<HostArray> {
  const n = shape.reduce((a, b) => a * b, 1);
  const min = opts.min ?? -2, max = opts.max ?? 2;
  return fc.array(arbNumber(min, max), {
    minLength: n,
    maxLength: n,
  }).map((values) => ({
    shape: [...shape],
    dtype: "f32" as const,
    data: opts.f64 ? Float64Array.from(values) : Float32Array.from(values),
  }));
}

/** An i32 array of `shape` with values in [min, max]. */
export function arbIntArray(
  shape: readonly number[],
  min: number,
  max: number,
): fc.Arbitrary<HostArray> {
  const n = shape.reduce((a, b) => a * b, 1);
  return fc.array(fc.integer({ min, max }), { minLength: n, maxLength: n }).map((values) => ({
    shape: [...shape],
    dtype: "i32" as const,
    data: Int32Array.from(values),
  }));
}

/** Broadcast-compatible pair of shapes: `b` drops leading axes and sets some dims to 1. */
export function arbBroadcastPair(maxRank = 3): fc.Arbitrary<[number[], number[]]> {
  return arbShape({ maxRank }).chain((a) =>
    fc.tuple(
      fc.integer({ min: 0, max: a.length }),
      fc.array(fc.boolean(), { minLength: a.length, maxLength: a.length }),
      fc.boolean(),
    ).map(([drop, ones, swap]) => {
      const b = a.slice(drop).map((d, i) => (ones[i + drop] ? 1 : d));
      return (swap ? [b, a] : [a, b]) as [number[], number[]];
    })
  );
}

function isClose(a: number, b: number, rtol: number, atol: number): boolean {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && Number.isNaN(b);
  if (!Number.isFinite(a) || !Number.isFinite(b)) return a === b;
  return Math.abs(a - b) <= atol + rtol * Math.abs(b);
}

/**
 * Asserts `actual` ≈ `expected` elementwise (NaN equals NaN, infinities must match exactly).
 * `expected` may be a HostArray or nested numbers; shapes must agree when it is a HostArray.
 */
export function assertClose(
  actual: HostArray,
  expected: HostArray | number | boolean | readonly unknown[],
  opts: { rtol?: number; atol?: number; label?: string } = {},
): void {
  const rtol = opts.rtol ?? 1e-5, atol = opts.atol ?? 1e-6;
  const label = opts.label ? `${opts.label}: ` : "";
  let exp: number[];
  if (typeof expected === "object" && expected !== null && "data" in expected) {
    const e = expected as HostArray;
    if (e.shape.join() !== actual.shape.join()) {
      throw new Error(`${label}shape [${actual.shape}] ≠ expected [${e.shape}]`);
    }
    exp = Array.from(e.data);
  } else {
    exp = [expected].flat(Infinity as 1).map((v) => Number(v));
  }
  const act = Array.from(actual.data);
  if (act.length !== exp.length) {
    throw new Error(`${label}${act.length} values ≠ expected ${exp.length}`);
  }
  for (let i = 0; i < act.length; i++) {
    if (!isClose(act[i], exp[i], rtol, atol)) {
      throw new Error(
        `${label}element ${i}: ${act[i]} vs expected ${exp[i]} (rtol ${rtol}, atol ${atol})\n` +
          `actual:   ${JSON.stringify(toNested(actual))}\nexpected: ${JSON.stringify(exp)}`,
      );
    }
  }
}
