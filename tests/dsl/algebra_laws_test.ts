/** Algebraic identities of the ops, as properties over random inputs. */

import assert from "node:assert/strict";
import * as dsl from "../../mod.ts";
import type { HostArray, Tensor } from "../../mod.ts";
import { arbArray, arbShape, assertClose } from "../helpers/arrays.ts";
import { checkProperty, fc } from "../helpers/property.ts";

const arbMatrixTriple = fc.tuple(
  fc.integer({ min: 1, max: 5 }),
  fc.integer({ min: 1, max: 5 }),
  fc.integer({ min: 1, max: 5 }),
  fc.integer({ min: 1, max: 3 }),
).chain(([m, k, n, b]) => fc.tuple(arbArray([b, m, k]), arbArray([b, k, n]), arbArray([b, n, m])));

const arbTensor = arbShape({ maxRank: 4 }).chain((s) => arbArray(s));

Deno.test("x·1 = x, x+0 = x, −(−x) = x, x − x = 0, bitwise", () => {
  checkProperty(
    fc.property(arbTensor, (x) => {
      const outs = dsl.interpret(
        (t: Tensor) => [dsl.mul(t, 1), dsl.add(t, 0), dsl.neg(dsl.neg(t)), dsl.sub(t, t)],
        x,
      ) as HostArray[];
      // Value equality (IEEE: −0 + 0 = +0, so x + 0 may flip the sign of zero).
      for (const o of outs.slice(0, 3)) assertClose(o, x, { rtol: 0, atol: 0 });
      assert.ok(outs[3].data.every((v) => v === 0));
    }),
  );
});

Deno.test("(A·B)ᵀ = Bᵀ·Aᵀ bitwise, and (A·B)·C ≈ A·(B·C), for batched matrices", () => {
  checkProperty(
    fc.property(arbMatrixTriple, ([a, b, c]) => {
      const [abT, bTaT, left, right] = dsl.interpret(
        (x: Tensor, y: Tensor, z: Tensor) => {
          const t = (v: Tensor) => dsl.transpose(v, [0, 2, 1]);
          return [
            t(dsl.matmul(x, y)),
            dsl.matmul(t(y), t(x)),
            dsl.matmul(dsl.matmul(x, y), z),
            dsl.matmul(x, dsl.matmul(y, z)),
          ];
        },
        a,
        b,
        c,
      ) as HostArray[];
      assert.deepEqual(abT, bTaT);
      assertClose(left, right, { rtol: 1e-4, atol: 1e-4 });
    }),
  );
});

Deno.test("transpose by p then by p⁻¹ is the identity; reshape round-trips", () => {
  checkProperty(
    fc.property(
      arbTensor.chain((x) =>
        fc.tuple(
          fc.constant(x),
          fc.shuffledSubarray(x.shape.map((_, i) => i), {
            minLength: x.shape.length,
            maxLength: x.shape.length,
          }),
        )
      ),
      ([x, perm]) => {
        const inverse = perm.map((_, i) => perm.indexOf(i));
        const [back, flat] = dsl.interpret(
          (t: Tensor) => [
            dsl.transpose(dsl.transpose(t, perm), inverse),
            dsl.reshape(dsl.reshape(t, [-1]), x.shape),
          ],
          x,
        ) as HostArray[];
        assert.deepEqual(back, x);
        assert.deepEqual(flat, x);
      },
    ),
  );
});

Deno.test("sum over all axes ≈ nested sums; mean·count ≈ sum; max ≥ every element", () => {
  checkProperty(
    fc.property(arbShape({ minRank: 1, maxRank: 3 }).chain((s) => arbArray(s)), (x) => {
      const [all, nested, mean, max] = dsl.interpret((t: Tensor) => {
        let n: Tensor = t;
        for (let i = t.ndim - 1; i >= 0; i--) n = dsl.sum(n, i);
        return [dsl.sum(t), n, dsl.mul(dsl.mean(t), t.size), dsl.max(t)];
      }, x) as HostArray[];
      assertClose(nested, all, { rtol: 1e-5, atol: 1e-5 });
      assertClose(mean, all, { rtol: 1e-5, atol: 1e-5 });
      assert.ok(Array.from(x.data).every((v) => v <= max.data[0]));
      assert.ok(Array.from(x.data).some((v) => v === max.data[0]));
    }),
  );
});

Deno.test("softmax rows sum to 1, log(softmax) ≈ logSoftmax, logsumexp ≥ max", () => {
  checkProperty(
    fc.property(
      arbShape({ minRank: 1, maxRank: 3 }).chain((s) => arbArray(s, { min: -30, max: 30 })),
      (x) => {
        const [rowSums, logOfSoftmax, logSoftmax, lse, mx] = dsl.interpret((t: Tensor) => {
          const p = dsl.softmax(t);
          return [
            dsl.sum(p, -1),
            dsl.log(p),
            dsl.logSoftmax(t),
            dsl.logsumexp(t, -1),
            dsl.max(t, -1),
          ];
        }, x) as HostArray[];
        assert.ok(rowSums.data.every((v) => Math.abs(v - 1) < 1e-5));
        assertClose(logOfSoftmax, logSoftmax, { rtol: 1e-4, atol: 1e-4 });
        lse.data.forEach((v, i) => assert.ok(v >= mx.data[i]));
      },
    ),
  );
});

Deno.test("concat then slice recovers the parts; take with arange is the identity", () => {
  checkProperty(
    fc.property(
      fc.tuple(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 4 }),
      )
        .chain(([m, n1, n2]) => fc.tuple(arbArray([m, n1]), arbArray([m, n2]))),
      ([a, b]) => {
        const n1 = a.shape[1];
        const [pa, pb, taken] = dsl.interpret(
          (x: Tensor, y: Tensor) => {
            const c = dsl.concat([x, y], -1);
            return [
              dsl.slice(c, [0, 0], [null, n1]),
              dsl.slice(c, [0, n1]),
              dsl.take(c, dsl.arange(c.shape[1]), 1),
            ];
          },
          a,
          b,
        ) as HostArray[];
        assert.deepEqual(pa, a);
        assert.deepEqual(pb, b);
        // The concatenation written out row by row: [a_i | b_i].
        const [m, n2] = [a.shape[0], b.shape[1]];
        const rows = Array.from({ length: m }, (_, i) => [
          ...a.data.subarray(i * n1, (i + 1) * n1),
          ...b.data.subarray(i * n2, (i + 1) * n2),
        ]);
        assert.deepEqual(taken, {
          shape: [m, n1 + n2],
          dtype: "f32",
          data: Float32Array.from(rows.flat()),
        });
      },
    ),
  );
});

Deno.test("gather followed by scatterAdd counts index occurrences (times the gathered value)", () => {
  checkProperty(
    fc.property(fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 1, maxLength: 12 }), (ix) => {
      const idx = { shape: [ix.length], dtype: "i32" as const, data: Int32Array.from(ix) };
      // Table t[v] = v + 1: scattering back what was gathered gives t[v]·count(v) at v.
      const [counts, weighted] = dsl.interpret(
        (i: Tensor) => {
          const t = dsl.add(dsl.arange(6, undefined, 1, "f32"), 1);
          return [
            dsl.scatterAdd(dsl.zeros([6]), i, dsl.take(dsl.ones([6]), i)),
            dsl.scatterAdd(dsl.zeros([6]), i, dsl.take(t, i)),
          ];
        },
        idx,
      ) as HostArray[];
      for (let v = 0; v < 6; v++) {
        const count = ix.filter((j) => j === v).length;
        assert.equal(counts.data[v], count);
        assert.equal(weighted.data[v], (v + 1) * count);
      }
    }),
  );
});
