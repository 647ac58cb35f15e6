import assert from "node:assert/strict";
import { interpret } from "../../dsl/interpret.ts";
import type { HostArray } from "../../dsl/host_array.ts";
import * as lax from "../../dsl/lax.ts";
import {
  foldIn,
  kaimingUniform,
  normal,
  prngKey,
  randomBits,
  splitKey,
  threefry2x32,
  uniform,
} from "../../dsl/random.ts";
import type { Tensor } from "../../dsl/trace.ts";
import { jit } from "../../runtime/jit.ts";
import { assertClose } from "../helpers/arrays.ts";

const hex = (a: HostArray) => Array.from(a.data, (x) => (x >>> 0).toString(16).padStart(8, "0"));

Deno.test("random: Threefry-2x32-20 matches the Random123 known-answer vectors", () => {
  const kat: [number[], string[]][] = [
    [[0, 0, 0, 0], ["6b200159", "99ba4efe"]],
    [[-1, -1, -1, -1], ["1cb996fc", "bb002be7"]],
    [[0x13198a2e, 0x03707344, 0x243f6a88, 0x85a308d3 | 0], ["c4923a9c", "483df7a0"]],
  ];
  for (const [[k0, k1, c0, c1], want] of kat) {
    const out = interpret(() => {
      const s = (v: number) => lax.scalar(v | 0, "i32");
      return threefry2x32(s(k0), s(k1), s(c0), s(c1));
    }) as HostArray[];
    assert.deepEqual(out.flatMap(hex), want);
  }
});

const streams = (key: Tensor) => ({
  bits: randomBits(key, [3, 37]),
  uniform: uniform(key, [101], -2, 3),
  normal: normal(foldIn(key, 7), [64]),
  keys: splitKey(key, 5),
});

Deno.test("random: streams are identical on the CPU reference and on WebGPU", async () => {
  for (const seed of [0, 1, 123456789, -5]) {
    const key = prngKey(seed);
    const cpu = interpret(streams, key) as Record<string, HostArray>;
    const gpu = await jit(streams)(key) as Record<string, HostArray>;
    assert.deepEqual(gpu.bits.data, cpu.bits.data);
    assert.deepEqual(gpu.keys.data, cpu.keys.data);
    assert.deepEqual(gpu.uniform.data, cpu.uniform.data); // 24-bit uniforms: no rounding anywhere
    // Box–Muller goes through log/cos, whose last bits differ between the CPU and WGSL.
    assertClose(gpu.normal, cpu.normal, { rtol: 1e-5, atol: 1e-5 });
  }
});

Deno.test("random: distributions have the right moments and ranges; keys split apart", () => {
  const key = prngKey(42);
  const u = interpret((k: Tensor) => uniform(k, [20000], -1, 1), key) as HostArray;
  const z = interpret((k: Tensor) => normal(k, [20000], 2), key) as HostArray;
  const w = interpret((k: Tensor) => kaimingUniform(k, [64, 100], 100), key) as HostArray;
  const mean = (a: HostArray) => Array.from(a.data).reduce((s, v) => s + v, 0) / a.data.length;
  const variance = (a: HostArray) => {
    const m = mean(a);
    return Array.from(a.data).reduce((s, v) => s + (v - m) ** 2, 0) / a.data.length;
  };
  assert.ok(Math.abs(mean(u)) < 0.02 && Math.abs(variance(u) - 1 / 3) < 0.02, "uniform moments");
  assert.ok(u.data.every((v) => v >= -1 && v < 1));
  assert.ok(Math.abs(mean(z)) < 0.05 && Math.abs(variance(z) - 4) < 0.15, "normal moments");
  // Kaiming uniform with fan-in 100: U(−0.1, 0.1), so the bound is reached and the variance is
  // 0.1²/3 (all zeros or a narrower range would pass the bound alone).
  assert.ok(w.data.every((v) => Math.abs(v) <= 0.1));
  assert.ok(Math.max(...Array.from(w.data, Math.abs)) > 0.099, "kaiming range");
  assert.ok(
    Math.abs(mean(w)) < 0.005 && Math.abs(variance(w) - 0.01 / 3) < 3e-4,
    "kaiming moments",
  );
  const keys = interpret((k: Tensor) => splitKey(k, 4), key) as HostArray;
  assert.equal(
    new Set(Array.from({ length: 4 }, (_, i) => `${keys.data[2 * i]},${keys.data[2 * i + 1]}`))
      .size,
    4,
  );
  const x = interpret((k: Tensor) => uniform(k, [8]), prngKey(1)) as HostArray;
  const y = interpret((k: Tensor) => uniform(k, [8]), prngKey(2)) as HostArray;
  assert.notDeepEqual(x.data, y.data);
  // A stream's prefix does not depend on how many values are drawn.
  const long = interpret((k: Tensor) => randomBits(k, [10]), prngKey(3)) as HostArray;
  const short = interpret((k: Tensor) => randomBits(k, [4]), prngKey(3)) as HostArray;
  assert.deepEqual(long.data.subarray(0, 4), short.data);
});
