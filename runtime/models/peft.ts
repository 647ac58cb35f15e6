/**
 * PEFT-format adapters (`adapter_model.safetensors` + `adapter_config.json`) that load in Python
 * PEFT with `PeftModel.from_pretrained`. PiSSA is exported as a plain LoRA on the *original*
 * weights (PEFT's `path_initial_model_for_weight_conversion`): ΔW = s·[B | −B₀]·[A ; A₀], rank 2r,
 * lora_alpha 2α (so the scale α/r is unchanged). The bytes are made in peft_format.ts (shared with
 * the browser build); this module writes them to a folder.
 */

import { join } from "node:path";
import { writeFileAtomic } from "../io/atomic.ts";
import { loraAdapterFileBytes, type LoraAdapterOptions, type LoraFactors } from "./peft_format.ts";

export {
  loraAdapterFileBytes,
  type LoraAdapterOptions,
  type LoraFactors,
  modulePath,
  peftFactorsOf,
  pissaToLora,
} from "./peft_format.ts";

/** Writes a LoRA adapter folder in PEFT's layout. */
export async function saveLoraAdapter(
  dir: string,
  factors: LoraFactors,
  opts: LoraAdapterOptions = {},
): Promise<void> {
  const files = await loraAdapterFileBytes(factors, opts);
  await Deno.mkdir(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(files)) await writeFileAtomic(join(dir, name), bytes);
}
