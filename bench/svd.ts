/**
 * `deno task bench-svd`: accuracy and time of the exact SVDs (Golub–Kahan, and one-sided Jacobi up
 * to 512²; f64, host), of numpy/LAPACK (`np.linalg.svd`, gesdd) as the anchor, and of the
 * randomised SVD (Halko subspace iteration, device products); then the whole initial SVD of GPT-2
 * small's 48 and Qwen2.5-0.5B's 168 adapted matrices with `--svd auto`. Writes docs/svd.md.
 */

import { orthogonalityError, reconstructionError, type Svd, svd } from "../dsl/linalg/svd.ts";
import { gpu } from "../runtime/device.ts";
import { randomizedSvd } from "../runtime/linalg/rsvd.ts";
import { leadingFactors, svdMethodFor, type TrainerConfig } from "../runtime/trainer_common.ts";
import type { HostArray } from "../dsl/host_array.ts";

function lcg(seed: number) {
  let x = seed >>> 0;
  return () => ((x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 2 ** 32) - 0.5;
}

/** U·diag(0.97ⁱ)·Vᵀ with random (non-orthogonal) U, V: a slowly decaying spectrum. */
function decaying(m: number, n: number): HostArray {
  const rand = lcg(12345);
  const k = Math.min(m, n);
  const u = Float64Array.from({ length: m * k }, rand);
  const v = Float64Array.from({ length: k * n }, () => 0);
  for (let c = 0; c < k; c++) for (let j = 0; j < n; j++) v[c * n + j] = rand() * 0.97 ** c;
  const data = new Float32Array(m * n);
  const row = new Float64Array(n);
  for (let i = 0; i < m; i++) {
    row.fill(0);
    for (let c = 0; c < k; c++) {
      const x = u[i * k + c];
      for (let j = 0; j < n; j++) row[j] += x * v[c * n + j];
    }
    data.set(row, i * n);
  }
  return { shape: [m, n], dtype: "f32", data };
}

/** N(0, 0.02)-like entries (uniform with that spread): a random, untrained weight. */
function gaussianLike(m: number, n: number, seed: number): HostArray {
  const rand = lcg(seed);
  const scale = 0.02 * Math.sqrt(12);
  return {
    shape: [m, n],
    dtype: "f32",
    data: Float32Array.from({ length: m * n }, () => rand() * scale),
  };
}

/** numpy's SVD of `w`: best-of-3 milliseconds and the singular values (undefined without numpy). */
async function numpySvd(w: HostArray): Promise<{ ms: number; s: Float64Array } | undefined> {
  const [m, n] = w.shape;
  const file = await Deno.makeTempFile();
  await Deno.writeFile(file, new Uint8Array(Float64Array.from(w.data).buffer));
  const script = `import numpy as np, time, sys
a = np.fromfile(${JSON.stringify(file)}, dtype=np.float64).reshape(${m}, ${n})
best = 1e9
for _ in range(3):
    t = time.perf_counter(); s = np.linalg.svd(a, full_matrices=False)[1]; best = min(best, time.perf_counter() - t)
sys.stdout.write(repr(best * 1000) + " " + " ".join(repr(float(x)) for x in s))`;
  try {
    const out = await new Deno.Command("python3", { args: ["-c", script], stderr: "null" })
      .output();
    if (!out.success) return undefined;
    const [ms, ...s] = new TextDecoder().decode(out.stdout).trim().split(" ").map(Number);
    return { ms, s: Float64Array.from(s) };
  } catch {
    return undefined;
  } finally {
    await Deno.remove(file);
  }
}

const e1 = (x: number) => x.toExponential(1);
const time = async <T>(f: () => T | Promise<T>): Promise<[T, number]> => {
  const t0 = performance.now();
  const r = await f();
  return [r, performance.now() - t0];
};

const device = await gpu();
const sizeRows: string[] = [];
for (const [m, n] of [[64, 64], [144, 384], [256, 256], [512, 512], [768, 768], [768, 3072]]) {
  const w = decaying(m, n);
  const [exact, gkMs] = await time(() => svd(w.data, m, n));
  const jacobiMs = m * n <= 512 * 512
    ? (await time(() => svd(w.data, m, n, { method: "jacobi" })))[1].toFixed(0)
    : "—";
  const np = await numpySvd(w);
  const npGap = np
    ? e1(Math.max(...Array.from(np.s, (s, i) => Math.abs(s - exact.s[i]))) / exact.s[0])
    : "—";
  const k = 16;
  await randomizedSvd(w, k, { niter: 4 }); // compile
  const [approx, rMs] = await time(() => randomizedSvd(w, k, { niter: 4 }));
  const topErr = Math.max(...Array.from(approx.s, (s, c) => Math.abs(s - exact.s[c]) / exact.s[0]));
  sizeRows.push(
    `| ${m}×${n} | ${gkMs.toFixed(0)} | ${jacobiMs} | ${np ? np.ms.toFixed(0) : "—"} | ` +
      `${e1(reconstructionError(w.data, exact))} | ${
        e1(orthogonalityError(exact.u, m, exact.k))
      } | ` +
      `${npGap} | ${rMs.toFixed(0)} | ${e1(topErr)} | ` +
      `${reconstructionError(w.data, approx, k).toExponential(2)} vs ${
        reconstructionError(w.data, exact, k).toExponential(2)
      } |`,
  );
  console.log(sizeRows.at(-1));
}

/** Adapted matrices of a model, by shape and count. */
const MODELS: { name: string; k: number; shapes: [number, number, number][] }[] = [
  // GPT-2 small: c_attn (Conv1D 768×2304), attn c_proj 768×768, c_fc 768×3072, mlp c_proj
  // 3072×768, 12 layers; HD-PiSSA K = 4, r = 4.
  {
    name: "GPT-2 small (48 matrices)",
    k: 16,
    shapes: [[768, 2304, 12], [768, 768, 12], [768, 3072, 12], [3072, 768, 12]],
  },
  // Qwen2.5-0.5B: q/o 896², k/v 128×896, gate/up 4864×896, down 896×4864, 24 layers.
  {
    name: "Qwen2.5-0.5B (168 matrices)",
    k: 16,
    shapes: [[896, 896, 48], [128, 896, 48], [4864, 896, 48], [896, 4864, 24]],
  },
];
const modelRows: string[] = [];
for (const model of MODELS) {
  const cfg = { svd: { method: "auto" }, seed: 0 } as TrainerConfig;
  let total = 0, worstTop = 0, worstTail = 0;
  const methods = new Map<string, number>();
  let seed = 1;
  for (const [m, n, count] of model.shapes) {
    const how = svdMethodFor("auto", [m, n], model.k);
    methods.set(`${how} ${m}×${n}`, count);
    for (let i = 0; i < count; i++) {
      const w = gaussianLike(m, n, seed++);
      const [f, ms] = await time(() => leadingFactors(cfg, w, model.k));
      total += ms;
      if (i === 0 && how === "randomized") {
        // Accuracy against the exact SVD, once per shape.
        const exact: Svd = svd(w.data, m, n);
        const top = Math.max(
          ...Array.from(f.s.slice(0, model.k), (s, c) => Math.abs(s - exact.s[c]) / exact.s[0]),
        );
        const ratio = reconstructionError(w.data, f, model.k) /
          reconstructionError(w.data, exact, model.k);
        worstTop = Math.max(worstTop, top);
        worstTail = Math.max(worstTail, ratio - 1);
      }
    }
  }
  modelRows.push(
    `| ${model.name} | ${[...methods].map(([k, c]) => `${k} ×${c}`).join(", ")} | ${
      (total / 1000).toFixed(1)
    } | ${e1(worstTop)} | ${e1(worstTail)} |`,
  );
  console.log(modelRows.at(-1));
}

const table = `# SVD accuracy and time

Produced by \`deno task bench-svd\` on ${device.info.description || device.info.vendor} (${
  new Date().toISOString().slice(0, 10)
}), 2 cores.

## Per size

Matrices are U·diag(0.97ⁱ)·Vᵀ with random (non-orthogonal) U, V: a slowly decaying spectrum, like
trained weights. Exact: Golub–Kahan (Householder bidiagonalisation, implicit-shift QR; the
default) and one-sided Jacobi (up to 512²), both f64 on one host core. numpy: \`np.linalg.svd\`
(LAPACK gesdd through numpy's BLAS) on the same f64 matrix, best of 3, in the same run.
Randomised: top 16, oversampling 10, 4 power iterations, products on the device.

| size | Golub–Kahan ms | Jacobi ms | numpy ms | ‖W − UΣVᵀ‖/‖W‖ | max abs(UᵀU − I) | max abs(σ − σ_numpy)/σ₁ | randomised ms | max abs(σ̂ᵢ − σᵢ)/σ₁ (top 16) | rank-16 error ‖W − W₁₆‖/‖W‖: randomised vs optimal |
|---|---|---|---|---|---|---|---|---|---|
${sizeRows.join("\n")}

## The initial SVD of a whole model (\`--svd auto\`, HD-PiSSA K·r = 16)

Every adapted matrix of the model's shapes, random entries of spread 0.02 (an untrained checkpoint:
a flat spectrum, the hardest case for the randomised SVD). auto takes the exact SVD where
m·n·min(m, n) ≤ 512³ and the randomised top-26 otherwise. Accuracy: one matrix per randomised
shape against its exact SVD.

| model | method per shape | seconds, all matrices | max abs(σ̂ᵢ − σᵢ)/σ₁ (top 16) | rank-16 error: randomised / optimal − 1 |
|---|---|---|---|---|
${modelRows.join("\n")}
`;
await Deno.writeTextFile("docs/svd.md", table);
