/**
 * PEFT-format LoRA adapters in memory: the factors, PiSSA's conversion to a plain LoRA on the
 * original weights (PEFT's `path_initial_model_for_weight_conversion`: ΔW = s·[B | −B₀]·[A ; A₀],
 * rank 2r, lora_alpha 2α, so the scale α/r is unchanged) and the bytes of `adapter_model.safetensors`
 * and `adapter_config.json`, which `saveLoraAdapter` (peft.ts) writes to disk and the browser app
 * downloads. Nothing here touches the file system.
 */

import { type HostArray, transposed } from "../../dsl/host_array.ts";
import type { AdapterExport, PeftFactors } from "../../dsl/adapters/methods/spec.ts";
import { serializeSafetensors } from "../io/safetensors_format.ts";

/**
 * LoRA adapter factors of several weights, with the rank and alpha PEFT records (and DoRA's
 * magnitudes, rsLoRA's scaling).
 */
export type LoraFactors = PeftFactors;

/** The module path PEFT uses for a weight: "model.layers.0.self_attn.q_proj.weight" → "…q_proj". */
export function modulePath(weightName: string): string {
  if (!weightName.endsWith(".weight")) {
    throw new Error(`PEFT export: "${weightName}" is not a ".weight" tensor`);
  }
  return weightName.slice(0, -".weight".length);
}

/** PiSSA factors (trained A, B and initial A₀, B₀) as an equivalent LoRA on the original W. */
export function pissaToLora(
  trained: LoraFactors,
  initial: { a: Record<string, HostArray>; b: Record<string, HostArray> },
): LoraFactors {
  const a: Record<string, HostArray> = {};
  const b: Record<string, HostArray> = {};
  for (const name of Object.keys(trained.a)) {
    const [r, n] = trained.a[name].shape;
    const m = trained.b[name].shape[0];
    const aData = new Float32Array(2 * r * n);
    aData.set(trained.a[name].data, 0);
    aData.set(initial.a[name].data, r * n);
    const bData = new Float32Array(m * 2 * r);
    for (let i = 0; i < m; i++) {
      for (let c = 0; c < r; c++) {
        bData[i * 2 * r + c] = trained.b[name].data[i * r + c];
        bData[i * 2 * r + r + c] = -initial.b[name].data[i * r + c];
      }
    }
    a[name] = { shape: [2 * r, n], dtype: "f32", data: aData };
    b[name] = { shape: [m, 2 * r], dtype: "f32", data: bData };
  }
  // The scale is unchanged at rank 2r: α/r = 2α/2r, and with rsLoRA α/√r = √2·α/√(2r).
  const alpha = trained.useRslora ? Math.SQRT2 * trained.alpha : 2 * trained.alpha;
  return { ...trained, a, b, rank: 2 * trained.rank, alpha };
}

/** A method's PEFT factors: the trained ones, less the initial ones where W kept them. */
export function peftFactorsOf(adapters: AdapterExport): LoraFactors {
  return adapters.initial ? pissaToLora(adapters.trained, adapters.initial) : adapters.trained;
}

/** Options of `loraAdapterFileBytes` and `saveLoraAdapter`. */
export interface LoraAdapterOptions {
  /** `base_model_name_or_path` of adapter_config.json (default null). */
  baseModel?: string;
  /** GPT-2's Conv1D weights are stored [in, out] (PEFT's `fan_in_fan_out`). */
  fanInFanOut?: boolean;
  /** `init_lora_weights` of adapter_config.json (default true). */
  initLoraWeights?: boolean | string;
}

/**
 * `adapter_model.safetensors` and `adapter_config.json` of a LoRA adapter in PEFT's layout, in
 * memory (loadable with Python PEFT's `PeftModel.from_pretrained`).
 */
export async function loraAdapterFileBytes(
  factors: LoraFactors,
  opts: LoraAdapterOptions = {},
): Promise<Record<string, Uint8Array>> {
  if (!factors?.a || !factors?.b || !(factors.rank > 0)) {
    throw new TypeError(
      "saveLoraAdapter: factors must be { a, b, rank, alpha }: pass (await trainer.adapters()).trained " +
        "for LoRA, or pissaToLora(trained, initial) for PiSSA",
    );
  }
  const tensors: Record<string, HostArray> = {};
  const targets = new Set<string>();
  for (const name of Object.keys(factors.a)) {
    const path = modulePath(name);
    // Our factors always satisfy ΔW = s·B·A in the weight's stored layout. For GPT-2's Conv1D
    // (stored [in, out], PEFT's fan_in_fan_out) PEFT applies ΔW = s·(lora_B·lora_A)ᵀ with
    // lora_A [r, in], lora_B [out, r]: so lora_A = Bᵀ and lora_B = Aᵀ.
    const [a, b] = opts.fanInFanOut
      ? [transposed(factors.b[name]), transposed(factors.a[name])]
      : [factors.a[name], factors.b[name]];
    tensors[`base_model.model.${path}.lora_A.weight`] = a;
    tensors[`base_model.model.${path}.lora_B.weight`] = b;
    const magnitude = factors.magnitude?.[name];
    if (magnitude) tensors[`base_model.model.${path}.lora_magnitude_vector.weight`] = magnitude;
    targets.add(path.split(".").at(-1)!);
  }
  const config = {
    peft_type: "LORA",
    task_type: "CAUSAL_LM",
    base_model_name_or_path: opts.baseModel ?? null,
    r: factors.rank,
    lora_alpha: factors.alpha,
    lora_dropout: 0,
    target_modules: [...targets].sort(),
    bias: "none",
    fan_in_fan_out: opts.fanInFanOut ?? false,
    init_lora_weights: opts.initLoraWeights ?? true,
    inference_mode: true,
    use_rslora: factors.useRslora ?? false,
    use_dora: factors.magnitude !== undefined,
    modules_to_save: null,
  };
  return {
    "adapter_model.safetensors": await serializeSafetensors(tensors, { format: "pt" }),
    "adapter_config.json": new TextEncoder().encode(JSON.stringify(config, null, 2) + "\n"),
  };
}
