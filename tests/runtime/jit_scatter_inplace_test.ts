import assert from "node:assert/strict";
import type { HostArray } from "../../dsl/host_array.ts";
import { interpret } from "../../dsl/interpret.ts";
import { scatterAdd } from "../../dsl/ops/shape.ts";
import { mul } from "../../dsl/ops/elementwise.ts";
import type { Tensor } from "../../dsl/trace.ts";
import { jit } from "../../runtime/jit.ts";
import { assertClose } from "../helpers/arrays.ts";

const cache: HostArray = {
  shape: [2, 5, 3],
  dtype: "f32",
  data: Float32Array.from({ length: 30 }, (_, i) => (i % 7) - 3),
};
const rows: HostArray = { shape: [2], dtype: "i32", data: Int32Array.of(4, 1) };
const updates: HostArray = {
  shape: [2, 2, 3],
  dtype: "f32",
  data: Float32Array.from({ length: 12 }, (_, i) => i),
};
const f = (c: Tensor, i: Tensor, u: Tensor) => scatterAdd(c, i, mul(u, 2), 1);

Deno.test("jit scatterAdd: a donated operand is updated in place, touching only the scattered rows", async () => {
  const want = interpret(f, cache, rows, updates) as HostArray;
  const inPlace = jit(f, { donate: 0 });
  const program = await inPlace.lower(cache, rows, updates);
  const scatter = program.kernels.find((k) => k.kind === "scatter")!;
  assert.ok(
    !scatter.wgsl.includes("for (var r = 0i"),
    "the in-place kernel must not copy the operand",
  );
  assert.equal(program.outputSlots[0], program.inputSlots[0]);
  assertClose(await inPlace({ ...cache, data: cache.data.slice() }, rows, updates), want);

  const copying = await jit(f).lower(cache, rows, updates);
  assert.ok(copying.kernels.find((k) => k.kind === "scatter")!.wgsl.includes("for (var r = 0i"));
  assertClose(await jit(f)(cache, rows, updates), want);
});
