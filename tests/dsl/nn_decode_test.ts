import { interpret } from "../../dsl/interpret.ts";
import type { HostArray } from "../../dsl/host_array.ts";
import type { ModelConfig } from "../../dsl/nn/config.ts";
import { cacheShape, decodeStep, type KvCache, prefill } from "../../dsl/nn/decode.ts";
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
