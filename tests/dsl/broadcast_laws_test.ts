/** numpy broadcasting laws, checked against an independent index-mapping implementation. */

import assert from "node:assert/strict";
import {
  add,
  array,
  broadcastTo,
  type HostArray,
  interpret,
  maximum,
  mul,
  sub,
  where,
} from "../../mod.ts";
import type { Tensor } from "../../mod.ts";
import { arbArray, arbBroadcastPair } from "../helpers/arrays.ts";
import { checkProperty, fc } from "../helpers/property.ts";

/** numpy's result shape, written independently of dsl/shape.ts. */
function numpyShape(a: number[], b: number[]): number[] {
  const n = Math.max(a.length, b.length);
  const pa = [...Array(n - a.length).fill(1), ...a];
  const pb = [...Array(n - b.length).fill(1), ...b];
  return pa.map((d, i) => (d === 1 ? pb[i] : d));
}

/** Reads x at a multi-index of the broadcast result (right-aligned, size-1 dims repeat). */
function readBroadcast(x: HostArray, index: number[]): number {
  let flat = 0;
  const off = index.length - x.shape.length;
  for (let i = 0; i < x.shape.length; i++) {
    const j = x.shape[i] === 1 ? 0 : index[off + i];
    flat = flat * x.shape[i] + j;
  }
  return x.data[flat];
}

function naiveBinary(a: HostArray, b: HostArray, f: (x: number, y: number) => number): number[] {
  const shape = numpyShape(a.shape, b.shape);
  const n = shape.reduce((p, d) => p * d, 1);
  const out: number[] = [];
  for (let flat = 0; flat < n; flat++) {
    const index: number[] = [];
    let rest = flat;
    for (let i = shape.length - 1; i >= 0; i--) {
      index.unshift(rest % shape[i]);
      rest = Math.floor(rest / shape[i]);
    }
    out.push(Math.fround(f(readBroadcast(a, index), readBroadcast(b, index))));
  }
  return out;
}

const pairWithData = arbBroadcastPair(4).chain(([sa, sb]) => fc.tuple(arbArray(sa), arbArray(sb)));

Deno.test("binary ops broadcast exactly like numpy (shape and every element)", () => {
  const cases: [string, (a: Tensor, b: Tensor) => Tensor, (x: number, y: number) => number][] = [
    ["add", add, (x, y) => x + y],
    ["sub", sub, (x, y) => x - y],
    ["mul", mul, (x, y) => x * y],
    ["maximum", maximum, Math.max],
  ];
  checkProperty(
    fc.property(pairWithData, fc.constantFrom(...cases), ([a, b], [, op, ref]) => {
      const out = interpret(op, a, b) as HostArray;
      assert.deepEqual(out.shape, numpyShape(a.shape, b.shape));
      assert.deepEqual(Array.from(out.data), naiveBinary(a, b, ref));
    }),
    { numRuns: 100 },
  );
});

Deno.test("broadcasting is symmetric: op(a, b) = op(b, a) for commutative ops, bitwise", () => {
  checkProperty(
    fc.property(pairWithData, ([a, b]) => {
      const [s1, s2] = interpret((x: Tensor, y: Tensor) => [add(x, y), add(y, x)], a, b);
      const [m1, m2] = interpret((x: Tensor, y: Tensor) => [mul(x, y), mul(y, x)], a, b);
      assert.deepEqual(s1, s2);
      assert.deepEqual(m1, m2);
    }),
    { numRuns: 60 },
  );
});

Deno.test("op(a, b) = op(broadcastTo(a, s), broadcastTo(b, s)) for the broadcast shape s", () => {
  checkProperty(
    fc.property(pairWithData, ([a, b]) => {
      const s = numpyShape(a.shape, b.shape);
      const [direct, explicit] = interpret(
        (x: Tensor, y: Tensor) => [sub(x, y), sub(broadcastTo(x, s), broadcastTo(y, s))],
        a,
        b,
      );
      assert.deepEqual(direct, explicit);
    }),
    { numRuns: 60 },
  );
});

Deno.test("where broadcasts condition and both branches together", () => {
  const out = interpret(
    (c: Tensor, x: Tensor, y: Tensor) => where(c, x, y),
    array([[true], [false]]),
    array([1, 2, 3]),
    array(-1),
  ) as HostArray;
  assert.deepEqual(out.shape, [2, 3]);
  assert.deepEqual(Array.from(out.data), [1, 2, 3, -1, -1, -1]);
});

Deno.test("scalars broadcast against any shape and keep the tensor's dtype", () => {
  const ints = array([[1, 2], [3, 4]], { dtype: "i32" });
  const out = interpret((x: Tensor) => [add(x, 1), mul(2, x), add(x, 0.5)], ints) as HostArray[];
  assert.equal(out[0].dtype, "i32");
  assert.deepEqual(Array.from(out[0].data), [2, 3, 4, 5]);
  assert.equal(out[1].dtype, "i32");
  assert.equal(out[2].dtype, "f32");
  assert.deepEqual(Array.from(out[2].data), [1.5, 2.5, 3.5, 4.5]);
});
