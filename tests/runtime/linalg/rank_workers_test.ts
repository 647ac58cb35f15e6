import assert from "node:assert/strict";
import type { HostArray } from "../../../dsl/host_array.ts";
import { rankByLayerType } from "../../../dsl/linalg/rank.ts";
import { rankByLayerTypeInWorkers } from "../../../runtime/linalg/rank_workers.ts";

/** A [rows, cols] matrix of deterministic values. */
function matrix(rows: number, cols: number, seed: number, scale = 1): HostArray {
  let x = seed;
  const data = Float32Array.from({ length: rows * cols }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return scale * (x / 2 ** 31 - 1);
  });
  return { shape: [rows, cols], dtype: "f32", data };
}

/** W₀ and W_T of a GPT-2-like model: updates of rank 3 (and one of full rank) on random weights. */
function model(): { before: Record<string, HostArray>; after: Record<string, HostArray> } {
  const before: Record<string, HostArray> = {}, after: Record<string, HostArray> = {};
  const shapes: Record<string, [number, number]> = {
    "attn.c_attn": [48, 16],
    "attn.c_proj": [16, 16],
    "mlp.c_fc": [16, 64],
    "mlp.c_proj": [64, 16],
  };
  let seed = 1;
  for (let layer = 0; layer < 3; layer++) {
    for (const [module, [m, n]] of Object.entries(shapes)) {
      const name = `h.${layer}.${module}.weight`;
      before[name] = matrix(m, n, seed++);
      const u = matrix(m, 3, seed++), v = matrix(3, n, seed++);
      const full = matrix(m, n, seed++, 0.2);
      const data = Float32Array.from(before[name].data, (w, i) => {
        const [r, c] = [Math.floor(i / n), i % n];
        let d = 0;
        for (let k = 0; k < 3; k++) d += u.data[r * 3 + k] * v.data[k * n + c];
        return w + 0.1 * d + (layer === 2 ? full.data[i] : 0);
      });
      after[name] = { ...before[name], data };
    }
  }
  return { before, after };
}

Deno.test("rankByLayerTypeInWorkers reports what rankByLayerType reports, all or sampled", async () => {
  const { before, after } = model();
  const names = Object.keys(before);
  for (const maxWork of [undefined, 40_000]) {
    const serial = rankByLayerType(before, after, names, { maxWork });
    const parallel = await rankByLayerTypeInWorkers(before, after, names, { maxWork });
    assert.deepEqual(parallel, serial);
    assert.deepEqual(serial.map((r) => r.layerType), [
      "c_attn",
      "attn.c_proj",
      "c_fc",
      "mlp.c_proj",
    ]);
    // Two layers add rank 3, the third a full-rank update too.
    if (maxWork === undefined) {
      for (const r of serial) {
        assert.equal(r.maxRank, 16, r.layerType);
        assert.equal(r.meanRank, (3 + 3 + 16) / 3, r.layerType);
      }
    } else assert.ok(serial.some((r) => r.matrices < r.ofMatrices), "the budget samples");
  }
  // The input is left as it was (updates are copies; only they are transferred).
  assert.deepEqual(
    rankByLayerType(before, after, names),
    await rankByLayerTypeInWorkers(before, after, names),
  );
});

Deno.test("rankByLayerTypeInWorkers rejects a non-finite update with the measure's error", async () => {
  const { before, after } = model();
  const name = "h.1.mlp.c_fc.weight";
  after[name] = { ...after[name], data: after[name].data.map((v, i) => (i === 5 ? NaN : v)) };
  await assert.rejects(
    () => rankByLayerTypeInWorkers(before, after, Object.keys(before)),
    /non-finite entry/,
  );
  assert.throws(() => rankByLayerType(before, after, Object.keys(before)), /non-finite entry/);
});
