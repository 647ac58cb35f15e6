/** The IR listing is part of the product: these tests pin its format. */

import assert from "node:assert/strict";
import { array, grad, matmul, optimize, sum, take, tanh, trace } from "../../mod.ts";
import type { Tensor } from "../../mod.ts";

Deno.test("a traced function prints one jaxpr-style equation per line with shapes", () => {
  const g = trace((w: Tensor, x: Tensor) => sum(tanh(matmul(x, w))), { shape: [3, 2] }, {
    shape: [4, 3],
  });
  assert.equal(
    String(g),
    `{ lambda ; a:f32[3,2] b:f32[4,3]. let
    c:f32[4,2] = matmul b a
    d:f32[4,2] = tanh c
    e:f32[] = sum[axes=(0, 1)] d
  in (e) }`,
  );
});

Deno.test("grad(f) prints forward and backward in one graph; optimize cleans it", () => {
  const f = (w: Tensor, x: Tensor) => sum(tanh(matmul(x, w)));
  const g = optimize(trace(grad(f), { shape: [3, 2] }, { shape: [4, 3] }));
  assert.equal(
    String(g),
    `{ lambda ; a:f32[3,2] b:f32[4,3]. let
    c:f32[4,2] = matmul b a
    d:f32[4,2] = tanh c
    e:f32[1,1] = reshape[shape=(1, 1)] 1.0:f32
    f:f32[4,2] = broadcast[shape=(4, 2)] e
    g:f32[4,2] = mul d d
    h:f32[4,2] = sub f g
    i:f32[3,4] = transpose[perm=(1, 0)] b
    j:f32[3,2] = matmul i h
  in (j) }`,
  );
});

Deno.test("array constants are listed as constvars; pytree outputs are described", () => {
  const table = array([[1, 2], [3, 4], [5, 6]]);
  const g = trace((i: Tensor) => ({ rows: take(table, i) }), { shape: [2], dtype: "i32" });
  assert.equal(
    String(g),
    `{ lambda a:f32[3,2] ; b:i32[2]. let
    c:f32[2,2] = gather[axis=0] a b
  in (c) }
  # outputs: {rows: *}`,
  );
});
