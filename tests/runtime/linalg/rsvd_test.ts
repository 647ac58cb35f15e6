import assert from "node:assert/strict";
import type { HostArray } from "../../../dsl/host_array.ts";
import { orthogonalityError, svd } from "../../../dsl/linalg/svd.ts";
import { randomizedSvd } from "../../../runtime/linalg/rsvd.ts";
import { createTrainer } from "../../../runtime/trainer.ts";
import { linear } from "../../../dsl/nn/layers.ts";
import { mean, square, sub } from "../../../mod.ts";
import type { Tensor } from "../../../dsl/trace.ts";
import { randomArray } from "../../helpers/models.ts";

/** U·diag(σ)·Vᵀ with a decaying spectrum σᵢ = 0.8ⁱ and random orthonormal factors. */
function decaying(m: number, n: number, seed: number): HostArray {
  let x = seed;
  const rand = () => ((x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 2 ** 32) - 0.5;
  const g = Array.from({ length: m * n }, rand);
  const f = svd(g, m, n);
  const data = new Float32Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let c = 0; c < f.k; c++) s += f.u[i * f.k + c] * 0.8 ** c * f.v[j * f.k + c];
      data[i * n + j] = s;
    }
  }
  return { shape: [m, n], dtype: "f32", data };
}

Deno.test("randomized SVD: top-k values and subspaces match the exact SVD; seeded", async () => {
  const w = decaying(60, 40, 7);
  const exact = svd(w.data, 60, 40);
  const k = 8;
  const approx = await randomizedSvd(w, k, { niter: 4, seed: 3 });
  for (let c = 0; c < k; c++) {
    assert.ok(
      Math.abs(approx.s[c] - exact.s[c]) <= 1e-4 * exact.s[0],
      `σ${c}: ${approx.s[c]} vs ${exact.s[c]}`,
    );
    // Same singular vectors up to sign: |⟨u, û⟩| ≈ 1.
    let dot = 0;
    for (let i = 0; i < 60; i++) dot += approx.u[i * k + c] * exact.u[i * exact.k + c];
    assert.ok(Math.abs(Math.abs(dot) - 1) < 1e-3, `u${c}: ${dot}`);
  }
  assert.ok(
    orthogonalityError(approx.u, 60, k) < 1e-5 && orthogonalityError(approx.v, 40, k) < 1e-5,
  );
  const again = await randomizedSvd(w, k, { niter: 4, seed: 3 });
  assert.deepEqual(again.s, approx.s);
  await assert.rejects(randomizedSvd(w, 41), /1 ≤ k ≤ min\(m, n\)/);
});

Deno.test("randomized SVD in the trainer: HD-PiSSA slices agree with the exact SVD's", async () => {
  const w = decaying(24, 20, 11);
  const loss = (p: Record<string, Tensor>, b: { x: Tensor; y: Tensor }) =>
    mean(square(sub(linear(b.x, p.w), b.y)));
  const batch = [0, 1].map((k) => ({
    x: randomArray([4, 20], k + 1),
    y: randomArray([4, 24], k + 7),
  }));
  const run = async (method: "exact" | "randomized") => {
    const t = await createTrainer({
      loss,
      params: { w },
      adapt: ["w"],
      method: "hdpissa",
      devices: 2,
      rank: 2,
      optimizer: { lr: 0.01 },
      svd: { method, niter: 6, seed: 1 },
    });
    await t.step(batch);
    return (await t.params()).w;
  };
  const [a, b] = [await run("exact"), await run("randomized")];
  a.data.forEach((v, i) =>
    assert.ok(Math.abs(v - b.data[i]) < 1e-4, `element ${i}: ${v} vs ${b.data[i]}`)
  );
  await assert.rejects(
    createTrainer({
      loss,
      params: { w },
      adapt: ["w"],
      method: "pissa",
      devices: 1,
      rank: 1,
      optimizer: { lr: 1 },
      svd: { method: "lanczos" as "exact" },
    }),
    /svd\.method: must be "auto", "exact" or "randomized"/,
  );
});
