/**
 * f16 arithmetic against an independent implementation: numpy's float16 ops (each computes in
 * float32 and rounds its result to half), on operands with overflowing products and subnormal
 * results (fixtures/make_numpy_f16.py, committed as numpy_f16.json). The CPU reference must agree
 * bit for bit; the device too, but for `exp` and `tanh`, whose f32 results Vulkan does not round
 * correctly: there one half ULP, now and then.
 */

import * as dsl from "../../mod.ts";
import { type HostArray, interpret, jit, type Tensor } from "../../mod.ts";
import assert from "node:assert/strict";

interface Fixture {
  numpy: string;
  x: number[];
  y: number[];
  results: Record<string, number[]>;
}

const fixture: Fixture = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/numpy_f16.json", import.meta.url)),
);

function fromBits(bits: number[]): HostArray {
  const data = new Float16Array(new Uint16Array(bits).buffer);
  return { shape: [bits.length], dtype: "f16", data };
}

const ops = (x: Tensor, y: Tensor): Record<string, Tensor> => {
  const positive = dsl.add(dsl.abs(x), 0.01);
  return {
    add: dsl.add(x, y),
    sub: dsl.sub(x, y),
    mul: dsl.mul(x, y),
    div: dsl.div(x, y),
    maximum: dsl.maximum(x, y),
    sqrt: dsl.sqrt(positive),
    log: dsl.log(positive),
    exp: dsl.exp(x),
    tanh: dsl.tanh(x),
    chain: dsl.div(dsl.add(dsl.mul(x, y), x), dsl.add(dsl.mul(y, y), 1)),
  };
};

/** Half ULPs between two halves (NaN equals NaN; an infinity is far from any finite value). */
function ulps(a: number, b: number): number {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && Number.isNaN(b) ? 0 : Infinity;
  if (a === b) return 0;
  if (!Number.isFinite(a) || !Number.isFinite(b)) return Infinity;
  const ulp = Math.max(
    2 ** -24,
    2 ** (Math.floor(Math.log2(Math.max(Math.abs(a), Math.abs(b)))) - 10),
  );
  return Math.abs(a - b) / ulp;
}

Deno.test(`f16 ops equal numpy's float16 arithmetic (reference bit for bit, device within a half ULP)`, async () => {
  const x = fromBits(fixture.x), y = fromBits(fixture.y);
  const reference = interpret(ops, x, y) as Record<string, HostArray>;
  const device = await jit(ops)(x, y) as Record<string, HostArray>;
  const summary: string[] = [];
  for (const [name, bits] of Object.entries(fixture.results)) {
    const want = fromBits(bits).data;
    let refOff = 0, devOff = 0, devWorst = 0;
    want.forEach((w, i) => {
      if (ulps(reference[name].data[i], w) > 0) refOff++;
      const u = ulps(device[name].data[i], w);
      if (u > 0) devOff++;
      devWorst = Math.max(devWorst, u);
    });
    summary.push(`${name}: ${refOff} / ${devOff}`);
    assert.equal(
      refOff,
      0,
      `${name}: the reference differs from numpy ${fixture.numpy} in ${refOff}`,
    );
    const transcendental = name === "exp" || name === "tanh";
    assert.ok(
      transcendental ? devWorst <= 1 && devOff <= want.length / 50 : devOff === 0,
      `${name}: the device differs from numpy in ${devOff} values, by up to ${devWorst} half ULPs`,
    );
  }
  // The operands reach what the fixture meant to: infinities and subnormal results.
  const all = Object.values(fixture.results).flatMap((b) => Array.from(fromBits(b).data));
  assert.ok(all.some((v) => !Number.isFinite(v)), summary.join(", "));
  assert.ok(all.some((v) => v !== 0 && Math.abs(v) < 2 ** -14), "a subnormal result");
});
