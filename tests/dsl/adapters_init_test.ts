import assert from "node:assert/strict";
import { type HostArray, transposed } from "../../dsl/host_array.ts";
import { deviceSlice, hdpissaInit, loraInit, pissaInit } from "../../dsl/adapters/init.ts";
import { svdOf } from "../../dsl/linalg/svd.ts";

function matrix(m: number, n: number, seed: number): HostArray {
  let x = seed;
  const data = Float32Array.from({ length: m * n }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 32 - 0.5;
  });
  return { shape: [m, n], dtype: "f32", data };
}

/** (X·Y)[i, j] for row-major X [m, k], Y [k, n]. */
const product = (x: HostArray, y: HostArray) => {
  const [m, k] = x.shape, n = y.shape[1];
  return Array.from({ length: m * n }, (_, idx) => {
    const i = Math.floor(idx / n), j = idx % n;
    let s = 0;
    for (let c = 0; c < k; c++) s += x.data[i * k + c] * y.data[c * n + j];
    return s;
  });
};

Deno.test("adapters: PiSSA — W_res + s·B·A = W, B·A is the scaled top-r part, A's rows orthogonal", () => {
  const w = matrix(9, 6, 3);
  for (const [r, alpha] of [[2, 2], [3, 12]]) {
    const init = pissaInit(w, r, alpha);
    const ba = product(init.b, init.a);
    init.residual.data.forEach((v, i) =>
      assert.ok(Math.abs(v + init.scale * ba[i] - w.data[i]) < 1e-6)
    );
    // s·B·A is the best rank-r approximation: ‖W − s·BA‖ = tail of the spectrum.
    const f = svdOf(w);
    const tail = Math.sqrt(Array.from(f.s).slice(r).reduce((a, v) => a + v * v, 0));
    const err = Math.sqrt(ba.reduce((a, v, i) => a + (w.data[i] - init.scale * v) ** 2, 0));
    assert.ok(Math.abs(err - tail) < 1e-5, `${err} vs ${tail}`);
    // A·Aᵀ = diag(σ/s).
    for (let p = 0; p < r; p++) {
      for (let q = 0; q < r; q++) {
        let dot = 0;
        for (let j = 0; j < 6; j++) dot += init.a.data[p * 6 + j] * init.a.data[q * 6 + j];
        assert.ok(Math.abs(dot - (p === q ? f.s[p] / init.scale : 0)) < 1e-5);
      }
    }
  }
  assert.throws(() => pissaInit(w, 0), /rank must be a positive integer/);
  assert.throws(() => pissaInit(w, 7), /rank 7 exceeds min\(m, n\) = 6/);
  assert.throws(() => pissaInit(w, 2, 0), /alpha must be > 0/);
});

Deno.test("adapters: HD-PiSSA — disjoint slices of one basis; Σ_j B_j·A_j is the top-K·r part; zero padding", () => {
  const w = matrix(7, 5, 11);
  const f = svdOf(w);
  const init = hdpissaInit(w, 2, 3, f); // K·r = 6 > min(m, n) = 5: one padded slot
  assert.equal(init.active, 5);
  assert.deepEqual(init.aCat.shape, [6, 5]);
  assert.deepEqual(init.bCat.shape, [7, 6]);
  // With every component present, B_cat·A_cat = W.
  product(init.bCat, init.aCat).forEach((v, i) => assert.ok(Math.abs(v - w.data[i]) < 1e-5));
  const last = deviceSlice(init, 2, 2);
  assert.ok(Array.from(last.a.data.subarray(5)).every((v) => v === 0), "padded row of A");
  for (let i = 0; i < 7; i++) assert.equal(last.b.data[i * 2 + 1], 0, "padded column of B");
  // Slices are disjoint: device k's slot j holds component c = 2k + j alone, i.e. the rank-1
  // term B_k[:, j]·A_k[j, :] is σ_c·u_c·v_cᵀ (device 0 has σ₀, σ₁; device 1 σ₂, σ₃; device 2 σ₄).
  for (let k = 0; k < 3; k++) {
    const slice = deviceSlice(init, k, 2);
    for (let j = 0; j < 2 && 2 * k + j < 5; j++) {
      const c = 2 * k + j;
      let err = 0;
      for (let i = 0; i < 7; i++) {
        for (let l = 0; l < 5; l++) {
          const got = slice.b.data[i * 2 + j] * slice.a.data[j * 5 + l];
          err = Math.max(err, Math.abs(got - f.s[c] * f.u[i * f.k + c] * f.v[l * f.k + c]));
        }
      }
      assert.ok(err < 1e-5, `device ${k} slot ${j}: ${err} from σ${c}·u${c}·v${c}ᵀ`);
    }
  }
  assert.throws(() => hdpissaInit(w, 2, 0), /devices must be a positive integer/);
  assert.throws(() => deviceSlice(init, 3, 2), /device 3 has no slice/);
  assert.throws(
    () => hdpissaInit({ shape: [3], dtype: "f32", data: new Float32Array(3) }, 1, 1),
    /2-D f32 matrices/,
  );
});

Deno.test("adapters: LoRA — B = 0 and A uniform within ±1/√n, seeded", () => {
  const w = matrix(6, 16, 2);
  const a = loraInit(w, 3, 7);
  assert.ok(a.b.data.every((v) => v === 0));
  assert.deepEqual(a.a.shape, [3, 16]);
  assert.ok(a.a.data.every((v) => Math.abs(v) <= 0.25) && new Set(a.a.data).size > 40);
  assert.deepEqual(loraInit(w, 3, 7).a, a.a);
  assert.notDeepEqual(loraInit(w, 3, 8).a.data, a.a.data);
});

Deno.test("adapters: LoRA on a weight stored [in, out] — the same draw on the input side, A = 0", () => {
  // Stored S = Wᵀ [in, out]: B = lora_Aᵀ, where lora_A is what W [out, in] would draw.
  const s = matrix(16, 6, 2);
  const stored = loraInit(s, 3, 7, true);
  assert.deepEqual(stored.b, transposed(loraInit(transposed(s), 3, 7).a));
  assert.deepEqual(stored.a.shape, [3, 6]);
  assert.ok(stored.a.data.every((v) => v === 0));
});
