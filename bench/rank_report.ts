/**
 * The rank report's cost (`deno task train` ends with it): singular values by Golub–Kahan against
 * the Gram path per GPT-2 small and Qwen2.5-0.5B shape, then GPT-2 small's whole report at the
 * default work budget, serial by Golub–Kahan (the report before 2026-12-07), serial with the
 * automatic choice, and in workers. Updates are synthetic: a rank-64 product plus full-rank noise
 * 1e-3 of its size, on random weights.
 *
 *   deno task bench-rank
 */

import type { HostArray } from "../dsl/host_array.ts";
import { effectiveRank, rankByLayerType } from "../dsl/linalg/rank.ts";
import { rankByLayerTypeInWorkers } from "../runtime/linalg/rank_workers.ts";

let seed = 7;
const uniform = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5;
const random = (m: number, n: number, scale: number): HostArray => ({
  shape: [m, n],
  dtype: "f32",
  data: Float32Array.from({ length: m * n }, () => scale * uniform()),
});

/** W_T for W₀: W₀ + U·V (rank 64) + noise 1e-3 of it. */
function trained(w0: HostArray): HostArray {
  const [m, n] = w0.shape, k = 64;
  const u = random(m, k, 0.02), v = random(k, n, 0.02);
  const data = Float32Array.from(w0.data);
  for (let i = 0; i < m; i++) {
    for (let c = 0; c < k; c++) {
      const x = u.data[i * k + c];
      for (let j = 0; j < n; j++) data[i * n + j] += x * v.data[c * n + j];
    }
  }
  for (let i = 0; i < data.length; i++) data[i] += 4e-6 * uniform();
  return { ...w0, data };
}

const seconds = (t: number) => ((performance.now() - t) / 1000).toFixed(2);
console.log(
  "| shape | Golub–Kahan s | Gram s | max abs(σ − σ_GK)/σ₁ | rank (GK, Gram) | entropy rank (GK, Gram) |",
);
console.log("| --- | --- | --- | --- | --- | --- |");
for (const [m, n] of [[768, 2304], [768, 3072], [3072, 768], [4864, 896], [896, 4864]]) {
  const w0 = random(m, n, 0.04);
  const w1 = trained(w0);
  const delta = { ...w1, data: w1.data.map((v, i) => v - w0.data[i]) };
  let t = performance.now();
  const exact = effectiveRank(delta, { method: "golub-kahan" });
  const gk = seconds(t);
  t = performance.now();
  const fast = effectiveRank(delta, { method: "gram" });
  const gram = seconds(t);
  const top = exact.singularValues[0];
  const err = Math.max(...exact.singularValues.map((s, i) => Math.abs(s - fast.singularValues[i])));
  console.log(
    `| ${m}×${n} | ${gk} | ${gram} | ${
      (err / top).toExponential(1)
    } | ${exact.rank}, ${fast.rank} | ` +
      `${exact.entropyRank.toFixed(3)}, ${fast.entropyRank.toFixed(3)} |`,
  );
}

// GPT-2 small's 48 adapted matrices (HF Conv1D shapes).
const before: Record<string, HostArray> = {}, after: Record<string, HostArray> = {};
for (let l = 0; l < 12; l++) {
  for (
    const [module, m, n] of [["attn.c_attn", 768, 2304], ["attn.c_proj", 768, 768], [
      "mlp.c_fc",
      768,
      3072,
    ], ["mlp.c_proj", 3072, 768]] as const
  ) {
    const name = `h.${l}.${module}.weight`;
    before[name] = random(m, n, 0.04);
    after[name] = trained(before[name]);
  }
}
const names = Object.keys(before);
let t = performance.now();
const old = rankByLayerType(before, after, names, { method: "golub-kahan" });
const tOld = seconds(t);
t = performance.now();
const serial = rankByLayerType(before, after, names);
const tSerial = seconds(t);
t = performance.now();
const parallel = await rankByLayerTypeInWorkers(before, after, names);
const tParallel = seconds(t);
const same = JSON.stringify(serial) === JSON.stringify(parallel);
const ranks = (r: typeof old) => r.map((x) => `${x.layerType} ${x.meanRank}`).join(", ");
console.log(
  `\nGPT-2 small report (${
    serial.map((r) => r.matrices).reduce((a, b) => a + b)
  } of 48 matrices measured):`,
);
console.log(`  Golub–Kahan, one thread: ${tOld} s  (${ranks(old)})`);
console.log(`  automatic, one thread:   ${tSerial} s  (${ranks(serial)})`);
console.log(
  `  automatic, ${navigator.hardwareConcurrency} workers:    ${tParallel} s  (identical report: ${same})`,
);
