/**
 * A method's state on the host before the first step, built from its record (the same in every
 * runtime mode): one matrix's initialisation as flat named arrays (what one MPI rank computes and
 * broadcasts), and the trees that the compiled steps take.
 */

import type { HostArray } from "../dsl/host_array.ts";
import type { InitContext, MethodSpec } from "../dsl/adapters/methods/spec.ts";
import { flattenTrained, type Trained } from "../dsl/adapters/steps.ts";
import { svdOf } from "../dsl/linalg/svd.ts";
import {
  adapterScale,
  leadingFactors,
  outIn,
  type TrainerConfig,
  TrainerConfigError,
  type Tree,
  zeros,
} from "./trainer_common.ts";

type Rec<T> = Record<string, T>;
const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/**
 * Matrix `name`'s initial state: "aCat"/"bCat" for a sharded method; "base" (unless W itself is
 * trained), "trained/<key>" and "frozen/<key>" for a replicated one. Shapes are checked against
 * what the method declares, so a faulty record fails here with its name.
 */
export async function initMatrix(
  method: MethodSpec,
  cfg: TrainerConfig,
  name: string,
): Promise<Rec<HostArray>> {
  const w = cfg.params[name];
  const [m, n] = w.shape;
  const ctx: InitContext = {
    name,
    index: cfg.adapt.indexOf(name),
    rank: cfg.rank,
    devices: cfg.devices,
    scale: adapterScale(cfg),
    alpha: cfg.alpha ?? cfg.rank,
    seed: cfg.seed ?? 0,
    fanInFanOut: cfg.fanInFanOut?.includes(name) ?? false,
    leading: (k) => leadingFactors(cfg, w, k),
    exact: () => svdOf(w),
  };
  const fail = (what: string): never => {
    throw new TrainerConfigError("method", `${method.name}.init("${name}"): ${what}`);
  };
  const checkF32 = (key: string, x: HostArray | undefined, shape?: number[]) => {
    if (!x || x.dtype !== "f32" || (shape && x.shape.join() !== shape.join())) {
      fail(
        `${key} must be f32${shape ? `[${shape}]` : ""}, got ${x ? `${x.dtype}[${x.shape}]` : x}`,
      );
    }
  };
  if (method.family === "sharded") {
    const f = await method.init(w, ctx);
    const width = cfg.devices * cfg.rank;
    checkF32("aCat", f.aCat, [width, n]);
    checkF32("bCat", f.bCat, [m, width]);
    return { aCat: f.aCat, bCat: f.bCat };
  }
  const f = await method.init(w, ctx);
  const out: Rec<HostArray> = {};
  if (f.base) checkF32("base", f.base, [m, n]), out.base = f.base;
  for (const [k, x] of Object.entries(f.trained)) {
    checkF32(`trained.${k}`, x), out[`trained/${k}`] = x;
  }
  for (const [k, x] of Object.entries(f.frozen ?? {})) {
    checkF32(`frozen.${k}`, x), out[`frozen/${k}`] = x;
  }
  const elements = Object.values(f.trained).reduce((s, x) => s + size(x.shape), 0);
  const [outs, inputs] = outIn(cfg, name);
  const declared = method.trainedElements(outs, inputs, cfg.rank);
  if (elements !== declared) {
    fail(
      `trains ${elements} elements, its trainedElements(${outs}, ${inputs}, ${cfg.rank}) says ${declared}`,
    );
  }
  return out;
}

/** The entries of `init` under `prefix/`, keyed by the rest of the name. */
function under(init: Rec<HostArray>, prefix: string): Rec<HostArray> {
  return Object.fromEntries(
    Object.entries(init)
      .filter(([k]) => k.startsWith(`${prefix}/`))
      .map(([k, v]) => [k.slice(prefix.length + 1), v]),
  );
}

/**
 * A replicated method's live tree: params (each adapted W replaced by its base, or dropped when W
 * is trained), trained and frozen tensors per matrix, one Adam state, and the initial trained
 * tensors where the method exports a PEFT adapter (the export subtracts them).
 */
export function replicatedTree(
  method: MethodSpec,
  cfg: TrainerConfig,
  inits: Rec<Rec<HostArray>>,
): Rec<Tree> {
  const params = { ...cfg.params };
  const trained: Trained<HostArray> = {}, frozen: Trained<HostArray> = {};
  for (const n of cfg.adapt) {
    const f = inits[n];
    if (f.base) params[n] = f.base;
    else delete params[n];
    trained[n] = under(f, "trained");
    frozen[n] = under(f, "frozen");
  }
  const state = { m: {} as Tree, v: {} as Tree, step: zeros([]) };
  for (const [k, t] of Object.entries(flattenTrained(trained))) {
    state.m[k] = zeros(t.shape), state.v[k] = zeros(t.shape);
  }
  const peft = method.family === "replicated" && method.peft;
  return { params, trained, frozen, state, ...(peft ? { initial: trained } : {}) };
}

/** A sharded method's live tree with the Adam state of `shards` shards (all K, or a replica's). */
export function shardedTree(
  cfg: TrainerConfig,
  inits: Rec<Rec<HostArray>>,
  shards: number,
): Rec<Tree> {
  const r = cfg.rank;
  const aCat: Rec<HostArray> = {}, bCat: Rec<HostArray> = {};
  const state = { mA: {} as Tree, vA: {} as Tree, mB: {} as Tree, vB: {} as Tree, step: zeros([]) };
  for (const n of cfg.adapt) {
    const [m, cols] = cfg.params[n].shape;
    aCat[n] = inits[n].aCat, bCat[n] = inits[n].bCat;
    state.mA[n] = zeros([shards, r, cols]), state.vA[n] = zeros([shards, r, cols]);
    state.mB[n] = zeros([shards, m, r]), state.vB[n] = zeros([shards, m, r]);
  }
  return { params: { ...cfg.params }, slices: { aCat, bCat }, state };
}
