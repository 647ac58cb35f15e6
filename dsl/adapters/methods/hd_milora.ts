/**
 * HD-MiLoRA: HD-PiSSA's sharding applied to MiLoRA's components. The K·r *minor* singular
 * components are split across the shards (shard 0 the largest of them), every shard trains its
 * own, and ΔW is summed over shards exactly as in HD-PiSSA. It shows that the HD pattern is a
 * choice of components on top of one sharded runtime.
 */

import { hdpissaInit } from "../init.ts";
import { shardsWithin } from "./hdpissa.ts";
import type { ShardedMethod } from "./spec.ts";

export const hdMilora: ShardedMethod = {
  name: "hd-milora",
  summary: "HD-MiLoRA: each shard trains its own minor components, ΔW summed over shards",
  family: "sharded",
  usesRank: true,
  check: shardsWithin,
  init(w, ctx) {
    const svd = ctx.exact();
    const from = Math.max(0, svd.k - ctx.rank * ctx.devices);
    const f = hdpissaInit(w, ctx.rank, ctx.devices, svd, from);
    return { aCat: f.aCat, bCat: f.bCat };
  },
};
