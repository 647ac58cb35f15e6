/**
 * Straightforward decoder forward passes in plain f64 JavaScript loops, written from the Hugging
 * Face modeling code's equations (not from our DSL): the independent oracle for dsl/nn.
 */

import type { HostArray } from "../../dsl/host_array.ts";
import type { ModelConfig } from "../../dsl/nn/config.ts";

type Mat = number[][];

const matrix = (a: HostArray): Mat => {
  const [r, c] = a.shape;
  return Array.from({ length: r }, (_, i) => Array.from(a.data.subarray(i * c, (i + 1) * c)));
};
const vec = (a: HostArray) => Array.from(a.data);
/** x [T, in] · W where W is [in, out]. */
const mm = (x: Mat, w: Mat): Mat =>
  x.map((row) => w[0].map((_, j) => row.reduce((s, v, k) => s + v * w[k][j], 0)));
const transpose = (w: Mat): Mat => w[0].map((_, j) => w.map((r) => r[j]));
const addRow = (x: Mat, b: number[]) => x.map((r) => r.map((v, j) => v + b[j]));
const addMat = (x: Mat, y: Mat) => x.map((r, i) => r.map((v, j) => v + y[i][j]));

function rmsNorm(x: Mat, g: number[], eps: number): Mat {
  return x.map((r) => {
    const s = 1 / Math.sqrt(r.reduce((a, v) => a + v * v, 0) / r.length + eps);
    return r.map((v, j) => v * s * g[j]);
  });
}

function layerNorm(x: Mat, g: number[], b: number[], eps: number): Mat {
  return x.map((r) => {
    const mu = r.reduce((a, v) => a + v, 0) / r.length;
    const varc = r.reduce((a, v) => a + (v - mu) ** 2, 0) / r.length;
    return r.map((v, j) => ((v - mu) / Math.sqrt(varc + eps)) * g[j] + b[j]);
  });
}

/** Causal multi-head attention on [T, H·D] projections; kv heads shared by groups of heads. */
function attention(q: Mat, k: Mat, v: Mat, heads: number, kvHeads: number): Mat {
  const t = q.length;
  const d = q[0].length / heads;
  const out: Mat = q.map(() => new Array(heads * d).fill(0));
  for (let h = 0; h < heads; h++) {
    const kh = Math.floor(h / (heads / kvHeads));
    for (let i = 0; i < t; i++) {
      const scores = [];
      for (let j = 0; j <= i; j++) {
        let s = 0;
        for (let c = 0; c < d; c++) s += q[i][h * d + c] * k[j][kh * d + c];
        scores.push(s / Math.sqrt(d));
      }
      const m = Math.max(...scores);
      const e = scores.map((s) => Math.exp(s - m));
      const z = e.reduce((a, b) => a + b, 0);
      for (let j = 0; j <= i; j++) {
        for (let c = 0; c < d; c++) out[i][h * d + c] += (e[j] / z) * v[j][kh * d + c];
      }
    }
  }
  return out;
}

/** HF LlamaRotaryEmbedding + apply_rotary_pos_emb (rotate_half on the two halves). */
function rope(x: Mat, heads: number, theta: number): Mat {
  const d = x[0].length / heads;
  return x.map((row, pos) => {
    const out = [...row];
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < d / 2; i++) {
        const a = pos / theta ** ((2 * i) / d);
        const [x1, x2] = [row[h * d + i], row[h * d + i + d / 2]];
        out[h * d + i] = x1 * Math.cos(a) - x2 * Math.sin(a);
        out[h * d + i + d / 2] = x2 * Math.cos(a) + x1 * Math.sin(a);
      }
    }
    return out;
  });
}

const silu = (v: number) => v / (1 + Math.exp(-v));
const geluNew = (v: number) =>
  0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));

/** Logits [T, vocab] of one sequence. */
export function referenceLogits(
  cfg: ModelConfig,
  p: Record<string, HostArray>,
  ids: number[],
): Mat {
  const w = (n: string) => matrix(p[n]);
  const g = (n: string) => vec(p[n]);
  if (cfg.family === "llama") {
    const emb = w("model.embed_tokens.weight");
    let h: Mat = ids.map((i) => [...emb[i]]);
    for (let l = 0; l < cfg.layers; l++) {
      const pre = `model.layers.${l}.`;
      // nn.Linear: x·Wᵀ (+ b when the checkpoint has the bias: Qwen2's q/k/v, Llama's
      // attention_bias).
      const lin = (x: Mat, n: string) => {
        const y = mm(x, transpose(w(pre + n)));
        const b = pre + n.replace(/\.weight$/, ".bias");
        return p[b] ? addRow(y, g(b)) : y;
      };
      const x = rmsNorm(h, g(pre + "input_layernorm.weight"), cfg.normEps);
      const q = rope(lin(x, "self_attn.q_proj.weight"), cfg.heads, cfg.ropeTheta);
      const k = rope(lin(x, "self_attn.k_proj.weight"), cfg.kvHeads, cfg.ropeTheta);
      const v = lin(x, "self_attn.v_proj.weight");
      h = addMat(h, lin(attention(q, k, v, cfg.heads, cfg.kvHeads), "self_attn.o_proj.weight"));
      const y = rmsNorm(h, g(pre + "post_attention_layernorm.weight"), cfg.normEps);
      const gate = lin(y, "mlp.gate_proj.weight");
      const up = lin(y, "mlp.up_proj.weight");
      h = addMat(
        h,
        lin(gate.map((r, i) => r.map((v, j) => silu(v) * up[i][j])), "mlp.down_proj.weight"),
      );
    }
    h = rmsNorm(h, g("model.norm.weight"), cfg.normEps);
    return mm(h, transpose(w(cfg.tieEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight")));
  }
  const wte = w("transformer.wte.weight");
  const wpe = w("transformer.wpe.weight");
  let h: Mat = ids.map((i, t) => wte[i].map((v, j) => v + wpe[t][j]));
  for (let l = 0; l < cfg.layers; l++) {
    const pre = `transformer.h.${l}.`;
    // Conv1D: y = x·W + b with W stored [in, out].
    const conv = (x: Mat, n: string) => addRow(mm(x, w(pre + n + ".weight")), g(pre + n + ".bias"));
    const x = layerNorm(h, g(pre + "ln_1.weight"), g(pre + "ln_1.bias"), cfg.normEps);
    const qkv = conv(x, "attn.c_attn");
    const d = cfg.width;
    const part = (j: number) => qkv.map((r) => r.slice(j * d, (j + 1) * d));
    h = addMat(h, conv(attention(part(0), part(1), part(2), cfg.heads, cfg.heads), "attn.c_proj"));
    const y = layerNorm(h, g(pre + "ln_2.weight"), g(pre + "ln_2.bias"), cfg.normEps);
    h = addMat(h, conv(conv(y, "mlp.c_fc").map((r) => r.map(geluNew)), "mlp.c_proj"));
  }
  h = layerNorm(h, g("transformer.ln_f.weight"), g("transformer.ln_f.bias"), cfg.normEps);
  return mm(h, transpose(w(cfg.tieEmbeddings ? "transformer.wte.weight" : "lm_head.weight")));
}
