import { interpret } from "../../dsl/interpret.ts";
import type { HostArray } from "../../dsl/host_array.ts";
import type { ModelConfig } from "../../dsl/nn/config.ts";
import assert from "node:assert/strict";
import { cacheShape, decodeStep, extend, type KvCache, prefill } from "../../dsl/nn/decode.ts";
import { DslError } from "../../dsl/errors.ts";
import * as lax from "../../dsl/lax.ts";
import { argmax } from "../../dsl/ops/reduce.ts";
import { broadcastTo, reshape } from "../../dsl/ops/shape.ts";
import { initParams } from "../../dsl/nn/transformer.ts";
import type { Tensor } from "../../dsl/trace.ts";
import { assertClose } from "../helpers/arrays.ts";
import { checkProperty, fc } from "../helpers/property.ts";
import { TINY_GPT2, TINY_LLAMA, TINY_QWEN2 } from "../helpers/tiny_models.ts";

const i32 = (shape: number[], data: number[]): HostArray => ({
  shape,
  dtype: "i32",
  data: Int32Array.from(data),
});

type Out = { logits: HostArray; cache: KvCache<HostArray> };

/** Keys/values of row r at slots `from`…`to`−1, flattened (the slots a row can see). */
function rowSlots(a: HostArray, r: number, from: number, to: number): HostArray {
  const [, heads, length, d] = a.shape;
  const out: number[] = [];
  for (let h = 0; h < heads; h++) {
    const base = ((r * heads + h) * length) * d;
    out.push(...a.data.slice(base + from * d, base + to * d));
  }
  return { shape: [out.length], dtype: "f32", data: Float32Array.from(out) };
}

for (const cfg of [TINY_LLAMA, TINY_QWEN2, TINY_GPT2] as ModelConfig[]) {
  Deno.test(`prefill (${cfg.family}${cfg.attentionBias ? ", biases" : ""}): equals one decodeStep per prompt slot`, () => {
    const params = initParams(cfg, 11);
    for (const a of Object.values(params)) {
      if (a.shape.length === 2) a.data.forEach((v, i) => (a.data[i] = v * 20));
    }
    const rows = 3, length = 9;
    const sample = fc.record({
      p: fc.integer({ min: 1, max: 6 }),
      seed: fc.integer({ min: 0, max: 1 << 20 }),
    });
    checkProperty(
      fc.property(sample, ({ p, seed }) => {
        let s = seed;
        const next = (n: number) => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) % n;
        const offsets = Array.from({ length: rows }, () => next(p));
        const tokens = Array.from({ length: rows * p }, () => next(cfg.vocab));
        const pre = interpret(
          (w: Record<string, Tensor>, t: Tensor, o: Tensor) => prefill(cfg, w, t, o, length),
          params,
          i32([rows, p], tokens),
          i32([rows], offsets),
        ) as Out;
        const zeros = (): HostArray => {
          const shape = cacheShape(cfg, rows, length);
          return { shape, dtype: "f32", data: new Float32Array(shape.reduce((a, b) => a * b)) };
        };
        let cache: KvCache<HostArray> = {
          keys: Array.from({ length: cfg.layers }, zeros),
          values: Array.from({ length: cfg.layers }, zeros),
        };
        let logits: HostArray | undefined;
        for (let slot = 0; slot < p; slot++) {
          const column = Array.from({ length: rows }, (_, r) => tokens[r * p + slot]);
          const out = interpret(
            (w: Record<string, Tensor>, c: KvCache<Tensor>, t: Tensor, sl: Tensor, o: Tensor) =>
              decodeStep(cfg, w, c, t, sl, o),
            params,
            cache,
            i32([rows], column),
            i32([], [slot]),
            i32([rows], offsets),
          ) as Out;
          cache = out.cache;
          logits = out.logits;
        }
        assertClose(pre.logits, logits!, { rtol: 1e-4, atol: 1e-4, label: "logits" });
        for (let layer = 0; layer < cfg.layers; layer++) {
          for (const kind of ["keys", "values"] as const) {
            for (let r = 0; r < rows; r++) {
              // Padding slots (before the row's start) are never visible; the rest must agree,
              // and slots past the prompt stay zero.
              const label = `${kind}[${layer}] row ${r}`;
              const got = pre.cache[kind][layer], want = cache[kind][layer];
              assertClose(
                rowSlots(got, r, offsets[r], length),
                rowSlots(want, r, offsets[r], length),
                {
                  rtol: 1e-4,
                  atol: 1e-5,
                  label,
                },
              );
            }
          }
        }
      }),
      { numRuns: 8 },
    );
  });
}

for (const cfg of [TINY_LLAMA, TINY_GPT2] as ModelConfig[]) {
  Deno.test(`extend (${cfg.family}): a prefix computed once for one row equals prefilling every whole prompt`, () => {
    const params = initParams(cfg, 13);
    for (const a of Object.values(params)) {
      if (a.shape.length === 2) a.data.forEach((v, i) => (a.data[i] = v * 20));
    }
    const rows = 3, length = 10; // ≤ the tiny models' context; the step writes slot ≤ 9
    const sample = fc.record({
      shared: fc.integer({ min: 1, max: 5 }),
      rest: fc.integer({ min: 1, max: 4 }),
      seed: fc.integer({ min: 0, max: 1 << 20 }),
    });
    checkProperty(
      fc.property(sample, ({ shared, rest, seed }) => {
        let s = seed;
        const next = (n: number) => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) % n;
        const prefix = Array.from({ length: shared }, () => next(cfg.vocab));
        // Row r's own tokens: 1…rest of them, left-padded into slots shared…shared+rest−1.
        const own = Array.from(
          { length: rows },
          () => Array.from({ length: 1 + next(rest) }, () => next(cfg.vocab)),
        );
        const end = shared + rest;
        const offsets = own.map((o) => end - o.length);
        const tokens = own.flatMap((o) => [...new Array(rest - o.length).fill(0), ...o]);
        const sharedRun = interpret(
          (w: Record<string, Tensor>, p: Tensor, t: Tensor, o: Tensor, slot: Tensor, n: Tensor) => {
            const one = prefill(cfg, w, p, reshape(lax.iota([1], 0), [1]), length);
            const cache = {
              keys: one.cache.keys.map((k) => broadcastTo(k, cacheShape(cfg, rows, length))),
              values: one.cache.values.map((v) => broadcastTo(v, cacheShape(cfg, rows, length))),
            };
            const ext = extend(cfg, w, cache, t, o, shared, shared);
            const step = decodeStep(cfg, w, ext.cache, argmax(ext.logits, -1), slot, o, n);
            return [ext.logits, step.logits];
          },
          params,
          i32([1, shared], prefix),
          i32([rows, rest], tokens),
          i32([rows], offsets),
          i32([], [end]),
          i32([], [shared]),
        ) as HostArray[];
        // The reference: every whole prompt left-padded to the same end, prefilled, one step.
        const whole = own.map((o) => [...prefix, ...o]);
        const wholeOffsets = whole.map((w) => end - w.length);
        const wholeTokens = whole.flatMap((w) => [...new Array(end - w.length).fill(0), ...w]);
        const plain = interpret(
          (w: Record<string, Tensor>, t: Tensor, o: Tensor, slot: Tensor) => {
            const pre = prefill(cfg, w, t, o, length);
            const step = decodeStep(cfg, w, pre.cache, argmax(pre.logits, -1), slot, o);
            return [pre.logits, step.logits];
          },
          params,
          i32([rows, end], wholeTokens),
          i32([rows], wholeOffsets),
          i32([], [end]),
        ) as HostArray[];
        assertClose(sharedRun[0], plain[0], { rtol: 1e-4, atol: 1e-4, label: "prompt logits" });
        assertClose(sharedRun[1], plain[1], {
          rtol: 1e-4,
          atol: 1e-4,
          label: "next step's logits",
        });
      }),
      { numRuns: 8 },
    );
  });
}

Deno.test("extend: slots outside the cache or before the shared prefix are named", () => {
  const cfg = TINY_LLAMA;
  const params = initParams(cfg, 1);
  const zeros = (): HostArray => {
    const shape = cacheShape(cfg, 1, 8);
    return { shape, dtype: "f32", data: new Float32Array(shape.reduce((a, b) => a * b)) };
  };
  const cache = {
    keys: Array.from({ length: cfg.layers }, zeros),
    values: Array.from({ length: cfg.layers }, zeros),
  };
  for (const [start, shared] of [[6, 0], [1, 2]]) {
    assert.throws(
      () =>
        interpret(
          (w: Record<string, Tensor>, c: KvCache<Tensor>, t: Tensor, o: Tensor) =>
            extend(cfg, w, c, t, o, start, shared).logits,
          params,
          cache,
          i32([1, 3], [1, 2, 3]),
          i32([1], [start]),
        ),
      (e) => e instanceof DslError && e.op === "extend",
    );
  }
});
