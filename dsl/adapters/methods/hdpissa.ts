/**
 * HD-PiSSA (../shared/docs/hdpissa-spec.md): shard k owns the principal components
 * [k·r, (k+1)·r) of the pretrained W, zero-padded past min(m, n).
 */

import { hdpissaInit } from "../init.ts";
import type { ShardedMethod } from "./spec.ts";

export const hdpissa: ShardedMethod = {
  name: "hdpissa",
  summary: "HD-PiSSA: each shard trains its own principal components, ΔW summed over shards",
  family: "sharded",
  usesRank: true,
  check: shardsWithin,
  svdComponents: (rank, devices) => rank * devices,
  async init(w, ctx) {
    const k = ctx.rank * ctx.devices;
    const f = hdpissaInit(w, ctx.rank, ctx.devices, await ctx.leading(k));
    return { aCat: f.aCat, bCat: f.bCat };
  },
};

/** The last shard must own at least one real component. */
export function shardsWithin(
  shape: readonly [number, number],
  rank: number,
  devices: number,
): string | undefined {
  const d = Math.min(...shape);
  return (devices - 1) * rank >= d
    ? `min(m, n) = ${d} components: with ${devices} devices × rank ${rank}, device ${
      devices - 1
    } would own only zero padding (nothing to train); lower rank or devices`
    : undefined;
}
