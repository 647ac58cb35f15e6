/**
 * Strided views (compiler/views.ts), which let matmul kernels read split attention heads in
 * place: for random chains of reshapes, transposes and slices, every element the strides address
 * is the element the CPU reference reads.
 */

import assert from "node:assert/strict";
import * as dsl from "../../mod.ts";
import { type HostArray, interpret, type Tensor, trace } from "../../mod.ts";
import { stridedView, vec4Direction } from "../../compiler/views.ts";
import { checkProperty, fc } from "../helpers/property.ts";

type Step =
  | { kind: "transpose"; keys: number[] }
  | { kind: "merge"; at: number }
  | { kind: "split"; at: number; pick: number }
  | { kind: "reshape"; pick: number }
  | { kind: "slice"; starts: number[]; lengths: number[] };

const nat = fc.nat({ max: 1000 });
const arbStep: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    kind: fc.constant("transpose" as const),
    keys: fc.array(nat, { minLength: 5, maxLength: 5 }),
  }),
  fc.record({ kind: fc.constant("merge" as const), at: nat }),
  fc.record({ kind: fc.constant("split" as const), at: nat, pick: nat }),
  fc.record({ kind: fc.constant("reshape" as const), pick: nat }),
  fc.record({
    kind: fc.constant("slice" as const),
    starts: fc.array(nat, { minLength: 5, maxLength: 5 }),
    lengths: fc.array(nat, { minLength: 5, maxLength: 5 }),
  }),
);

const divisors = (d: number) =>
  Array.from({ length: d }, (_, i) => i + 1).filter((a) => d % a === 0);

/** Applies one step to `x`, its parameters read modulo what `x`'s shape allows. */
function apply(x: Tensor, s: Step): Tensor {
  const shape = x.shape, r = shape.length;
  switch (s.kind) {
    case "transpose": {
      const perm = shape.map((_, i) => i).sort((a, b) => s.keys[a] - s.keys[b] || a - b);
      return dsl.transpose(x, perm);
    }
    case "merge": {
      if (r < 2) return x;
      const i = s.at % (r - 1);
      return dsl.reshape(x, [...shape.slice(0, i), shape[i] * shape[i + 1], ...shape.slice(i + 2)]);
    }
    case "split": {
      if (r >= 5) return x; // at most 5 axes: one key, start and length each
      const i = s.at % r, ds = divisors(shape[i]), a = ds[s.pick % ds.length];
      return dsl.reshape(x, [...shape.slice(0, i), a, shape[i] / a, ...shape.slice(i + 1)]);
    }
    case "reshape": {
      // Any factorisation of the size into two: often one no strides describe.
      const n = shape.reduce((p, d) => p * d, 1), ds = divisors(n), a = ds[s.pick % ds.length];
      return dsl.reshape(x, [a, n / a]);
    }
    case "slice": {
      const starts = shape.map((d, i) => s.starts[i] % d);
      const ends = shape.map((d, i) => starts[i] + 1 + (s.lengths[i] % (d - starts[i])));
      return dsl.slice(x, starts, ends);
    }
  }
}

/** Every multi-index of `shape`, in row-major order. */
function* indices(shape: readonly number[]): Generator<number[]> {
  const n = shape.reduce((p, d) => p * d, 1);
  for (let flat = 0; flat < n; flat++) {
    let rest = flat;
    const ix = new Array<number>(shape.length);
    for (let i = shape.length - 1; i >= 0; i--) {
      ix[i] = rest % shape[i];
      rest = Math.floor(rest / shape[i]);
    }
    yield ix;
  }
}

Deno.test("stridedView: the strides address exactly the elements the view reads", () => {
  let described = 0, reshapes = 0;
  checkProperty(
    fc.property(
      fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 4 }),
      fc.array(arbStep, { minLength: 1, maxLength: 5 }),
      (shape, steps) => {
        const f = (x: Tensor) => steps.reduce(apply, x);
        const graph = trace(f, { shape });
        const out = graph.outputs[0];
        const view = stridedView(out, (n) => n.op === "input");
        const onlyPermutesAndSlices = steps.every((s) =>
          s.kind === "transpose" || s.kind === "slice"
        );
        // Transposes and slices alone always have strides.
        if (onlyPermutesAndSlices) assert.ok(view, `no strides for ${JSON.stringify(steps)}`);
        if (!view) return;
        described++;
        if (!onlyPermutesAndSlices) reshapes++;
        assert.equal(view.source, graph.inputs[0]);
        const n = shape.reduce((p, d) => p * d, 1);
        const iota: HostArray = {
          shape,
          dtype: "f32",
          data: Float32Array.from({ length: n }, (_, i) => i),
        };
        const want = interpret(f, iota) as HostArray;
        let k = 0;
        for (const ix of indices(want.shape)) {
          const at: number = ix.reduce((o, v, i) => o + v * view.strides[i], view.offset);
          assert.equal(at, want.data[k++], `index ${ix} of ${JSON.stringify(steps)}`);
        }
      },
    ),
    { numRuns: 300 },
  );
  // The property saw strided views through reshapes, not only through permutations.
  assert.ok(described > 100 && reshapes > 20, `${described} views, ${reshapes} with reshapes`);
});

Deno.test("vec4Direction: heads split from [b, t, h·d] load along rows, transposed along columns", () => {
  const direction = (f: (x: Tensor) => Tensor, shape: number[]) => {
    const graph = trace(f, { shape });
    const out = graph.outputs[0];
    return vec4Direction(out, stridedView(out, (n) => n.op === "input")!);
  };
  const heads = (x: Tensor) => dsl.transpose(dsl.reshape(x, [2, 8, 3, 4]), [0, 2, 1, 3]);
  assert.equal(direction(heads, [2, 8, 12]), "rows");
  assert.equal(direction((x) => dsl.transpose(heads(x), [0, 1, 3, 2]), [2, 8, 12]), "columns");
  // d = 3: rows of 3 are not whole vec4s, whichever way.
  const odd = (x: Tensor) => dsl.transpose(dsl.reshape(x, [2, 8, 3, 3]), [0, 2, 1, 3]);
  assert.equal(direction(odd, [2, 8, 9]), undefined);
  // A slice starting mid-vec4.
  assert.equal(direction((x) => dsl.slice(x, [0, 1], [4, 5]), [4, 8]), undefined);
});
