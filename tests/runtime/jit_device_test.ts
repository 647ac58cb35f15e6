/**
 * Device-resident arrays: `jit(f).onDevice` results (DeviceArrays, pytree-shaped) fed back into
 * jitted calls, `toDevice` / `toHost` / `DeviceArray.toHost` round trips of every dtype, and
 * donation (`jit(f, { donate })`): a donated DeviceArray is consumed (`.deleted`, unusable), its
 * buffer may be updated in place, and chains of donated calls (an SGD / momentum / Adam loop whose
 * state never leaves the device) give the reference's values at every step.
 *
 * Values are compared with `interpret` of the same function; chained steps compare the device
 * state with the reference state iterated on the host (tolerance `STEP`: the per-step ops are
 * mul/sub/sqrt/div of f32, a few ULPs per step).
 */

import * as dsl from "../../mod.ts";
import {
  type DeviceArray,
  grad,
  type HostArray,
  interpret,
  isDeviceArray,
  jit,
  type Tensor,
  toDevice,
  toHost,
} from "../../mod.ts";
import { arbF32, assertTreeMatches, EXACT, fc, leaves, seeded, type Tol } from "./jit_helpers.ts";
import { checkAsyncProperty } from "./jit_helpers.ts";

const STEP: Tol = { rtol: 1e-5, atol: 1e-6 };

function assertThrows(fn: () => unknown, pattern: RegExp, label: string): void {
  try {
    fn();
  } catch (e) {
    if (!pattern.test((e as Error).message)) {
      throw new Error(`${label}: wrong error ${(e as Error).message}`);
    }
    return;
  }
  throw new Error(`${label}: did not throw`);
}

async function assertRejects(p: Promise<unknown>, pattern: RegExp, label: string) {
  try {
    await p;
  } catch (e) {
    if (!pattern.test((e as Error).message)) {
      throw new Error(`${label}: wrong error ${(e as Error).message}`);
    }
    return;
  }
  throw new Error(`${label}: did not reject`);
}

const deviceLeaves = (tree: unknown) => dsl.flattenTree(tree, isDeviceArray)[0];

Deno.test("onDevice returns DeviceArrays in the result's pytree; toHost reads them back", async () => {
  const f = (x: Tensor, k: Tensor) => ({
    y: dsl.tanh(x),
    stats: [dsl.sum(x, -1), dsl.argmax(x, -1)],
    mask: dsl.less(x, 0),
    k2: dsl.mul(k, k),
  });
  const x = seeded([3, 5], 1),
    k = { shape: [4], dtype: "i32" as const, data: Int32Array.from([1, -2, 3, 46341]) };
  const out = await jit(f).onDevice(x, k);
  const devs = deviceLeaves(out);
  if (devs.length !== 5) throw new Error(`expected 5 device leaves, got ${devs.length}`);
  const [host, expected] = [await toHost(out), interpret(f, x, k)];
  assertTreeMatches(host, expected, { rtol: 1e-5, atol: 1e-6 }, "onDevice");
  // Shapes and dtypes are known on the device side already.
  const d = out as { y: DeviceArray; mask: DeviceArray; stats: DeviceArray[] };
  if (d.y.shape.join() !== "3,5" || d.mask.dtype !== "bool" || d.stats[1].dtype !== "i32") {
    throw new Error("wrong device avals");
  }
  // DeviceArray.toHost on one leaf.
  assertTreeMatches(await d.mask.toHost(), expected.mask, EXACT, "mask.toHost");
  devs.forEach((a) => a.destroy());
});

Deno.test("DeviceArrays feed other jitted calls, mixed with host arrays, any number of times", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(arbF32([4, 3]), arbF32([3, 2]), async (x, w) => {
      const layer = jit((x: Tensor, w: Tensor) => dsl.relu(dsl.matmul(x, w)));
      const head = jit((h: Tensor, x: Tensor) => [dsl.sum(h), dsl.mean(x, 0)]);
      const h = await layer.onDevice(x, w); // device
      const r1 = await head(h, x); // device + host
      const xd = await toDevice(x);
      const r2 = await head(h, xd); // device + device, the same h again
      const ref = interpret(
        (x: Tensor, w: Tensor) => {
          const hh = dsl.relu(dsl.matmul(x, w));
          return [dsl.sum(hh), dsl.mean(x, 0)];
        },
        x,
        w,
      );
      assertTreeMatches(r1, ref, { rtol: 1e-5, atol: 1e-6 }, "host x");
      assertTreeMatches(r2, ref, { rtol: 1e-5, atol: 1e-6 }, "device x");
      if (h.deleted) throw new Error("a non-donated input must stay usable");
      if (head.cacheSize !== 1) {
        throw new Error("host and device inputs of one aval share a compile");
      }
      h.destroy();
      (xd as DeviceArray).destroy();
    }),
    { numRuns: 3 },
  );
});

Deno.test("toDevice / toHost round-trip pytrees of f32, i32 and bool exactly (incl. NaN, ±Inf, empty)", async () => {
  const tree = {
    a: {
      shape: [2, 3],
      dtype: "f32" as const,
      data: Float32Array.from([NaN, Infinity, -Infinity, -0, 1e-30, 3.5]),
    },
    b: [
      { shape: [3], dtype: "i32" as const, data: Int32Array.from([-(2 ** 31), 2 ** 31 - 1, 0]) },
      { shape: [2], dtype: "bool" as const, data: Int32Array.from([1, 0]) },
    ],
    empty: { shape: [0, 4], dtype: "f32" as const, data: new Float32Array(0) },
    scalar: { shape: [], dtype: "f32" as const, data: Float32Array.from([7]) },
  };
  const dev = await toDevice(tree);
  const devs = deviceLeaves(dev);
  if (devs.length !== 5 || !devs.every((d) => isDeviceArray(d))) throw new Error("toDevice leaves");
  const back = await toHost(dev);
  assertTreeMatches(back, tree, EXACT, "round trip");
  // Device inputs of every dtype work in a jitted call.
  const f = (
    t: typeof tree,
  ) => [dsl.add(t.a, 1), dsl.add(t.b[0], 1), dsl.logicalNot(t.b[1]), dsl.sum(t.empty, 0)];
  // deno-lint-ignore no-explicit-any
  assertTreeMatches(await jit(f)(dev), interpret(f as any, tree), EXACT, "device inputs");
  devs.forEach((d) => d.destroy());
});

Deno.test("donate: an in-place update consumes its input; chained calls stay correct", async () => {
  const update = (p: Tensor) => dsl.sub(p, dsl.mul(0.1, p));
  const step = jit(update, { donate: 0 });
  let host: HostArray = seeded([64, 33], 7, -3, 3);
  let p = await toDevice(host) as DeviceArray;
  for (let i = 0; i < 6; i++) {
    const next = await step.onDevice(p) as DeviceArray;
    if (!p.deleted) throw new Error(`step ${i}: the donated input is not deleted`);
    assertThrows(() => p.buffer, /donated or destroyed/, "buffer of a donated array");
    await assertRejects(step(p), /donated or destroyed/, "calling with a donated array");
    host = interpret(update, host) as HostArray;
    assertTreeMatches(await next.toHost(), host, STEP, `step ${i}`);
    p = next;
  }
  // The program writes the update in place: the output is the donated input's buffer.
  const program = await step.lower(host);
  const inPlace = program.kernels.length === 1 && program.kernels[0].bindings === 1 &&
    program.outputSlots[0] === program.inputSlots[0];
  if (!inPlace) throw new Error(`not in place:\n${program}`);
  p.destroy();
});

Deno.test("donate: a host array argument, an identity output, and a non-donated argument", async () => {
  const x = seeded([5], 3);
  // Donating a host array is allowed (nothing to invalidate).
  const step = jit((p: Tensor, q: Tensor) => [dsl.mul(p, 2), q], { donate: 0 });
  assertTreeMatches(
    await step(x, x),
    interpret((p: Tensor, q: Tensor) => [dsl.mul(p, 2), q], x, x),
    EXACT,
    "host",
  );
  // Identity output of a donated input takes over the buffer; the non-donated one is copied.
  const ident = jit((p: Tensor, q: Tensor) => [p, q, dsl.add(p, q)], { donate: 0 });
  const [p, q] = [await toDevice(x) as DeviceArray, await toDevice(x) as DeviceArray];
  const out = await ident.onDevice(p, q) as DeviceArray[];
  if (!p.deleted || q.deleted) throw new Error("only argument 0 is donated");
  assertTreeMatches(
    await toHost(out),
    [x, x, interpret((a: Tensor) => dsl.add(a, a), x)],
    EXACT,
    "ident",
  );
  // The outputs are independent arrays: destroying one leaves the others readable.
  out[0].destroy();
  assertTreeMatches(await out[1].toHost(), x, EXACT, "after destroy");
  out.slice(1).forEach((o) => o.destroy());
  q.destroy();
});

Deno.test("donate a pytree of parameters: SGD steps on an MLP stay on the device", async () => {
  const params = {
    w1: seeded([6, 8], 11, -0.5, 0.5),
    b1: seeded([8], 12, -0.1, 0.1),
    w2: seeded([8, 3], 13, -0.5, 0.5),
  };
  const x = seeded([10, 6], 14, -2, 2);
  const y = {
    shape: [10],
    dtype: "i32" as const,
    data: Int32Array.from({ length: 10 }, (_, i) => i % 3),
  };
  const loss = (p: typeof params, x: Tensor, y: Tensor) =>
    dsl.crossEntropy(dsl.matmul(dsl.tanh(dsl.add(dsl.matmul(x, p.w1), p.b1)), p.w2), y);
  const sgd = (p: Record<string, Tensor>, x: Tensor, y: Tensor) => {
    // deno-lint-ignore no-explicit-any
    const g = grad(loss as any)(p, x, y) as Record<string, Tensor>;
    return Object.fromEntries(Object.keys(p).map((k) => [k, dsl.sub(p[k], dsl.mul(0.5, g[k]))]));
  };
  const step = jit(sgd, { donate: 0 });
  let dev = await toDevice(params);
  // deno-lint-ignore no-explicit-any
  let host: any = params;
  for (let i = 0; i < 4; i++) {
    const before = deviceLeaves(dev);
    dev = await step.onDevice(dev, x, y);
    if (!before.every((b) => b.deleted)) throw new Error(`step ${i}: donated leaves not deleted`);
    host = interpret(sgd, host, x, y);
  }
  assertTreeMatches(await toHost(dev), host, { rtol: 1e-4, atol: 1e-5 }, "sgd after 4 steps");
  deviceLeaves(dev).forEach((d) => d.destroy());
});

/**
 * The new value of one donated buffer is written while another output still needs the old one:
 * momentum SGD with v' = μ·v + p (reads the old p) next to p' = p − lr·v.
 */
function momentum(p: Tensor, v: Tensor) {
  return [dsl.sub(p, dsl.mul(0.1, v)), dsl.add(dsl.mul(0.9, v), p)];
}

Deno.test("donate two state arrays where one update reads the other's old value", async () => {
  let host = [seeded([16, 8], 21), seeded([16, 8], 22)];
  const step = jit(momentum, { donate: [0, 1] });
  let dev = await toDevice(host) as DeviceArray[];
  for (let i = 0; i < 3; i++) {
    const next = await step.onDevice(...dev) as DeviceArray[];
    if (!dev.every((d) => d.deleted)) throw new Error("donated state not deleted");
    host = interpret(momentum, ...host) as HostArray[];
    assertTreeMatches(await toHost(next), host, STEP, `momentum step ${i}`);
    dev = next;
  }
  dev.forEach((d) => d.destroy());
});

Deno.test("donate: Adam state (params, m, v) updated in place over several steps", async () => {
  const adam = (s: { p: Tensor; m: Tensor; v: Tensor }, g: Tensor) => {
    const m = dsl.add(dsl.mul(0.9, s.m), dsl.mul(0.1, g));
    const v = dsl.add(dsl.mul(0.999, s.v), dsl.mul(0.001, dsl.square(g)));
    const p = dsl.sub(s.p, dsl.mul(0.01, dsl.div(m, dsl.add(dsl.sqrt(v), 1e-8))));
    return { p, m, v };
  };
  const zeros = { shape: [7, 9], dtype: "f32" as const, data: new Float32Array(63) };
  // deno-lint-ignore no-explicit-any
  let host: any = { p: seeded([7, 9], 31), m: zeros, v: zeros };
  const step = jit(adam, { donate: 0 });
  // deno-lint-ignore no-explicit-any
  let dev: any = await toDevice(host);
  for (let i = 0; i < 4; i++) {
    const g = seeded([7, 9], 40 + i);
    dev = await step.onDevice(dev, g);
    host = interpret(adam, host, g);
  }
  assertTreeMatches(await toHost(dev), host, STEP, "adam after 4 steps");
  if (leaves(await toHost(dev)).length !== 3) throw new Error("state pytree");
  deviceLeaves(dev).forEach((d) => d.destroy());
});

Deno.test("a DeviceArray of another shape recompiles; a destroyed one is rejected", async () => {
  const f = jit((x: Tensor) => dsl.mul(x, 3));
  const a = await toDevice(seeded([2, 2], 1)) as DeviceArray;
  const b = await toDevice(seeded([3], 2)) as DeviceArray;
  assertTreeMatches(
    await f(a),
    interpret((x: Tensor) => dsl.mul(x, 3), await a.toHost()),
    EXACT,
    "a",
  );
  assertTreeMatches(
    await f(b),
    interpret((x: Tensor) => dsl.mul(x, 3), await b.toHost()),
    EXACT,
    "b",
  );
  if (f.cacheSize !== 2) throw new Error(`cacheSize ${f.cacheSize}`);
  a.destroy();
  await assertRejects(f(a), /donated or destroyed/, "destroyed input");
  b.destroy();
});

Deno.test("one DeviceArray passed both donated and not donated is rejected before running", async () => {
  const f = (p: Tensor, q: Tensor) => dsl.add(dsl.mul(p, 2), q);
  const x = seeded([2, 3], 5);
  const a = await toDevice(x) as DeviceArray;
  await assertRejects(
    jit(f, { donate: 0 }).onDevice(a, a),
    /same DeviceArray and one of them is donated/,
    "aliased donation",
  );
  await assertRejects(
    jit((s: { p: Tensor; q: Tensor }) => dsl.add(s.p, s.q), { donate: 0 })({ p: a, q: a }),
    /same DeviceArray/,
    "aliased leaves of one donated pytree",
  );
  // Nothing ran and nothing was consumed; without donation aliasing is fine.
  if (a.deleted) throw new Error("the rejected call consumed its input");
  assertTreeMatches(await jit(f)(a, a), interpret(f, x, x), EXACT, "aliased, not donated");
  a.destroy();
});

Deno.test({
  name: "donate one of two state arrays: the other output must read the donated one's old value",
  async fn() {
    const f = (p: Tensor, q: Tensor) => [dsl.mul(p, 2), dsl.add(q, 1)];
    const p = seeded([4], 1), q = seeded([4], 2);
    const step = jit(f, { donate: 1 });
    const out = await step.onDevice(await toDevice(p), await toDevice(q)) as DeviceArray[];
    assertTreeMatches(await toHost(out), interpret(f, p, q), EXACT, "partial donation");
    out.forEach((o) => o.destroy());
  },
});
