/**
 * Values of the fusions tests/compiler/fusion_test.ts pins by kernel count: a decoder block's
 * loss and gradients compiled (residual adds as matmul epilogues through the linear layers'
 * reshapes, softmax and the norms as row-wise kernels with their custom gradients, shared layout
 * copies) against `interpret`, on random inputs.
 */

import {
  add,
  type CodegenOptions,
  grad,
  type HostArray,
  matmul,
  mean,
  mul,
  relu,
  reshape,
  rmsNorm,
  sigmoid,
  silu,
  square,
  sum,
  tanh,
  type Tensor,
  transpose,
} from "../../mod.ts";
import { causalAttention } from "../../dsl/nn/layers.ts";
import { checkAsyncProperty, expectJitMatches, fc, seeded, TRANSCENDENTAL } from "./jit_helpers.ts";
import { SMALL_TILING } from "../helpers/matmul_configs.ts";

const [B, T, D, H, F] = [2, 8, 16, 2, 24];

/** x·Wᵀ over the tokens flattened into rows, as a linear layer computes it. */
const linear = (x: Tensor, w: Tensor) =>
  reshape(matmul(reshape(x, [B * T, x.shape[2]]), transpose(w)), [B, T, w.shape[0]]);
const heads = (x: Tensor) => transpose(reshape(x, [B, T, H, D / H]), [0, 2, 1, 3]);
const merge = (x: Tensor) => reshape(transpose(x, [0, 2, 1, 3]), [B, T, D]);

type Params = Record<"wq" | "wk" | "wv" | "wo" | "gate" | "up" | "down" | "g1" | "g2", Tensor>;

function block(p: Params, x: Tensor): Tensor {
  const a = rmsNorm(x, p.g1);
  const att = causalAttention(
    heads(linear(a, p.wq)),
    heads(linear(a, p.wk)),
    heads(linear(a, p.wv)),
  );
  const h = add(x, linear(merge(att), p.wo));
  const m = rmsNorm(h, p.g2);
  return add(h, linear(mul(silu(linear(m, p.gate)), linear(m, p.up)), p.down));
}

const loss = (p: Params, x: Tensor) => mean(square(block(p, x)));

function params(seed: number): Record<string, HostArray> {
  const shapes: Record<string, number[]> = {
    wq: [D, D],
    wk: [D, D],
    wv: [D, D],
    wo: [D, D],
    gate: [F, D],
    up: [F, D],
    down: [D, F],
    g1: [D],
    g2: [D],
  };
  return Object.fromEntries(
    Object.entries(shapes).map(([k, s], i) => [k, seeded(s, seed * 31 + i, -0.5, 0.5)]),
  );
}

/** The three matmul templates a device may get: vec4 register tiles (CPU), shared-memory tiles
 * (GPU), and the generic kernel (neither applies). */
const CODEGENS: [string, Partial<CodegenOptions>][] = [
  ["device default", {}],
  ["shared-memory tiles", {
    matmulTilings: [SMALL_TILING],
  }],
  ["generic", { vectorizedMatmul: false }],
];

for (const [label, codegen] of CODEGENS) {
  Deno.test(`a decoder block's loss and gradients: compiled = interpreted (${label})`, async () => {
    await checkAsyncProperty(
      fc.asyncProperty(fc.integer({ min: 1, max: 1 << 20 }), async (seed) => {
        const p = params(seed);
        const x = seeded([B, T, D], seed + 7, -1, 1);
        const opts = { codegen };
        await expectJitMatches(loss, [p, x], TRANSCENDENTAL, "loss", opts);
        const grads = grad(loss, { argnums: [0, 1] });
        await expectJitMatches(grads, [p, x], TRANSCENDENTAL, "grads", opts);
        // Outputs that are the block's own tensors (a reshape of a residual sum).
        const outputs = (q: Params, t: Tensor) => [block(q, t), sum(block(q, t))];
        await expectJitMatches(outputs, [p, x], TRANSCENDENTAL, "block", opts);
      }),
      { numRuns: 2 },
    );
  });
}

Deno.test("gated MLPs at random sizes: products that also store their activations = interpreted", async () => {
  // An activation of the gate and the gated product are more outputs of the gate's and the up
  // projection's kernels, and in the backward pass both gradients of the gated product are
  // outputs of the hidden gradient's product (fusion rule 8). Sizes that are not multiples of 4
  // take the scalar paths; every template must agree with the reference.
  const activations = { silu, tanh, relu, sigmoid } as const;
  await checkAsyncProperty(
    fc.asyncProperty(
      fc.record({
        rows: fc.integer({ min: 1, max: 12 }),
        d: fc.integer({ min: 1, max: 12 }),
        f: fc.integer({ min: 1, max: 20 }),
        act: fc.constantFrom(...Object.keys(activations) as (keyof typeof activations)[]),
        seed: fc.integer({ min: 1, max: 1 << 20 }),
      }),
      async ({ rows, d, f, act, seed }) => {
        const lin = (x: Tensor, w: Tensor) =>
          reshape(matmul(reshape(x, [2, rows, x.shape[2]]), transpose(w)), [2, rows, w.shape[0]]);
        const mlp = (x: Tensor, gate: Tensor, up: Tensor, down: Tensor) =>
          mean(square(lin(mul(activations[act](lin(x, gate)), lin(x, up)), down)));
        const args = [
          seeded([2, rows, d], seed, -1, 1),
          seeded([f, d], seed + 1, -0.5, 0.5),
          seeded([f, d], seed + 2, -0.5, 0.5),
          seeded([d, f], seed + 3, -0.5, 0.5),
        ];
        const grads = grad(mlp, { argnums: [0, 1, 2, 3] });
        for (const [label, codegen] of CODEGENS) {
          await expectJitMatches(mlp, args, TRANSCENDENTAL, `${act} loss (${label})`, { codegen });
          await expectJitMatches(grads, args, TRANSCENDENTAL, `${act} grads (${label})`, {
            codegen,
          });
        }
      },
    ),
    { numRuns: 8 },
  );
});
