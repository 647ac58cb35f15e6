/** Fine-tuning methods as records (see spec.ts): the built-ins and the contract for new ones. */

export type {
  AdapterExport,
  InitContext,
  MethodBase,
  MethodSpec,
  PeftFactors,
  ReplicatedInit,
  ReplicatedMethod,
  ShardedInit,
  ShardedMethod,
} from "./spec.ts";
export { METHODS, methodSpec } from "./registry.ts";
export { byKey, loraExport, lowRankWeight, rankWithin } from "./low_rank.ts";
export { shardsWithin } from "./hdpissa.ts";
