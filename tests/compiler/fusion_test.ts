/**
 * Kernel counts, tinygrad-style: fusion decisions are pinned by how many kernels a program
 * lowers to, not only by its values (values are checked against the CPU reference in
 * tests/runtime/).
 */

import assert from "node:assert/strict";
import * as dsl from "../../mod.ts";
import { lower, type Program, trace } from "../../mod.ts";
import type { Tensor } from "../../mod.ts";
import { adamUpdate, mlpState, mlpTrainStep, randomArray } from "../helpers/models.ts";
import { causalAttention } from "../../dsl/nn/layers.ts";
import { storageBindings } from "../../compiler/codegen/shape_params.ts";

const spec = (...shape: number[]) => ({ shape });
/** The kernels fusion makes (grouped dispatches, kernel_groups_test.ts, would join some). */
function kernels(f: (...a: never[]) => unknown, ...specs: unknown[]): Program {
  return lower(trace(f, ...specs), { maxStorageBuffers: 16, groupKernels: false });
}

Deno.test("a + b + c is one kernel", () => {
  const p = kernels(
    (a: Tensor, b: Tensor, c: Tensor) => dsl.add(dsl.add(a, b), c),
    spec(4, 5),
    spec(4, 5),
    spec(5),
  );
  assert.equal(p.kernels.length, 1);
  assert.deepEqual(p.kernels[0].ops, ["add", "reshape", "broadcast", "add"]);
});

Deno.test("gelu(x·W + b) is one kernel: the matmul absorbs bias and activation", () => {
  const p = kernels(
    (x: Tensor, w: Tensor, b: Tensor) => dsl.gelu(dsl.add(dsl.matmul(x, w), b)),
    spec(8, 16),
    spec(16, 4),
    spec(4),
  );
  assert.equal(p.kernels.length, 1);
  assert.equal(p.kernels[0].kind, "matmul");
  assert.ok(p.kernels[0].ops.includes("tanh"));
});

Deno.test("softmax, logSoftmax and layerNorm are one row-wise kernel each", () => {
  for (
    const f of [
      (x: Tensor) => dsl.softmax(x),
      (x: Tensor) => dsl.logSoftmax(x),
      (x: Tensor) => dsl.layerNorm(x),
      (x: Tensor) => dsl.rmsNorm(x),
    ]
  ) {
    const p = kernels(f, spec(32, 64));
    assert.equal(p.kernels.length, 1, String(p));
    assert.equal(p.kernels[0].kind, "rowwise");
  }
  // softmax over the leading axis: the same rule with another row axis.
  assert.equal(kernels((x: Tensor) => dsl.softmax(x, 0), spec(32, 64)).kernels.length, 1);
});

Deno.test("logsumexp to a vector is one reduction kernel with its max phase inside", () => {
  const p = kernels((x: Tensor) => dsl.logsumexp(x, -1), spec(16, 50));
  assert.equal(p.kernels.length, 1);
  assert.equal(p.kernels[0].kind, "reduce");
});

Deno.test("a cross-entropy's loss and gradient keep no exponentials: log-sum-exp is one row-wise reduction", () => {
  // valueAndGrad of the mean cross-entropy of [64, 50] logits: the forward pass's log-sum-exp is
  // one reduction kernel (its max phase inside) writing [64, 1], and the gradient recomputes
  // exp(z − lse) where it is read (logsumexp's custom gradient), so the only [64, 50] buffers
  // are the logits and their gradient.
  const loss = (z: Tensor, y: Tensor) => dsl.valueAndGrad((t: Tensor) => dsl.crossEntropy(t, y))(z);
  const p = kernels(loss, spec(64, 50), { shape: [64], dtype: "i32" });
  const lse = p.kernels.filter((k) => k.output.split(" ").includes("f32[64,1]"));
  assert.equal(lse.length, 1, p.toString());
  assert.equal(lse[0].kind, "reduce");
  assert.ok(lse[0].ops.includes("max") && lse[0].ops.includes("exp"), lse[0].ops.join(","));
  // Rule 11: the target's log-probability (x − lse against the one-hot) is summed in the same
  // kernel, a second output [64], so the logits are read by one reduction kernel.
  assert.deepEqual(lse[0].output.split(" "), ["f32[64,1]", "f32[64]"], p.toString());
  const wide = p.kernels.filter((k) => k.output.includes("[64,50]"));
  assert.equal(wide.length, 1, "only the gradient is written at the logits' shape");
  assert.ok(p.kernels.length <= 3, p.toString());
});

Deno.test("rule 11: reductions of one space over the same axes are one kernel, others are not", () => {
  // A count and the sum it divides (a masked mean), over the same rows: one kernel, two outputs.
  const mean = (x: Tensor, m: Tensor) => {
    const count = dsl.sum(m, 1);
    return [count, dsl.div(dsl.sum(dsl.mul(x, m), 1), dsl.maximum(count, 1))];
  };
  const p = kernels(mean, spec(8, 30), spec(8, 30));
  assert.equal(p.kernels.length, 1, p.toString());
  assert.deepEqual(p.kernels[0].output.split(" "), ["f32[8]", "f32[8]"]);
  // Over different axes, or with the second reading the first at another row: apart.
  const across = (
    x: Tensor,
  ) => [dsl.sum(x, 1), dsl.sum(dsl.mul(x, dsl.sum(x, 0, { keepDims: true })), 0)];
  assert.equal(kernels(across, spec(8, 30)).kernels.filter((k) => k.kind === "reduce").length, 2);
  const shifted = (x: Tensor) => {
    const s = dsl.sum(x, 1);
    const reversed = dsl.take(s, [7, 6, 5, 4, 3, 2, 1, 0], 0);
    return [s, dsl.sum(dsl.mul(x, dsl.reshape(reversed, [8, 1])), 1)];
  };
  const q = kernels(shifted, spec(8, 30));
  assert.equal(q.kernels.filter((k) => k.kind === "reduce").length, 2, q.toString());
  // Switched off: as before.
  const apart = lower(trace(mean, spec(8, 30), spec(8, 30)), {
    maxStorageBuffers: 16,
    groupKernels: false,
    siblingReductions: false,
  });
  assert.equal(apart.kernels.length, 2, apart.toString());
});

Deno.test("rule 8 with inPlaceBindings counts an output written over a donated input as one binding", () => {
  // Adam's moments of four same-shape parameters: each update reads g, m, v and writes m', v'
  // (5 bindings); m and v are donated, so m' and v' are written over them (3 bindings).
  const moments = (...xs: Tensor[]) =>
    [0, 1, 2, 3].flatMap((i) => {
      const [g, m, v] = xs.slice(3 * i, 3 * i + 3);
      return [dsl.add(dsl.mul(0.9, m), dsl.mul(0.1, g)), dsl.add(dsl.mul(0.99, v), dsl.square(g))];
    });
  const specs = Array.from({ length: 12 }, () => spec(6, 5));
  const lowered = (donate: number[], inPlaceBindings: boolean) =>
    lower(trace(moments, ...specs), {
      maxStorageBuffers: 9,
      groupKernels: false,
      donate: new Set(donate),
      inPlaceBindings,
    });
  const moms = [1, 2, 4, 5, 7, 8, 10, 11];
  // m and v of every parameter donated: three updates a kernel (9 bindings), then one.
  const counted = lowered(moms, true);
  assert.deepEqual(counted.kernels.map((k) => k.bindings), [9, 3], counted.toString());
  // Not counted (the CPU adapters' setting): merged as if every output bound a buffer of its own.
  const uncounted = lowered(moms, false);
  assert.deepEqual(uncounted.kernels.map((k) => k.bindings), [5, 5, 3], uncounted.toString());
  // Nothing donated: nothing is written in place, whatever the setting.
  const fresh = lowered([], true);
  assert.deepEqual(fresh.kernels.map((k) => k.bindings), [8, 8, 5], fresh.toString());
});

Deno.test("a broadcast read by two kernels is stored unbroadcast; its readers expand it", () => {
  // r = log Σ_row exp(x), broadcast back over the row, read by a row reduction (Σ_row (r − x)·w)
  // and by an elementwise output (exp(x − r)): r is stored as its 32 values, not as a [32, 40]
  // copy that one of its readers writes.
  const f = (x: Tensor, w: Tensor) => {
    const lse = dsl.log(dsl.sum(dsl.exp(x), 1, { keepDims: true }));
    const r = dsl.broadcastTo(lse, [32, 40]);
    return [dsl.sum(dsl.mul(dsl.sub(r, x), w), 1), dsl.exp(dsl.sub(x, r))];
  };
  const p = kernels(f, spec(32, 40), spec(32, 40));
  assert.ok(p.kernels.some((k) => k.output.split(" ").includes("f32[32,1]")), p.toString());
  const wide = p.kernels.filter((k) => k.output.includes("[32,40]"));
  assert.deepEqual(wide.map((k) => k.output), ["f32[32,40]"], p.toString());
  assert.ok(p.kernels.length <= 2, p.toString());
});

Deno.test("an Adam update over a parameter record is one kernel per parameter", () => {
  const shapes = { w: [64, 32], b: [32], e: [100, 16] };
  const specs = Object.fromEntries(Object.entries(shapes).map(([k, s]) => [k, { shape: s }]));
  const step = (
    p: Record<string, Tensor>,
    g: Record<string, Tensor>,
    m: Record<string, Tensor>,
    v: Record<string, Tensor>,
  ) => adamUpdate(p, g, m, v, 3);
  const p = kernels(step, specs, specs, specs, specs);
  assert.equal(p.kernels.length, 3);
  for (const k of p.kernels) assert.equal(k.output.split(" ").length, 3); // param, m, v
});

Deno.test("a two-layer MLP training step stays within its kernel budget", () => {
  // Budget: forward 4 (two matmuls with fused bias/relu, the logits + one-hot targets, a
  // row-wise log-softmax part), loss 3, backward 9 (4 matmuls, 3 bias reductions, softmax
  // gradient, relu mask) + 3 row-major copies of transposed matmul operands (hᵀ, W2ᵀ, xᵀ: the
  // vectorised kernel needs them), Adam 4 (one per parameter) = 23 + 1 slack for the max phase.
  const state = mlpState(784, 256, 10);
  const labels = { shape: [64], dtype: "i32" as const, data: new Int32Array(64) };
  const g = trace(mlpTrainStep, state, randomArray([64, 784], 1), labels);
  const fused = lower(g, { maxStorageBuffers: 16 });
  const unfused = lower(g, { maxStorageBuffers: 16, fuse: false });
  assert.ok(fused.kernels.length <= 24, String(fused));
  assert.ok(
    unfused.kernels.length >= 3 * fused.kernels.length,
    `${unfused.kernels.length} op-by-op`,
  );
});

Deno.test("no kernel binds more storage buffers than allowed, even with a tiny limit", () => {
  const f = (xs: Tensor[]) => xs.reduce((acc, x) => dsl.add(acc, dsl.tanh(x)));
  const specs = Array.from({ length: 12 }, () => spec(8));
  for (const limit of [4, 5, 8, 16]) {
    const p = lower(trace(f, specs), { maxStorageBuffers: limit });
    for (const k of p.kernels) {
      assert.ok(storageBindings(k) <= limit, `${k.name}: ${storageBindings(k)} > ${limit}`);
    }
    if (limit < 13) assert.ok(p.kernels.length > 1);
  }
});

Deno.test("views fuse as index arithmetic: transpose, slice, concat, pad, broadcast", () => {
  const p = kernels(
    (x: Tensor) =>
      dsl.add(
        dsl.pad(dsl.concat([dsl.slice(x, [0, 0], [4, 2]), dsl.transpose(x).reshape([4, 3])], 1), [[
          1,
          1,
        ]]),
        1,
      ),
    spec(4, 3),
  );
  assert.equal(p.kernels.length, 1);
});

Deno.test("a value needed by two kernels is computed once, into a buffer", () => {
  const p = kernels(
    (x: Tensor, y: Tensor) => {
      const e = dsl.exp(dsl.mul(x, y));
      return [dsl.sum(e, 0), dsl.sum(e, 1)];
    },
    spec(6, 7),
    spec(6, 7),
  );
  assert.equal(p.kernels.length, 3);
  assert.equal(p.kernels.filter((k) => k.ops.includes("exp")).length, 1);
});

Deno.test("a short chain over one array, needed by two kernels, is recomputed in each", () => {
  // exp(x) reads x alone: each reduction computes it again rather than reading it back from a
  // buffer (rule 2's exception); with `recomputeElementwise` off it is stored once.
  const f = (x: Tensor) => {
    const e = dsl.exp(x);
    return [dsl.sum(e, 0), dsl.sum(e, 1)];
  };
  const graph = trace(f, spec(6, 7));
  const p = lower(graph, { maxStorageBuffers: 16 });
  assert.equal(p.kernels.length, 2, String(p));
  assert.ok(p.kernels.every((k) => k.ops.includes("exp")), String(p));
  const stored = lower(graph, { maxStorageBuffers: 16, recomputeElementwise: false });
  assert.equal(stored.kernels.length, 3, String(stored));
});

Deno.test("op-by-op mode lowers one primitive per kernel", () => {
  const p = lower(trace((x: Tensor) => dsl.sum(dsl.exp(dsl.neg(x))), spec(5)), {
    maxStorageBuffers: 16,
    fuse: false,
  });
  assert.deepEqual(p.kernels.map((k) => k.ops.length), [1, 1, 1]);
});

Deno.test("the Program listing names kernels, fused ops, bindings and dispatch", () => {
  const p = kernels((x: Tensor, w: Tensor) => dsl.tanh(dsl.matmul(x, w)), spec(8, 4), spec(4, 2));
  const text = String(p);
  assert.match(text, /^Program: 1 kernel\(s\)/);
  assert.match(
    text,
    /#0 matmul_matmul_\d+ -> f32\[8,2\] \[matmul, tanh\] bindings=3 dispatch=\(\d+,\d+,1\)/,
  );
  assert.match(p.dump(), /@compute @workgroup_size/);
});

Deno.test("kernels of the same code share one pipeline: pipelineCount counts distinct WGSL", () => {
  // Three layers of identical shapes: three kernels (different buffers), one text to compile.
  const p = kernels(
    (x: Tensor, w1: Tensor, w2: Tensor, w3: Tensor) =>
      [w1, w2, w3].reduce((h, w) => dsl.tanh(dsl.matmul(h, w)), x),
    spec(8, 16),
    spec(16, 16),
    spec(16, 16),
    spec(16, 16),
  );
  assert.equal(p.kernels.length, 3);
  assert.equal(p.pipelineCount, 1);
  assert.match(String(p), /^Program: 3 kernel\(s\) \(1 pipeline\(s\)\)/);
  // A different shape is different code, unless the sizes that differ are read from a uniform
  // (shape_params.ts): then the two kernels share one text, each with its own sizes.
  const twoShapes = (x: Tensor, w1: Tensor, w2: Tensor) =>
    dsl.tanh(dsl.matmul(dsl.tanh(dsl.matmul(x, w1)), w2));
  const specs = [spec(8, 16), spec(16, 16), spec(16, 12)];
  const own = lower(trace(twoShapes, ...specs), { maxStorageBuffers: 16, shareShapes: false });
  assert.equal(own.pipelineCount, 2);
  const q = kernels(twoShapes, ...specs);
  assert.equal(q.pipelineCount, 1);
  assert.notDeepEqual(q.kernels[0].params, q.kernels[1].params);
});

/** x [b, t, d] through a linear layer that flattens its tokens: x·Wᵀ as [b·t, d] rows. */
const linear = (x: Tensor, w: Tensor) =>
  dsl.reshape(
    dsl.matmul(dsl.reshape(x, [x.shape[0] * x.shape[1], x.shape[2]]), dsl.transpose(w)),
    [x.shape[0], x.shape[1], w.shape[0]],
  );

Deno.test("a residual add read through the linear layer's reshape is the matmul's epilogue", () => {
  // h = x + linear(x, W) feeds two kernels (a norm and the next residual), as in a decoder block.
  const p = kernels(
    (x: Tensor, w: Tensor) => {
      const h = dsl.add(x, linear(x, w));
      return [dsl.rmsNorm(h), dsl.add(h, 1)];
    },
    spec(2, 8, 16),
    spec(16, 16),
  );
  const matmuls = p.kernels.filter((k) => k.kind === "matmul");
  assert.equal(matmuls.length, 1, String(p));
  assert.ok(matmuls[0].ops.includes("add"), String(p));
  assert.equal(p.kernels.length, 3, String(p)); // matmul + add, the norm, the +1
});

Deno.test("a gated MLP stores its products and gated product; σ(g) and silu(g) are recomputed where read", () => {
  // silu(x·Gᵀ) ⊙ (x·Uᵀ) through the linear layers' reshapes, with its gradient: both products
  // are kept for the backward pass. The up projection's kernel computes silu(g) from the stored g
  // and also stores the gated product (fusion rule 8); σ(g) and silu(g), short chains over g, are
  // recomputed in the backward pass instead of stored (rule 2's exception). With
  // `recomputeElementwise` off the gate's kernel stores them too, as it did before.
  const mlp = (x: Tensor, gate: Tensor, up: Tensor, down: Tensor) =>
    dsl.sum(dsl.square(linear(dsl.mul(dsl.silu(linear(x, gate)), linear(x, up)), down)));
  const specs = [spec(2, 8, 16), spec(24, 16), spec(24, 16), spec(16, 24)];
  const graph = trace(dsl.grad(mlp, { argnums: [1, 2, 3] }), ...specs);
  for (const recompute of [true, false]) {
    const p = lower(graph, {
      maxStorageBuffers: 16,
      groupKernels: false,
      recomputeElementwise: recompute,
    });
    const [gate, up] = p.kernels;
    assert.deepEqual([gate.kind, up.kind], ["matmul", "matmul"], String(p));
    const outputs = (k: typeof gate) => k.output.split(" ").length;
    assert.equal(outputs(gate), recompute ? 1 : 3, String(p));
    assert.ok(gate.ops.includes("sigmoid") !== recompute, String(p));
    assert.ok(up.ops.includes("sigmoid") === recompute && outputs(up) === 2, String(p));
    // Where recomputed, the kernel of the gated product's gradient computes σ(g) itself.
    const backward = p.kernels.slice(2).filter((k) => k.ops.includes("sigmoid"));
    assert.equal(backward.length, recompute ? 1 : 0, String(p));
  }
});

Deno.test("GPT-2's GELU stores its input and output only: tanh and 1 + tanh are recomputed", () => {
  // gelu(x·W + b) feeding a second layer, with its gradient: the backward pass reads tanh(…) and
  // 1 + tanh(…), chains of 7 ops over the stored x·W + b. They were two more [tokens, 4·d]
  // arrays per layer (GPT-2 small's default step: 1.5 → 0.93 GiB of activations at the peak).
  const mlp = (x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor) =>
    dsl.sum(dsl.square(dsl.matmul(dsl.gelu(dsl.add(dsl.matmul(x, w1), b1)), w2)));
  const graph = trace(
    dsl.grad(mlp, { argnums: [1, 2, 3] }),
    spec(16, 8),
    spec(8, 32),
    spec(32),
    spec(32, 8),
  );
  const stored = (recompute: boolean) => {
    const p = lower(graph, { maxStorageBuffers: 16, recomputeElementwise: recompute });
    const first = p.kernels[0];
    assert.ok(first.kind === "matmul" && first.ops.includes("tanh"), String(p));
    return first.output.split(" ").length;
  };
  assert.equal(stored(true), 2);
  assert.ok(stored(false) > 2);
});

Deno.test("the input gradient of sibling layers is one kernel of summed products", () => {
  // dx = dq·Wq + dk·Wk + dv·Wv: with `matmulSumProducts` (CPU adapters) each product accumulates
  // into one register tile; without it, each product's kernel adds the previous one's output.
  // A product reached through anything but adds (2·(x·W)) keeps its own kernel.
  const f = (dq: Tensor, dk: Tensor, dv: Tensor, wq: Tensor, wk: Tensor, wv: Tensor) => [
    dsl.mul(dsl.add(dsl.add(dsl.matmul(dq, wq), dsl.matmul(dk, wk)), dsl.matmul(dv, wv)), 3),
    dsl.add(dsl.mul(dsl.matmul(dq, wk), 2), dsl.matmul(dv, wq)),
  ];
  const specs = [spec(16, 12), spec(16, 12), spec(16, 12), spec(12, 8), spec(12, 8), spec(12, 8)];
  const summed = lower(trace(f, ...specs), { maxStorageBuffers: 16, matmulSumProducts: true });
  const sums = summed.kernels.filter((k) => k.ops.filter((op) => op === "matmul").length === 3);
  assert.equal(sums.length, 1, String(summed));
  assert.equal(summed.kernels.length, 3, String(summed)); // the sum, then 2·(dq·Wk) and its add
  assert.equal(kernels(f, ...specs).kernels.length, 5);
});

Deno.test("an elementwise kernel moves past a product to merge with a later one", () => {
  // The query's and the key's rotary embeddings, as in attention: each reads its own projection
  // through a view, so neither is an epilogue; the query's moves past the key's projection (which
  // does not read it) and the two are one kernel.
  const p = kernels(
    (x: Tensor, wq: Tensor, wk: Tensor) => {
      const rotated = (w: Tensor) => dsl.mul(dsl.transpose(dsl.matmul(x, w)), 2);
      return [rotated(wq), rotated(wk)];
    },
    spec(8, 16),
    spec(16, 12),
    spec(16, 12),
  );
  assert.deepEqual(p.kernels.map((k) => k.kind), ["matmul", "matmul", "elementwise"], String(p));
});

Deno.test("a mask built from iotas is recomputed where it is read, not stored", () => {
  // A causal mask used by two products' epilogues (two attention layers): comparing two indices
  // costs less than a kernel that stores the mask and two reads of it.
  const p = kernels(
    (a: Tensor, b: Tensor) => {
      const rows = dsl.reshape(dsl.arange(8), [8, 1]), cols = dsl.reshape(dsl.arange(8), [1, 8]);
      const mask = dsl.less(cols, dsl.add(rows, 1));
      const masked = (x: Tensor) => dsl.where(mask, dsl.matmul(x, dsl.transpose(x)), -1e9);
      return [masked(a), masked(b)];
    },
    spec(8, 16),
    spec(8, 16),
  );
  assert.equal(p.kernels.length, 2, String(p));
  assert.ok(p.kernels.every((k) => k.kind === "matmul" && k.ops.includes("less")), String(p));
});

Deno.test("a buffer read through a reshape is read at the view's flat index", () => {
  // The residual x [2, 8, 16] added to the product's [16, 16] rows: its element is x's flat
  // element row·16 + col, with no round trip through x's own shape (divisions by 8·16, % 8).
  const p = kernels(
    (x: Tensor, w: Tensor) =>
      dsl.add(dsl.reshape(x, [16, 16]), dsl.matmul(dsl.reshape(x, [16, 16]), w)),
    spec(2, 8, 16),
    spec(16, 16),
  );
  assert.equal(p.kernels.length, 1, String(p));
  const wgsl = p.kernels[0].wgsl;
  assert.ok(!wgsl.includes("128i") && !wgsl.includes("% 8i"), wgsl);
});

Deno.test("an epilogue stops where a second product joins: the sum of two branches' products", () => {
  // dx = g₁·W₁ + g₂·W₂ scaled by γ and read by a row-wise kernel: one product goes to memory, the
  // other adds it (and γ) in its epilogue, and the row-wise kernel reads that.
  const p = kernels(
    (g1: Tensor, g2: Tensor, w1: Tensor, w2: Tensor, gamma: Tensor) => {
      const flat = (g: Tensor, w: Tensor) =>
        dsl.reshape(dsl.matmul(dsl.reshape(g, [16, 8]), w), [2, 8, 16]);
      return dsl.rmsNorm(dsl.mul(dsl.add(flat(g1, w1), flat(g2, w2)), gamma));
    },
    spec(2, 8, 8),
    spec(2, 8, 8),
    spec(8, 16),
    spec(8, 16),
    spec(16),
  );
  assert.equal(p.kernels.length, 3, String(p));
  const epilogue = p.kernels.find((k) => k.kind === "matmul" && k.ops.includes("add"));
  assert.ok(epilogue?.ops.includes("mul"), String(p));
});

Deno.test("attention: softmax over the scores is one row-wise kernel, forward and backward", () => {
  const attention = (q: Tensor, k: Tensor, v: Tensor) => causalAttention(q, k, v);
  const s = [spec(2, 2, 8, 4), spec(2, 2, 8, 4), spec(2, 2, 8, 4)] as const;
  const forward = kernels(attention, ...s);
  // scores·scale masked (matmul epilogue; the causal mask is index arithmetic), softmax, P·v
  assert.equal(forward.kernels.length, 3, String(forward));
  assert.equal(forward.kernels.filter((k) => k.kind === "rowwise").length, 1, String(forward));
  assert.ok(!forward.kernels.some((k) => k.kind === "reduce"), String(forward));
  const loss = (q: Tensor, k: Tensor, v: Tensor) => dsl.sum(dsl.square(attention(q, k, v)));
  const backward = kernels(dsl.grad(loss, { argnums: [0, 1, 2] }), ...s);
  // The forward (its mask now a bool buffer), dY, dP = dY·vᵀ, the softmax gradient (row-wise),
  // dq, dk, dv and three layout copies of transposed operands: 13 (was 16 before the softmax's
  // custom gradient and its row-wise kernel over the product).
  assert.ok(backward.kernels.length <= 13, String(backward));
  assert.equal(backward.kernels.filter((k) => k.kind === "rowwise").length, 2, String(backward));
  assert.ok(!backward.kernels.some((k) => k.kind === "reduce" && k.ops.includes("max")));
});

Deno.test("two matmuls reading one transposed value under different reshapes share one copy", () => {
  // Merged heads [b, t, h, d] feed a flat [b·t, h·d] product and a per-batch [b, t, h·d] one.
  const p = kernels(
    (x: Tensor, w: Tensor, a: Tensor) => {
      const merged = dsl.transpose(x, [0, 2, 1, 3]); // [2, 8, 4, 4]
      const flat = dsl.matmul(dsl.reshape(merged, [16, 16]), w);
      const batched = dsl.matmul(dsl.reshape(merged, [2, 8, 16]), a);
      return [flat, batched];
    },
    spec(2, 4, 8, 4),
    spec(16, 16),
    spec(2, 16, 4),
  );
  const copies = p.kernels.filter((k) => k.kind === "elementwise");
  assert.equal(copies.length, 1, String(p));
  assert.equal(p.kernels.length, 3, String(p));
});
