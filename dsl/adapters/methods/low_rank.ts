/**
 * What the LoRA-family methods share: the weight base + s·B·A, the rank bound, and the PEFT
 * export of { a, b } factors (with the initial factors for SVD-initialised methods).
 */

import { add, mul } from "../../ops/elementwise.ts";
import { matmul } from "../../ops/linalg.ts";
import type { HostArray } from "../../host_array.ts";
import type { Tensor } from "../../trace.ts";
import type { AdapterExport, ReplicatedMethod } from "./spec.ts";
import type { Rec } from "../steps.ts";

/** W_base + s·B·A. */
export function lowRankWeight(base: Tensor | null, t: Rec<Tensor>, scale: number): Tensor {
  const update = mul(scale, matmul(t.b, t.a));
  return base ? add(base, update) : update;
}

/** A rank above min(m, n) has nothing to train. */
export function rankWithin(shape: readonly [number, number], rank: number): string | undefined {
  const d = Math.min(...shape);
  return rank > d ? `rank ${rank} exceeds min(m, n) = ${d}` : undefined;
}

/** One key of every matrix's record: { name: record[name][key] }. */
export function byKey(record: Rec<Rec<HostArray>>, key: string): Rec<HostArray> {
  return Object.fromEntries(Object.entries(record).map(([n, r]) => [n, r[key]]));
}

/** DoRA's magnitudes as PEFT stores them: one vector [out] each (ours may be a row [1, out]). */
const flat = (m: Rec<HostArray>): Rec<HostArray> =>
  Object.fromEntries(
    Object.entries(m).map(([n, x]) => [n, { ...x, shape: [x.data.length] }]),
  );

/**
 * PEFT LoRA export of trained { a, b } (and DoRA's magnitude `m`); `withInitial` adds the initial
 * factors, which the export subtracts (W = W_res + s·B₀·A₀ for PiSSA and MiLoRA).
 */
export function loraExport(withInitial: boolean): NonNullable<ReplicatedMethod["peft"]> {
  return (
    trained: Rec<Rec<HostArray>>,
    initial: Rec<Rec<HostArray>>,
    o: { rank: number; alpha: number; rsLora: boolean },
  ): AdapterExport => {
    const hasMagnitude = Object.values(trained).some((t) => t.m);
    return {
      trained: {
        a: byKey(trained, "a"),
        b: byKey(trained, "b"),
        rank: o.rank,
        alpha: o.alpha,
        useRslora: o.rsLora,
        ...(hasMagnitude ? { magnitude: flat(byKey(trained, "m")) } : {}),
      },
      initial: withInitial ? { a: byKey(initial, "a"), b: byKey(initial, "b") } : undefined,
    };
  };
}
