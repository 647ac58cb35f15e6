/**
 * The built-in methods by name. `createTrainer` also takes a method record directly, so a research
 * script can define its own (examples/custom_method.ts) without touching the library.
 */

import { dora } from "./dora.ts";
import { full } from "./full.ts";
import { hdMilora } from "./hd_milora.ts";
import { hdpissa } from "./hdpissa.ts";
import { lora } from "./lora.ts";
import { milora } from "./milora.ts";
import { pissa } from "./pissa.ts";
import type { MethodSpec } from "./spec.ts";

/** Every built-in method, by the name `--method` and `createTrainer` take. */
export const METHODS: Readonly<Record<string, MethodSpec>> = Object.freeze(
  Object.fromEntries([hdpissa, hdMilora, pissa, milora, lora, dora, full].map((m) => [m.name, m])),
);

/** The built-in method of this name, or the record itself; undefined for an unknown name. */
export function methodSpec(method: string | MethodSpec): MethodSpec | undefined {
  return typeof method === "string" ? METHODS[method] : method;
}
