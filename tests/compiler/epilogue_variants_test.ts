/**
 * Epilogue variants (issue 15, compile time): matmul kernels that differ only in their fused
 * epilogue share one pipeline, each epilogue chosen by a uniform, and bindings only other
 * epilogues read are bound to placeholders. The merged kernels compute what the separate ones did,
 * in every matmul template, and never bind more buffers than the device allows.
 */

import assert from "node:assert/strict";
import * as dsl from "../../mod.ts";
import { type CodegenOptions, gpu, interpret, jit, lower } from "../../mod.ts";
import type { Program, Tensor } from "../../mod.ts";
import { CPU_CODEGEN } from "../../runtime/jit.ts";
import { storageBindings } from "../../compiler/codegen/shape_params.ts";
import { assertTreeMatches } from "../runtime/jit_helpers.ts";
import { checkProductPrograms, productInputs, traceProducts } from "../helpers/products.ts";
import { SMALL_TILING } from "../helpers/matmul_configs.ts";

const EPILOGUES = ["plain", "tanh", "residual", "gate", "two outputs"] as const;
type Epilogue = (typeof EPILOGUES)[number];

/** y through `e`, with `extra` (y's shape) for the residual and the gate. */
function epilogue(e: Epilogue, y: Tensor, extra: Tensor): Tensor[] {
  switch (e) {
    case "plain":
      return [y];
    case "tanh":
      return [dsl.tanh(dsl.add(y, 0.5))];
    case "residual":
      return [dsl.add(y, extra)];
    case "gate":
      return [dsl.mul(dsl.sigmoid(y), extra)];
    case "two outputs":
      return [dsl.mul(y, 2), dsl.relu(y)];
  }
}

/** Products x_i·W_i (W_i stored [n, k] when `nt`), each through its epilogue. */
function products(epilogues: readonly Epilogue[], nt: boolean) {
  return (...ts: Tensor[]) =>
    epilogues.flatMap((e, i) => {
      const [x, w, extra] = ts.slice(3 * i, 3 * i + 3);
      return epilogue(e, dsl.matmul(x, nt ? dsl.transpose(w) : w), extra);
    });
}

const matmulTexts = (p: Program) =>
  new Set(p.kernels.filter((k) => k.kind === "matmul").map((k) => k.wgsl)).size;

Deno.test("products that differ only in their epilogue share one pipeline and compute what they did", async () => {
  const epilogues: Epilogue[] = ["plain", "tanh", "residual", "gate", "two outputs"];
  for (const nt of [false, true]) {
    const f = products(epilogues, nt);
    const args = productInputs(64, 48, [32, 32, 64, 32, 64], nt, 7);
    const graph = traceProducts(f, args);
    const opts = { maxStorageBuffers: 16, ...CPU_CODEGEN };
    const shared = lower(graph, opts);
    const separate = lower(graph, { ...opts, shareEpilogues: false });
    assert.equal(matmulTexts(separate), 5, "one text per epilogue without sharing");
    assert.equal(matmulTexts(shared), 1, "one text for all with sharing");
    assert.ok(shared.kernels.some((k) => k.slots.includes(-1)), "placeholders are bound");
    assert.ok(shared.kernels.every((k) => storageBindings(k) <= 16));
    const want = interpret(f, ...args);
    const got = await jit(f)(...args);
    const unshared = await jit(f, { codegen: { shareEpilogues: false } })(...args);
    assertTreeMatches(got, want, { rtol: 1e-5, atol: 1e-5 }, `nt ${nt}: shared vs interpret`);
    assertTreeMatches(got, unshared, { rtol: 0, atol: 0 }, `nt ${nt}: shared vs separate`);
  }
});

Deno.test("with a loop over tile rows, the merged text holds that loop once and branches per row", () => {
  const epilogues: Epilogue[] = ["plain", "gate", "two outputs"];
  const f = products(epilogues, false);
  // Different widths: each variant's last column is a size of its own, lifted.
  const args = productInputs(64, 48, [32, 64, 48], false, 5);
  const graph = traceProducts(f, args);
  const count = (text: string, s: string) => text.split(s).length - 1;
  for (const rowLoop of [true, false]) {
    const opts = { maxStorageBuffers: 16, ...CPU_CODEGEN, matmulEpilogueRowLoop: rowLoop };
    const texts = lower(graph, opts).kernels.filter((k) => k.kind === "matmul").map((k) => k.wgsl);
    assert.equal(new Set(texts).size, 1, `rowLoop ${rowLoop}: one text`);
    const [text] = texts;
    assert.equal(count(text, "epilogue_ =="), 3, `rowLoop ${rowLoop}: three branches`);
    const rowLoops = count(text, "for (var ti = 0i;");
    assert.equal(rowLoops, rowLoop ? 1 : 0, `rowLoop ${rowLoop}: row loops`);
    if (rowLoop) {
      // The branches sit inside the row loop, each around its column loop only.
      assert.ok(text.indexOf("for (var ti = 0i;") < text.indexOf("epilogue_ == 0i"));
      assert.equal(count(text, "for (var tj = 0i;"), 3);
    }
  }
});

Deno.test("epilogue variants stay within the binding limit: more texts, never more bindings", async () => {
  const epilogues: Epilogue[] = ["gate", "two outputs", "residual", "gate", "tanh"];
  const f = products(epilogues, true);
  const args = productInputs(40, 32, [16, 16, 16, 16, 16], true, 3);
  const graph = traceProducts(f, args);
  for (const limit of [4, 5, 6, 8]) {
    const p = lower(graph, { ...CPU_CODEGEN, maxStorageBuffers: limit });
    // A CPU adapter's sizes buffer is a storage binding too.
    assert.ok(p.kernels.every((k) => storageBindings(k) <= limit), `limit ${limit}`);
    const wide = lower(graph, { ...CPU_CODEGEN, maxStorageBuffers: 16 });
    assert.ok(matmulTexts(p) >= matmulTexts(wide));
  }
  // Four bindings hold the two operands and one epilogue (of one or two): nothing merges.
  const narrow = lower(graph, { ...CPU_CODEGEN, maxStorageBuffers: 4 });
  assert.equal(narrow.kernels.filter((k) => k.slots.includes(-1)).length, 0);
  const device = await gpu({ limits: { maxStorageBuffersPerShaderStage: 6 } });
  const got = await jit(f, { device })(...args);
  assertTreeMatches(got, interpret(f, ...args), { rtol: 1e-5, atol: 1e-5 }, "limit 6");
});

// The matmul templates a device may get: a CPU adapter's register tiles, a GPU's small tiles,
// the shared-memory kernel, the generic kernel.
const configs: [string, Partial<CodegenOptions>][] = [
  ["cpu", { ...CPU_CODEGEN }],
  ["cpu, rows unrolled", { ...CPU_CODEGEN, matmulEpilogueRowLoop: false }],
  ["gpu tiles", { matmulRowBlock: 4, matmulColumnGroups: 1, matmulWorkgroup: [16, 16] }],
  ["shared", { matmulTilings: [SMALL_TILING] }],
  ["generic", { vectorizedMatmul: false }],
];

Deno.test("epilogue variants match the reference at random sizes, epilogues and templates", async () => {
  const merged = await checkProductPrograms(
    EPILOGUES,
    4,
    products,
    configs,
    async ({ f, args, want, epilogues, label, codegen }) => {
      const run = jit(f, { codegen });
      const program = await run.lower(...args);
      const separate = await jit(f, { codegen: { ...codegen, shareEpilogues: false } })
        .lower(...args);
      assert.ok(matmulTexts(program) <= matmulTexts(separate), label);
      const got = await run(...args);
      assertTreeMatches(got, want, { rtol: 1e-5, atol: 1e-5 }, `${epilogues} (${label})`);
      return matmulTexts(program) < matmulTexts(separate);
    },
    12,
  );
  assert.ok(merged >= 6, `only ${merged} programs merged epilogues`);
});
