/**
 * Error messages name the op, the shapes involved and the user's call site (file:line of the test
 * code, not the library). These tests pin the messages.
 */

import assert from "node:assert/strict";
import {
  add,
  array,
  concat,
  crossEntropy,
  DslError,
  grad,
  interpret,
  matmul,
  reshape,
  sum,
  take,
  tanh,
  trace,
  transpose,
} from "../../mod.ts";
import type { Tensor } from "../../mod.ts";
import { callerLine } from "../helpers/site.ts";

const A = array([[1, 2, 3], [4, 5, 6]]);
const B = array([[1, 2], [3, 4], [5, 6], [7, 8]]);

function expectDslError(run: () => unknown): DslError {
  try {
    run();
  } catch (e) {
    assert.ok(e instanceof DslError, `expected a DslError, got ${e}`);
    return e;
  }
  throw new Error("expected an error");
}

/** Asserts the message is exactly `detail` followed by the call site on `line`. */
function assertMessage(e: DslError, detail: string, line: string) {
  assert.equal(e.message.split("\n")[0], detail);
  assert.ok(e.callSite?.startsWith(line + ":"), `call site ${e.callSite} ≠ ${line}`);
  assert.ok(e.message.endsWith(`\n  at ${e.callSite}`));
}

Deno.test("matmul with mismatched contraction dims names op, shapes and call site", () => {
  let line = "";
  const e = expectDslError(() =>
    interpret((a: Tensor, b: Tensor) => (line = callerLine(), matmul(a, b)), A, B)
  );
  assertMessage(
    e,
    "matmul: contraction dimensions differ (3 vs 4) (got f32[2,3], f32[4,2])",
    line,
  );
  assert.equal(e.op, "matmul");
  assert.deepEqual(e.shapes, ["f32[2,3]", "f32[4,2]"]);
});

Deno.test("broadcasting failure lists both shapes", () => {
  let line = "";
  const e = expectDslError(() =>
    interpret((a: Tensor, b: Tensor) => (line = callerLine(), add(a, b)), A, B)
  );
  assertMessage(e, "add: shapes f32[2,3], f32[4,2] cannot be broadcast together", line);
});

Deno.test("a bad axis names the axis and the rank", () => {
  let line = "";
  const e = expectDslError(() => interpret((a: Tensor) => (line = callerLine(), sum(a, 2)), A));
  assertMessage(e, "sum: axis 2 is out of range for f32[2,3] (rank 2)", line);
  const e2 = expectDslError(() => interpret((a: Tensor) => (line = callerLine(), sum(a, -3)), A));
  assertMessage(e2, "sum: axis -3 is out of range for f32[2,3] (rank 2)", line);
});

Deno.test("reshape to an incompatible size names both", () => {
  let line = "";
  const e = expectDslError(() =>
    interpret((a: Tensor) => (line = callerLine(), reshape(a, [4, -1])), A)
  );
  assertMessage(e, "reshape: cannot reshape f32[2,3] (6 elements) to [4,-1]", line);
});

Deno.test("transpose with a non-permutation is rejected", () => {
  let line = "";
  const e = expectDslError(() =>
    interpret((a: Tensor) => (line = callerLine(), transpose(a, [0, 0])), A)
  );
  assertMessage(e, "transpose: [0,0] is not a permutation of the axes of f32[2,3]", line);
});

Deno.test("concat with mismatched shapes lists them", () => {
  let line = "";
  const e = expectDslError(() =>
    interpret((a: Tensor, b: Tensor) => (line = callerLine(), concat([a, b], 0)), A, B)
  );
  assertMessage(e, "concat: shapes f32[2,3], f32[4,2] differ outside axis 0", line);
});

Deno.test("take with float indices is rejected", () => {
  let line = "";
  const e = expectDslError(() =>
    interpret((a: Tensor) => (line = callerLine(), take(a, array([0, 1]))), A)
  );
  assertMessage(e, "take: indices must be i32 (got f32[2])", line);
});

Deno.test("crossEntropy with labels of the wrong shape explains both forms", () => {
  let line = "";
  const labels = array([0, 1, 2], { dtype: "i32" });
  const e = expectDslError(() =>
    interpret((z: Tensor, y: Tensor) => (line = callerLine(), crossEntropy(z, y)), A, labels)
  );
  assertMessage(
    e,
    "crossEntropy: labels must be i32 class indices of shape [2] or f32/f16 probabilities of the " +
      "logits' shape (got f32[2,3], i32[3])",
    line,
  );
});

Deno.test("grad of a non-scalar loss names the shape and the call site of grad", () => {
  const df = grad((a: Tensor) => tanh(a));
  const line = callerLine();
  const e = expectDslError(() => interpret(df, A));
  assertMessage(
    e,
    "grad: the loss must be an f32 or f16 scalar, got f32[2,3]; reduce it (e.g. with sum or mean) first",
    line.replace(/:(\d+)$/, (_, n) => `:${Number(n) + 1}`),
  );
});

Deno.test("grad with respect to an integer argument is rejected", () => {
  const ints = array([1, 2], { dtype: "i32" });
  const e = expectDslError(() => interpret(grad((a: Tensor) => sum(a)), ints));
  assert.match(e.message, /^grad: argument 0 has a i32\[2\] leaf; only f32 and f16 values/);
});

Deno.test("argnums out of range is rejected", () => {
  const e = expectDslError(() => interpret(grad((a: Tensor) => sum(a), { argnums: 1 }), A));
  assert.match(e.message, /^grad: argnums 1 is out of range for 1 argument\(s\)/);
});

Deno.test("an op called outside a traced function says how to trace it", () => {
  const e = expectDslError(() => add(A, A));
  assert.match(e.message, /^add: called outside a traced function; run it through interpret/);
});

Deno.test("a tensor that escapes its trace is reported when reused", () => {
  let leaked: Tensor | undefined;
  interpret((a: Tensor) => (leaked = tanh(a)), A);
  const e = expectDslError(() => interpret((a: Tensor) => add(a, leaked!), A));
  assert.match(e.message, /^add: a f32\[2,3\] tensor escaped the trace it was created in/);
});

Deno.test("trace rejects an asynchronous function", () => {
  const e = expectDslError(() => trace(async (x: Tensor) => await x, { shape: [2] }));
  assert.match(e.message, /^trace: the traced function returned a Promise/);
});

Deno.test("interpret checks host arrays for consistency", () => {
  const bad = { shape: [2, 2], dtype: "f32" as const, data: new Float32Array(3) };
  assert.throws(
    () => interpret((a: Tensor) => a, bad),
    /interpret: data has 3 elements but shape \[2,2\] needs 4/,
  );
});
