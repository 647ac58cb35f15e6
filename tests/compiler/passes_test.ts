import assert from "node:assert/strict";
import {
  add,
  array,
  eliminateCommonSubexpressions,
  eliminateDeadCode,
  evaluateGraph,
  exp,
  foldConstants,
  full,
  grad,
  type Graph,
  matmul,
  mul,
  optimize,
  sum,
  tanh,
  trace,
  transpose,
} from "../../mod.ts";
import type { Tensor } from "../../mod.ts";
import { arbArray, assertClose } from "../helpers/arrays.ts";
import { randomArray } from "../helpers/models.ts";
import { checkProperty, fc } from "../helpers/property.ts";
import { matmulSlices } from "../../compiler/mod.ts";
import { arbExpr, buildExpr, PROGRAM_SHAPE } from "../helpers/random_program.ts";

const ops = (g: Graph) => g.nodes.filter((n) => n.op !== "input").map((n) => n.op);

Deno.test("DCE removes computations the outputs do not use and keeps every input", () => {
  const g = trace(
    (x: Tensor, _unused: Tensor) => {
      exp(x); // dead
      return tanh(x);
    },
    { shape: [2] },
    { shape: [3] },
  );
  assert.deepEqual(ops(g), ["exp", "tanh"]);
  const d = eliminateDeadCode(g);
  assert.deepEqual(ops(d), ["tanh"]);
  assert.equal(d.inputs.length, 2);
});

Deno.test("CSE merges identical subexpressions, including ones built from merged inputs", () => {
  const g = trace((x: Tensor) => add(tanh(exp(x)), tanh(exp(x))), { shape: [4] });
  assert.deepEqual(ops(g), ["exp", "tanh", "exp", "tanh", "add"]);
  const c = eliminateDeadCode(eliminateCommonSubexpressions(g));
  assert.deepEqual(ops(c), ["exp", "tanh", "add"]);
  const add_ = c.nodes.at(-1)!;
  assert.equal(add_.inputs[0], add_.inputs[1]);
});

Deno.test("constant folding evaluates scalar-constant subgraphs and splats", () => {
  const g = trace((x: Tensor) => mul(x, add(full([3], 2), full([3], 3))), { shape: [3] });
  const f = optimize(g);
  assert.deepEqual(ops(f), ["constant", "reshape", "broadcast", "mul"]);
  assert.match(String(f), /= reshape\[shape=\(1\)\] 5\.0:f32/);
});

Deno.test("algebraic identities x·1, x+0, neg∘neg, transpose∘transpose vanish", () => {
  const g = trace(
    (x: Tensor) => add(mul(x, 1), 0).neg().neg().transpose().transpose(),
    { shape: [2, 3] },
  );
  assert.deepEqual(ops(optimize(g)), []);
  assert.equal(optimize(g).outputs[0], optimize(g).inputs[0]);
});

Deno.test("Aᵀ·Bᵀ read down columns becomes (B·A)ᵀ, same values, at random sizes", () => {
  // Split heads transposed (HD-PiSSA's Bᵀ·δᵀ has this form): after the rewrite no product reads
  // both operands down their columns, and its values are the raw graph's.
  const downColumns = (x: Graph["nodes"][number]) => {
    const perm = x.params.perm as number[] | undefined;
    return x.op === "transpose" && perm![perm!.length - 2] === perm!.length - 1;
  };
  checkProperty(
    fc.property(
      fc.integer({ min: 1, max: 3 }),
      fc.integer({ min: 1, max: 5 }),
      fc.integer({ min: 1, max: 5 }),
      fc.integer({ min: 1, max: 5 }),
      fc.integer({ min: 0, max: 1000 }),
      (h, m, k, n, seed) => {
        // x: [k, h, m] viewed as [h, m, k]; y: [h, n, k] transposed to [h, k, n].
        const f = (x: Tensor, y: Tensor) =>
          matmul(transpose(x, [1, 2, 0]), transpose(y, [0, 2, 1]));
        const g = trace(f, { shape: [k, h, m] }, { shape: [h, n, k] });
        const o = optimize(g);
        const products = o.nodes.filter((x) => x.op === "matmul");
        assert.equal(products.length, 1);
        assert.ok(!products[0].inputs.every(downColumns), String(o));
        const x = randomArray([k, h, m], seed), y = randomArray([h, n, k], seed + 1);
        const [raw] = evaluateGraph(g, [x, y]);
        const [opt] = evaluateGraph(o, [x, y]);
        assert.deepEqual(opt, raw);
      },
    ),
    { numRuns: 40 },
  );
});

Deno.test("optimize shrinks the gradient graph (seed of 1 folded away)", () => {
  const g = trace(grad((x: Tensor) => sum(tanh(x))), { shape: [5] });
  const o = optimize(g);
  assert.ok(o.nodes.length < g.nodes.length);
  // d/dx Σ tanh x = 1 − tanh² x: the seed's broadcast·mul is gone, the dead loss too.
  assert.equal(
    String(o),
    `{ lambda ; a:f32[5]. let
    b:f32[5] = tanh a
    c:f32[1] = reshape[shape=(1)] 1.0:f32
    d:f32[5] = broadcast[shape=(5)] c
    e:f32[5] = mul b b
    f:f32[5] = sub d e
  in (f) }`,
  );
});

Deno.test("optimised random programs evaluate like the raw graph: exactly, but for reassociated products", () => {
  // Folding, CSE, DCE and sinking reshapes keep every value bit for bit. Matmul reassociation
  // changes the order of the products (gram(gram(x)) becomes c·c·c·c·x with c = x·xᵀ, its
  // scalings moved): the same values up to rounding, as XLA's algebraic simplifier allows. It may
  // add nodes, and on such chains of Gram products even multiply-adds (153 for 144 there: its
  // cost model weighs one candidate at a time), so only the values are checked here.
  checkProperty(
    fc.property(
      arbExpr,
      arbArray(PROGRAM_SHAPE),
      arbArray(PROGRAM_SHAPE),
      (expr, x, y) => {
        const g = trace((a: Tensor, b: Tensor) => buildExpr(expr, a, b), x, y);
        const o = optimize(g);
        const [raw] = evaluateGraph(g, [x, y]);
        const [exact] = evaluateGraph(optimize(g, { reassociate: false }), [x, y]);
        assert.deepEqual(Array.from(exact.data), Array.from(raw.data));
        const [opt] = evaluateGraph(o, [x, y]);
        const scale = Math.max(
          1,
          ...Array.from(raw.data, (v) => Number.isFinite(v) ? Math.abs(v) : 0),
        );
        assertClose(opt, raw, { rtol: 1e-5, atol: 1e-6 * scale });
      },
    ),
    { numRuns: 60 },
  );
});

Deno.test("each pass alone preserves the values of random gradient programs", () => {
  checkProperty(
    fc.property(arbExpr, arbArray(PROGRAM_SHAPE), arbArray(PROGRAM_SHAPE), (expr, x, y) => {
      const loss = (a: Tensor, b: Tensor) => sum(buildExpr(expr, a, b));
      const g = trace(grad(loss, { argnums: [0, 1] }), x, y);
      const reference = evaluateGraph(g, [x, y]);
      for (const pass of [foldConstants, eliminateCommonSubexpressions, eliminateDeadCode]) {
        const out = evaluateGraph(pass(g), [x, y]);
        out.forEach((o, i) => assert.deepEqual(Array.from(o.data), Array.from(reference[i].data)));
      }
    }),
    { numRuns: 30 },
  );
});

Deno.test("a pass never changes the graph's signature", () => {
  const x = array([[1, 2], [3, 4]]);
  const g = trace((a: Tensor) => ({ out: [tanh(a), a] }), x);
  const o = optimize(g);
  assert.equal(o.inputs, g.inputs);
  assert.equal(o.outTree, g.outTree);
  assert.equal(o.outputs[1], o.inputs[0]);
});

Deno.test("split-K slices cover K in order, within the chunk, a multiple of 4 long but K mod 4", () => {
  checkProperty(
    fc.property(
      fc.integer({ min: 2, max: 300_000 }),
      fc.integer({ min: 2, max: 20_000 }),
      (k, chunk) => {
        fc.pre(k > chunk);
        const slices = matmulSlices(k, chunk);
        assert.equal(slices[0][0], 0);
        assert.equal(slices.at(-1)![1], k);
        slices.forEach(([s, e], i) => {
          assert.ok(e > s && e - s <= chunk, `slice ${i} [${s}, ${e}) of chunk ${chunk}`);
          if (i > 0) assert.equal(s, slices[i - 1][1]);
        });
        // At most one more product than an even split into multiples of 4, for the tail.
        const most = chunk >= 8 ? chunk - (chunk % 4) : chunk;
        assert.ok(slices.length <= Math.ceil(k / most) + 1, `${slices.length} slices`);
        if (chunk >= 8) {
          const body = k % 4 === 0 ? slices : slices.slice(0, -1);
          body.forEach(([s, e]) => assert.equal((e - s) % 4, 0, `[${s}, ${e})`));
          if (k % 4 !== 0) assert.deepEqual(slices.at(-1), [k - (k % 4), k]);
        }
      },
    ),
    { numRuns: 300 },
  );
});
