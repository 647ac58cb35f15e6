import assert from "node:assert/strict";
import { bootstrapAccuracy, bootstrapDifference } from "../../runtime/train/bootstrap.ts";
import { Rng } from "../../runtime/data/rng.ts";

/** `n` items, each correct with probability `p` (seeded). */
const items = (n: number, p: number, seed: number) => {
  const rng = new Rng(seed, 3);
  return Array.from({ length: n }, () => rng.next() < p);
};

Deno.test("bootstrap: seeded, interval around the pooled accuracy", () => {
  const runs = [items(64, 0.6, 1), items(64, 0.7, 2), items(64, 0.5, 3)];
  const a = bootstrapAccuracy(runs, { seed: 5 });
  assert.deepEqual(bootstrapAccuracy(runs, { seed: 5 }), a);
  assert.notDeepEqual(bootstrapAccuracy(runs, { seed: 6 }), a);
  const correct = runs.flat().filter(Boolean).length;
  assert.equal(a.mean, correct / 192);
  assert.ok(a.lo <= a.mean && a.mean <= a.hi, JSON.stringify(a));
  assert.deepEqual(bootstrapAccuracy([[true, true], [true]]), { mean: 1, lo: 1, hi: 1 });
  assert.deepEqual(bootstrapAccuracy([[false], [false, false]]), { mean: 0, lo: 0, hi: 0 });
});

Deno.test("bootstrap: one seed gives the binomial interval's width", () => {
  // 400 items at p = 0.5: normal approximation ±1.96·√(0.25/400) = ±0.049.
  const a = bootstrapAccuracy([items(400, 0.5, 9)], { seed: 1 });
  const half = (a.hi - a.lo) / 2;
  assert.ok(half > 0.04 && half < 0.06, `half width ${half}`);
});

Deno.test("bootstrap: seeds are resampled, so a seed that failed widens the interval", () => {
  const ok = Array(50).fill(true);
  const failed = Array(50).fill(false);
  const a = bootstrapAccuracy([ok, failed], { seed: 2 });
  assert.equal(a.mean, 0.5);
  // Both draws of the failed seed (or of the good one) happen in 1 replicate in 4.
  assert.equal(a.lo, 0);
  assert.equal(a.hi, 1);
});

Deno.test("bootstrap: difference of two methods", () => {
  const good = [items(64, 0.9, 1), items(64, 0.9, 2), items(64, 0.9, 3)];
  const bad = [items(64, 0.3, 4), items(64, 0.3, 5), items(64, 0.3, 6)];
  const d = bootstrapDifference(good, bad, { seed: 3 });
  assert.ok(d.lo > 0.4 && d.hi < 0.8, JSON.stringify(d));
  const same = bootstrapDifference(good, good, { seed: 3 });
  assert.equal(same.mean, 0);
  assert.ok(same.lo < 0 && same.hi > 0, JSON.stringify(same));
  assert.throws(() => bootstrapAccuracy([]), /at least one seed/);
  assert.throws(() => bootstrapDifference(good, [[]]), /at least one seed/);
});
