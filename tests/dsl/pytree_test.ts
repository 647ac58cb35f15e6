import assert from "node:assert/strict";
import {
  array,
  flattenTree,
  grad,
  type HostArray,
  interpret,
  isHostArray,
  mul,
  sum,
  tanh,
  trace,
  unflattenTree,
} from "../../mod.ts";
import type { Tensor } from "../../mod.ts";
import { arbArray, arbShape } from "../helpers/arrays.ts";
import { checkProperty, fc } from "../helpers/property.ts";

const arbLeaf = arbShape({ maxRank: 2 }).chain((s) => arbArray(s));
const arbTree: fc.Arbitrary<unknown> = fc.letrec<{ tree: unknown }>((tie) => ({
  tree: fc.oneof(
    { depthSize: "small", maxDepth: 4 },
    arbLeaf,
    fc.array(tie("tree"), { maxLength: 3 }),
    fc.dictionary(fc.constantFrom("w", "b", "layer0", "Z", "x_1"), tie("tree"), { maxKeys: 3 }),
    fc.constant(null),
  ),
})).tree;

/** Sorts object keys recursively, as pytree flattening does. */
function canonical(x: unknown): unknown {
  if (isHostArray(x) || x === null || typeof x !== "object") return x;
  if (Array.isArray(x)) return x.map(canonical);
  const o = x as Record<string, unknown>;
  return Object.fromEntries(Object.keys(o).sort().map((k) => [k, canonical(o[k])]));
}

Deno.test("flatten then unflatten rebuilds any pytree", () => {
  checkProperty(
    fc.property(arbTree, (tree) => {
      const [leaves, def] = flattenTree(tree, isHostArray);
      assert.deepEqual(unflattenTree(def, leaves), canonical(tree));
    }),
    { numRuns: 100 },
  );
});

Deno.test("interpret of the identity returns the argument pytree unchanged", () => {
  checkProperty(
    fc.property(arbTree, (tree) => {
      assert.deepEqual(interpret((t: unknown) => t, tree), canonical(tree));
    }),
    { numRuns: 60 },
  );
});

Deno.test("grad returns gradients in the pytree shape of the differentiated argument", () => {
  const params = { w: array([1, 2]), nested: [array(3), { b: array([[1], [2]]) }] };
  const loss = (p: typeof params) => {
    const t = p as unknown as { w: Tensor; nested: [Tensor, { b: Tensor }] };
    return sum(mul(tanh(t.w), t.nested[0])).add(sum(t.nested[1].b));
  };
  const g = grad(loss)(params) as { w: HostArray; nested: [HostArray, { b: HostArray }] };
  assert.deepEqual(Object.keys(g), ["nested", "w"]);
  assert.deepEqual(g.w.shape, [2]);
  assert.deepEqual(g.nested[0].shape, []);
  assert.deepEqual(Array.from(g.nested[1].b.data), [1, 1]);
});

Deno.test("graphs record the argument and result structure", () => {
  const g = trace((p: { a: Tensor; b: Tensor }) => ({ s: p.a, t: [p.b] }), {
    a: { shape: [2] },
    b: { shape: [3], dtype: "i32" },
  });
  assert.equal(g.inputs.length, 2);
  assert.equal(g.inputs[1].dtype, "i32");
  assert.equal(g.outputs.length, 2);
});

Deno.test("non-plain objects in a pytree are rejected with their path", () => {
  assert.throws(() => flattenTree({ a: [new Map()] }, isHostArray), /at args\.a\[0\]/);
});
