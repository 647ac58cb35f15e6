/**
 * Mode "devices" (K WebGPU devices in one process, payloads staged through the host) against mode
 * "virtual" on the same problem, for every method; snapshots move between modes; the replica
 * hash check fails loudly on a difference.
 */

import assert from "node:assert/strict";
import { checkReplicaDigests, ReplicaDivergenceError } from "../../../runtime/dist/replicated.ts";
import { createTrainer, type Method } from "../../../runtime/trainer.ts";
import { METHODS } from "../../../dsl/adapters/methods/registry.ts";
import { distProblem, maxDiff } from "../../helpers/dist_problem.ts";

for (const method of Object.keys(METHODS) as Method[]) {
  Deno.test(`devices: ${method} on 3 devices equals mode "virtual"; bytes = cost model; replicas verified`, async () => {
    const K = 3;
    const { config, batches } = distProblem({ method, devices: K, rank: 2, steps: 3 });
    const virtual = await createTrainer(config);
    const devices = await createTrainer({ ...config, mode: "devices", verifyReplicasEvery: 1 });
    assert.equal(devices.size, 1);
    for (const b of batches) {
      const [lv, ld] = [(await virtual.step(b)).loss, (await devices.step(b)).loss];
      assert.equal(ld.length, K);
      assert.ok(maxDiff(lv, ld) < 1e-5, `losses ${lv} vs ${ld}`);
    }
    const [pv, pd] = [await virtual.params(), await devices.params()];
    for (const name of Object.keys(pv)) {
      const d = maxDiff(pv[name].data, pd[name].data);
      // Not bitwise: the modes sum the shards' gradients in different orders, and Adam scales
      // those ULP differences up where a gradient is small (8e-6 measured on an H200).
      assert.ok(d < 2e-5, `${method} ${name}: |W_devices − W_virtual| = ${d}`);
    }
    const [sv, sd] = [virtual.stats(), devices.stats()];
    assert.ok(Math.abs(sd.bytesCommunicated - sv.bytesCommunicated) <= 1e-9 * sv.bytesCommunicated);
    assert.equal(sd.replicas, K);
    assert.ok(sd.kernelsPerStep > 0 && sd.computeSeconds! > 0);
    const [av, ad] = [await virtual.adapters(), await devices.adapters()];
    assert.equal(av === undefined, ad === undefined);
    if (av) {
      assert.ok(
        maxDiff(av!.trained.a[config.adapt[0]].data, ad!.trained.a[config.adapt[0]].data) < 1e-5,
      );
    }
    await assert.rejects(devices.step(batches[0].slice(1)), /expected 3 shard batches/);
  });
}

Deno.test("devices: a snapshot taken in one mode resumes in the other and continues alike", async () => {
  const K = 2;
  const { config, batches } = distProblem({ method: "hdpissa", devices: K, rank: 2, steps: 4 });
  const devices = await createTrainer({ ...config, mode: "devices" });
  for (const b of batches.slice(0, 2)) await devices.step(b);
  const snap = await devices.snapshot();
  assert.deepEqual(snap.tensors[`state/mA/${config.adapt[0]}`].shape.slice(0, 1), [K]);
  const virtual = await createTrainer(config);
  await virtual.restore(snap);
  for (const b of batches.slice(2)) await virtual.step(b), await devices.step(b);
  const back = await createTrainer({ ...config, mode: "devices" });
  await back.restore(await virtual.snapshot());
  const [pv, pd, pb] = [await virtual.params(), await devices.params(), await back.params()];
  for (const name of config.adapt) {
    assert.ok(maxDiff(pv[name].data, pd[name].data) < 2e-5, name);
    assert.deepEqual(pb[name].data, pv[name].data, `${name} restored into mode "devices"`);
  }
});

Deno.test("devices: replicas whose W differs stop training with the replicas' hashes", () => {
  checkReplicaDigests(["ab12", "ab12", "ab12"], 5);
  assert.throws(
    () => checkReplicaDigests(["ab12", "ab12", "ff00"], 7),
    (e: unknown) =>
      e instanceof ReplicaDivergenceError &&
      /diverged after step 7: SHA-256 prefixes by replica 0=ab12, 1=ab12, 2=ff00/.test(e.message),
  );
});

Deno.test("devices: restore projects on the snapshot's slices, not on this process's own SVD", async () => {
  // A singular pair's sign is arbitrary: flip it in a snapshot (an equally valid SVD) and both
  // modes must continue alike from it.
  const K = 2, r = 2;
  const { config, batches } = distProblem({ method: "hdpissa", devices: K, rank: r, steps: 3 });
  const source = await createTrainer(config);
  await source.step(batches[0]);
  const snap = await source.snapshot();
  const name = config.adapt[0];
  const a = snap.tensors[`slices/aCat/${name}`], b = snap.tensors[`slices/bCat/${name}`];
  const [kr, n] = a.shape, m = b.shape[0];
  for (let j = 0; j < n; j++) a.data[j] = -a.data[j]; // row 0 of A_cat
  for (let i = 0; i < m; i++) b.data[i * kr] = -b.data[i * kr]; // column 0 of B_cat
  const virtual = await createTrainer(config),
    devices = await createTrainer({ ...config, mode: "devices" });
  await virtual.restore(snap), await devices.restore(snap);
  for (const batch of batches.slice(1)) await virtual.step(batch), await devices.step(batch);
  const [pv, pd] = [await virtual.params(), await devices.params()];
  for (const k of config.adapt) assert.ok(maxDiff(pv[k].data, pd[k].data) < 2e-5, k);
});

Deno.test("devices: compute and communication seconds are measured, disjoint, within the step's wall time", async () => {
  const K = 2;
  const { config, batches } = distProblem({ method: "hdpissa", devices: K, rank: 2, steps: 3 });
  const devices = await createTrainer({ ...config, mode: "devices" });
  let wall = 0;
  for (const b of batches) {
    const t0 = performance.now();
    await devices.step(b);
    wall += (performance.now() - t0) / 1000;
  }
  const s = devices.stats();
  assert.ok(s.computeSeconds! > 0 && s.communicationSeconds! > 0, JSON.stringify(s));
  // Per-step means: the phases run one after another, so their sum fits in the mean step.
  assert.ok(
    s.computeSeconds! + s.communicationSeconds! <= wall / batches.length,
    JSON.stringify(s),
  );
  assert.ok(!("overlapSeconds" in s));
  await devices.close();
});
