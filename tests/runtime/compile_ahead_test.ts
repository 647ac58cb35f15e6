/**
 * Compiling new pipelines ahead on two threads (runtime/compile_ahead.ts): the cost split is a
 * balanced partition, the placeholder bindings read off a kernel's WGSL are the ones it binds, and
 * a program whose pipelines a worker compiled ahead computes what the same program compiled at
 * its first dispatch does, bit for bit (the same kernels; only where Mesa compiled them differs).
 */

import {
  add,
  crossEntropy,
  gelu,
  gpu,
  type HostArray,
  jit,
  layerNorm,
  matmul,
  type Tensor,
  valueAndGrad,
} from "../../mod.ts";
import {
  bindingsOf,
  compileInWorker,
  PARALLEL_COMPILE_MIN_CHARS,
  splitByCost,
} from "../../runtime/compile_ahead.ts";
import assert from "node:assert/strict";
import { checkProperty, fc } from "../helpers/property.ts";
import { assertTreeMatches, seeded } from "./jit_helpers.ts";

const chars = (texts: readonly string[]) => texts.reduce((n, t) => n + t.length, 0);

Deno.test("splitByCost partitions the texts, its sides within one text of even", () => {
  checkProperty(
    fc.property(
      fc.array(fc.string({ maxLength: 60 }), { maxLength: 30 }),
      fc.nat({ max: 100 }),
      (texts, handicap) => {
        const [mine, theirs] = splitByCost(texts, handicap);
        assert.deepEqual([...mine, ...theirs].sort(), [...texts].sort());
        // Longest first to the lighter side: the sides end at most one text apart.
        const longest = Math.max(0, ...texts.map((t) => t.length));
        const gap = Math.abs(chars(mine) - (chars(theirs) + handicap));
        assert.ok(gap <= Math.max(longest, handicap), `gap ${gap}, longest ${longest}`);
      },
    ),
  );
});

// A loss whose gradient program has enough WGSL to be compiled ahead.
function mlpLoss(p: Record<"w1" | "b1" | "w2" | "b2", Tensor>, x: Tensor, y: Tensor): Tensor {
  const h = gelu(add(matmul(x, p.w1), p.b1));
  const logits = add(matmul(layerNorm(h), p.w2), p.b2);
  return crossEntropy(logits, y);
}

const params = {
  w1: seeded([24, 64], 41, -0.5, 0.5),
  b1: seeded([64], 42, -0.1, 0.1),
  w2: seeded([64, 40], 43, -0.5, 0.5),
  b2: seeded([40], 44, -0.1, 0.1),
};
const x = seeded([32, 24], 45, -2, 2);
const y: HostArray = {
  shape: [32],
  dtype: "i32",
  data: Int32Array.from({ length: 32 }, (_, i) => (i * 7) % 40),
};

Deno.test("bindingsOf reads each kernel's storage bindings and its shape uniform", async () => {
  const device = await gpu({ compileAhead: false });
  try {
    const program = await jit(valueAndGrad(mlpLoss), { device }).program(params, x, y);
    for (const k of program.kernels) {
      const expected = k.slots.map((_, binding) => ({ binding, uniform: false }));
      if (k.params) expected.push({ binding: k.slots.length, uniform: true });
      assert.deepEqual(bindingsOf(k.wgsl), expected, k.name);
    }
  } finally {
    device.destroy();
  }
});

Deno.test("a program compiled ahead by a worker computes what one compiled at first dispatch does", async () => {
  const ahead = await gpu({ compileAhead: true });
  const atDispatch = await gpu({ compileAhead: false });
  try {
    const step = valueAndGrad(mlpLoss);
    const program = await jit(step, { device: ahead }).program(params, x, y);
    const texts = [...new Set(program.kernels.map((k) => k.wgsl))];
    assert.ok(chars(texts) >= PARALLEL_COMPILE_MIN_CHARS, `only ${chars(texts)} characters`);
    const got = await jit(step, { device: ahead })(params, x, y);
    const want = await jit(step, { device: atDispatch })(params, x, y);
    assertTreeMatches(got, want, "exact", "compiled ahead vs at first dispatch");
    // Both threads compiled a share; each text once.
    const { here, worker } = ahead.compiledAhead;
    assert.ok(here > 0 && worker > 0, `here ${here}, worker ${worker}`);
    assert.equal(here + worker, texts.length);
    assert.deepEqual(atDispatch.compiledAhead, { here: 0, worker: 0 });
    // A second program of the same texts compiles nothing again.
    await jit(step, { device: ahead })(params, x, y);
    assert.equal(ahead.compiledAhead.here + ahead.compiledAhead.worker, texts.length);
  } finally {
    ahead.destroy();
    atDispatch.destroy();
  }
});

Deno.test("a worker that cannot compile resolves to 0 compiled, and the caller goes on", async () => {
  const bad = await compileInWorker({ texts: ["not wgsl"], features: [], limits: {} });
  assert.equal(bad, 0);
  const noDevice = await compileInWorker({
    texts: ["@compute @workgroup_size(1) fn main() {}"],
    features: ["no-such-feature"],
    limits: {},
  });
  assert.equal(noDevice, 0);
  const ok = await compileInWorker({
    texts: ["@compute @workgroup_size(1) fn main() {}"],
    features: [],
    limits: {},
  });
  assert.equal(ok, 1);
});
