/**
 * The contract of a fine-tuning method: one record holds everything the trainer and the
 * distributed runtime need (initialisation from W and its SVD, the trained state, the local step
 * as a pure DSL function, what replicas exchange, merge, PEFT export, cost model). The runtime
 * loops over these records as the compiler loops over primitive records; adding a method is one
 * new file. See docs/training.md, "Defining a method".
 *
 * Two families share the runtime:
 * - **replicated** (LoRA, PiSSA, MiLoRA, DoRA, full fine-tuning): every replica holds the same
 *   trained tensors; each shard's gradient of the loss through `weight` is averaged over shards
 *   (an all-reduce) and one Adam state updates them.
 * - **sharded** (HD-PiSSA, HD-MiLoRA): shard k owns fixed factor slices A_k, B_k of a shared
 *   initialisation, takes projected gradients and its own Adam step, and replicas all-gather the
 *   factor deltas; every replica applies the same ΔW to W.
 */

import type { HostArray } from "../../host_array.ts";
import type { Svd } from "../../linalg/svd.ts";
import type { Tensor } from "../../trace.ts";
import type { Rec } from "../steps.ts";

/** What a method's initialisation sees for one adapted matrix W [m, n]. */
export interface InitContext {
  /** The weight's name in the parameter record. */
  name: string;
  /** Its position among the adapted weights (for per-matrix seeds). */
  index: number;
  /** Adapter rank r (per shard for the sharded family). */
  rank: number;
  /** Shards K. */
  devices: number;
  /** The adapter's scale s (α/r, or α/√r with rsLoRA). */
  scale: number;
  /** The configured α (default r). */
  alpha: number;
  /** The run's seed. */
  seed: number;
  /**
   * W is stored [in, out] and applied as x·W (GPT-2's Conv1D; PEFT's `fan_in_fan_out`), so m is
   * the input width and n the output width. Methods that are not symmetric under transposition
   * honour it (LoRA's random factor goes on the input side, DoRA keeps one magnitude per output
   * feature); the SVD-initialised ones need not.
   */
  fanInFanOut: boolean;
  /** The leading k singular triplets (exact or randomised, as the trainer's `svd` option says). */
  leading(k: number): Promise<Svd>;
  /** The exact SVD with every component (for methods that need the minor ones). */
  exact(): Svd;
}

/** What a replicated method starts from, for one adapted matrix. */
export interface ReplicatedInit {
  /** The frozen weight that replaces W (PiSSA's residual, or W itself); null when W is trained. */
  base: HostArray | null;
  /** The trained tensors (e.g. { a, b }), updated by Adam. */
  trained: Rec<HostArray>;
  /** Constants the weight needs besides the base (e.g. LoRA-FA's frozen A); none by default. */
  frozen?: Rec<HostArray>;
}

/** PEFT-format adapter factors of one method (see runtime/models/peft.ts). */
export interface PeftFactors {
  /** A [r, n] per adapted weight name. */
  a: Rec<HostArray>;
  /** B [m, r] per adapted weight name. */
  b: Rec<HostArray>;
  /** The adapter rank r (PEFT's `r`). */
  rank: number;
  /** PEFT's `lora_alpha`. */
  alpha: number;
  /** rsLoRA scaling α/√r (PEFT's `use_rslora`). */
  useRslora?: boolean;
  /** DoRA's magnitude vector [out] per weight (PEFT's `use_dora`). */
  magnitude?: Rec<HostArray>;
}

/** A method's adapter for PEFT: the trained factors, and the initial ones the export subtracts. */
export interface AdapterExport {
  /** The trained factors. */
  trained: PeftFactors;
  /** Initial factors (PiSSA, MiLoRA: W = W_res + s·B₀·A₀, so PEFT gets [B | −B₀]·[A ; A₀]). */
  initial?: { a: Rec<HostArray>; b: Rec<HostArray> };
}

/** Fields every method record has. */
export interface MethodBase {
  /** The name `createTrainer`, `deno task train --method` and checkpoints use. */
  readonly name: string;
  /** One line for `--help` and the docs. */
  readonly summary: string;
  /** False for methods without a rank (full fine-tuning). */
  readonly usesRank: boolean;
  /**
   * Whether an m×n weight can be trained with this rank and shard count; a message naming what to
   * change when not.
   */
  check?(shape: readonly [number, number], rank: number, devices: number): string | undefined;
  /** Leading singular components the method's initialisation asks for (printed before the SVD). */
  svdComponents?(rank: number, devices: number): number;
}

/** A data-parallel method: the same trained tensors on every replica, gradients all-reduced. */
export interface ReplicatedMethod extends MethodBase {
  /** Same trained tensors on every replica; gradients all-reduced. */
  readonly family: "replicated";
  /** Host initialisation for one matrix (runs once, on one rank, then broadcast). */
  init(w: HostArray, ctx: InitContext): ReplicatedInit | Promise<ReplicatedInit>;
  /**
   * The weight the model sees, as a pure DSL function of the frozen base, the trained tensors
   * and the constants; differentiated with respect to `trained`. Also the merged weight.
   */
  weight(base: Tensor | null, trained: Rec<Tensor>, frozen: Rec<Tensor>, scale: number): Tensor;
  /**
   * Trained elements of a weight with `out` output and `inp` input features at rank r (the
   * all-reduce volume; checked at init). For W [m, n] applied as x·Wᵀ that is (m, n); for a weight
   * stored [in, out] (`InitContext.fanInFanOut`), (n, m).
   */
  trainedElements(out: number, inp: number, rank: number): number;
  /** PEFT export of the trained state, where PEFT has the method. */
  peft?(
    trained: Rec<Rec<HostArray>>,
    initial: Rec<Rec<HostArray>>,
    opts: { rank: number; alpha: number; rsLora: boolean },
  ): AdapterExport;
}

/** The factor slices of a sharded (HD-) method, all K shards concatenated. */
export interface ShardedInit {
  /** A_cat [K·r, n]: shard j owns rows [j·r, (j+1)·r). */
  aCat: HostArray;
  /** B_cat [m, K·r]: shard j owns columns [j·r, (j+1)·r). */
  bCat: HostArray;
}

/**
 * An HD- method: shard k's fixed slices A_k, B_k; per-shard projected gradients Bₖᵀ·Gₖ, Gₖ·Aₖᵀ and
 * Adam; all-gather of ΔA, ΔB; W ← W − (ΔB_cat·A_cat + (B_cat − ΔB_cat)·ΔA_cat) on every replica.
 * The methods of this family differ in which components the slices hold.
 */
export interface ShardedMethod extends MethodBase {
  /** Per-shard factor slices; factor deltas all-gathered. */
  readonly family: "sharded";
  /** Every shard's slices of one matrix, concatenated. */
  init(w: HostArray, ctx: InitContext): ShardedInit | Promise<ShardedInit>;
}

/** A fine-tuning method. */
export type MethodSpec = ReplicatedMethod | ShardedMethod;
