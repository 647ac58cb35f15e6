"""PyTorch anchor for bench/scale.ts: the same training step as ours, on the same model shapes,
written the way a PyTorch user would write it. On the CPU, or on the GPU in f32 with
HDPISSA_TORCH_DEVICE=cuda (torch_device.py).

    /usr/bin/python3 bench/torch_scale.py '{"model": {...}, "method": "hdpissa", ...}'

The model (GPT-2 or a Qwen2/Llama decoder, random N(0, 0.02) weights) follows the Hugging Face
equations; the step is one of
  - hdpissa: K shards, each with its own fixed singular slices A_k (r x n), B_k (m x r) of every
    adapted matrix; forward with the exact weight, projected gradients g_A = B_k^T G, g_B = G A_k^T
    (gradients of zero displacements in x (dB_k A_k + B_k dA_k), never a dense G), Adam on
    (dA_k, dB_k), then dW = -(dB_cat A_cat + (B_cat - dB_cat) dA_cat) applied to every adapted
    matrix (hdpissa-spec.md, steps 2 to 6);
  - lora: data-parallel LoRA (frozen W, trainable A, B with s = 1, K shards' gradients averaged,
    one Adam step).
Shards run one after another (one process, as our virtual mode runs them on one device).
Prints one JSON line per sequence length.
"""

import json
import math
import resource
import sys
import time

import torch
import torch.nn.functional as F

from torch_device import DEVICE, describe, peak_device_gib, sync

torch.set_num_threads(2)
torch.manual_seed(0)


def init_params(cfg):
    """Random weights with Hugging Face names and shapes (f32)."""
    g = lambda *shape: torch.randn(*shape) * 0.02
    ones = lambda n: torch.ones(n)
    zeros = lambda n: torch.zeros(n)
    w, f, v = cfg["width"], cfg["ffn"], cfg["vocab"]
    p = {}
    if cfg["family"] == "gpt2":
        p["transformer.wte.weight"] = g(v, w)
        p["transformer.wpe.weight"] = g(cfg["context"], w)
        for i in range(cfg["layers"]):
            h = f"transformer.h.{i}."
            p[h + "ln_1.weight"], p[h + "ln_1.bias"] = ones(w), zeros(w)
            p[h + "attn.c_attn.weight"], p[h + "attn.c_attn.bias"] = g(w, 3 * w), zeros(3 * w)
            p[h + "attn.c_proj.weight"], p[h + "attn.c_proj.bias"] = g(w, w), zeros(w)
            p[h + "ln_2.weight"], p[h + "ln_2.bias"] = ones(w), zeros(w)
            p[h + "mlp.c_fc.weight"], p[h + "mlp.c_fc.bias"] = g(w, f), zeros(f)
            p[h + "mlp.c_proj.weight"], p[h + "mlp.c_proj.bias"] = g(f, w), zeros(w)
        p["transformer.ln_f.weight"], p["transformer.ln_f.bias"] = ones(w), zeros(w)
    else:
        d = w // cfg["heads"]
        kv = cfg["kvHeads"] * d
        p["model.embed_tokens.weight"] = g(v, w)
        for i in range(cfg["layers"]):
            h = f"model.layers.{i}."
            p[h + "input_layernorm.weight"] = ones(w)
            p[h + "self_attn.q_proj.weight"] = g(w, w)
            p[h + "self_attn.k_proj.weight"] = g(kv, w)
            p[h + "self_attn.v_proj.weight"] = g(kv, w)
            p[h + "self_attn.o_proj.weight"] = g(w, w)
            for proj, n in (("q", w), ("k", kv), ("v", kv)):
                if proj in cfg.get("attentionBias", ""):
                    p[h + f"self_attn.{proj}_proj.bias"] = zeros(n)
            p[h + "post_attention_layernorm.weight"] = ones(w)
            p[h + "mlp.gate_proj.weight"] = g(f, w)
            p[h + "mlp.up_proj.weight"] = g(f, w)
            p[h + "mlp.down_proj.weight"] = g(w, f)
        p["model.norm.weight"] = ones(w)
        if not cfg["tieEmbeddings"]:
            p["lm_head.weight"] = g(v, w)
    return p


ADAPTED = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
           "c_attn", "c_proj", "c_fc")


def adapted_names(p):
    return [n for n in p if n.endswith(".weight") and n.split(".")[-2] in ADAPTED]


def is_conv1d(name):
    return ".c_" in name  # GPT-2's Conv1D: stored [in, out], applied as x @ W


class Model:
    """The forward pass; `low_rank(name, x)` adds each adapted matrix's low-rank term."""

    def __init__(self, cfg, params):
        self.cfg, self.p = cfg, params

    def lin(self, name, x, low_rank):
        w = self.p[name + ".weight"]
        y = x @ w if is_conv1d(name) else x @ w.t()
        bias = self.p.get(name + ".bias")
        if bias is not None:
            y = y + bias
        extra = low_rank(name + ".weight", x)
        return y if extra is None else y + extra

    def attention(self, q, k, v):
        b, h, t, d = q.shape
        group = h // k.shape[1]
        if group > 1:
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)
        mask = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
        return torch.softmax(scores.masked_fill(~mask, -1e9), -1) @ v

    def loss(self, ids, targets, low_rank, mask=None):
        """Mean cross-entropy over the positions `mask` keeps (all of them without one)."""
        cfg, p = self.cfg, self.p
        b, t = ids.shape
        heads, w = cfg["heads"], cfg["width"]
        d = w // heads
        split = lambda x, n: x.view(b, t, n, d).transpose(1, 2)
        merge = lambda x: x.transpose(1, 2).reshape(b, t, w)
        if cfg["family"] == "gpt2":
            h = p["transformer.wte.weight"][ids] + p["transformer.wpe.weight"][:t]
            for i in range(cfg["layers"]):
                n = f"transformer.h.{i}."
                x = F.layer_norm(h, (w,), p[n + "ln_1.weight"], p[n + "ln_1.bias"], cfg["normEps"])
                qkv = self.lin(n + "attn.c_attn", x, low_rank)
                q, k, v = (split(qkv[..., j * w:(j + 1) * w], heads) for j in range(3))
                h = h + self.lin(n + "attn.c_proj", merge(self.attention(q, k, v)), low_rank)
                y = F.layer_norm(h, (w,), p[n + "ln_2.weight"], p[n + "ln_2.bias"], cfg["normEps"])
                y = F.gelu(self.lin(n + "mlp.c_fc", y, low_rank), approximate="tanh")
                h = h + self.lin(n + "mlp.c_proj", y, low_rank)
            h = F.layer_norm(h, (w,), p["transformer.ln_f.weight"], p["transformer.ln_f.bias"],
                             cfg["normEps"])
            head = p["transformer.wte.weight"]
        else:
            kvh = cfg["kvHeads"]
            on = {"dtype": torch.get_default_dtype(), "device": ids.device}
            pos = torch.arange(t, **on)
            inv = 1.0 / (cfg["ropeTheta"] ** (torch.arange(0, d, 2, **on) / d))
            ang = torch.cat([pos[:, None] * inv[None]] * 2, -1)
            cos, sin = ang.cos(), ang.sin()
            rot = lambda x: x * cos + torch.cat([-x[..., d // 2:], x[..., :d // 2]], -1) * sin
            rms = lambda x, g: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + cfg["normEps"]) * g
            h = p["model.embed_tokens.weight"][ids]
            for i in range(cfg["layers"]):
                n = f"model.layers.{i}."
                x = rms(h, p[n + "input_layernorm.weight"])
                q = rot(split(self.lin(n + "self_attn.q_proj", x, low_rank), heads))
                k = rot(split_kv(self.lin(n + "self_attn.k_proj", x, low_rank), b, t, kvh, d))
                v = split_kv(self.lin(n + "self_attn.v_proj", x, low_rank), b, t, kvh, d)
                h = h + self.lin(n + "self_attn.o_proj", merge(self.attention(q, k, v)), low_rank)
                y = rms(h, p[n + "post_attention_layernorm.weight"])
                gate = F.silu(self.lin(n + "mlp.gate_proj", y, low_rank))
                up = self.lin(n + "mlp.up_proj", y, low_rank)
                h = h + self.lin(n + "mlp.down_proj", gate * up, low_rank)
            h = rms(h, p["model.norm.weight"])
            head = p["model.embed_tokens.weight" if cfg["tieEmbeddings"] else "lm_head.weight"]
        logits = (h @ head.t()).view(b * t, -1)
        if mask is None:
            return F.cross_entropy(logits, targets.view(-1))
        keep = mask.reshape(-1).to(logits.dtype)
        per_position = F.cross_entropy(logits, targets.view(-1), reduction="none")
        return (per_position * keep).sum() / keep.sum().clamp(min=1)


def split_kv(x, b, t, n, d):
    return x.view(b, t, n, d).transpose(1, 2)


def adam(state, name, grad, lr, t, beta1=0.9, beta2=0.999, eps=1e-8):
    """The update lr * m_hat / (sqrt(v_hat) + eps), moments kept in `state`."""
    m, v = state.setdefault(name, (torch.zeros_like(grad), torch.zeros_like(grad)))
    m.mul_(beta1).add_(grad, alpha=1 - beta1)
    v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    return lr * (m / (1 - beta1 ** t)) / ((v / (1 - beta2 ** t)).sqrt() + eps)


def low_rank_term(name, x, a, b):
    """x through B A, the factors in the stored orientation."""
    return (x @ b) @ a if is_conv1d(name) else (x @ a.t()) @ b.t()


def hdpissa_setup(params, names, K, r):
    """Each matrix's top K*r singular components (randomised, as ours): A_cat, B_cat."""
    slices = {}
    for name in names:
        w = params[name]
        u, s, v = torch.svd_lowrank(w, q=min(K * r + 10, min(w.shape)), niter=4)
        root = s[:K * r].sqrt()
        slices[name] = ((root[:, None] * v[:, :K * r].t()).contiguous(),
                        (u[:, :K * r] * root[None]).contiguous())
    return slices


def hdpissa_step(model, params, names, slices, state, shards, K, r, lr, t, eps=1e-8):
    """One step; returns the shards' losses."""
    deltas, losses = {}, []
    for k, (ids, targets) in enumerate(shards):
        fixed = {n: (slices[n][0][k * r:(k + 1) * r], slices[n][1][:, k * r:(k + 1) * r])
                 for n in names}
        parts = {n: (torch.zeros_like(a).requires_grad_(), torch.zeros_like(b).requires_grad_())
                 for n, (a, b) in fixed.items()}

        def low_rank(name, x):
            # Zero displacements dA, dB: x (dB A + B dA) is zero in value and in its derivative
            # with respect to x, and its gradients are B^T G and G A^T (hdpissa-spec.md, step 2).
            if name not in parts:
                return None
            (a, b), (da, db) = fixed[name], parts[name]
            return low_rank_term(name, x, da, b) + low_rank_term(name, x, a, db)

        loss = model.loss(ids, targets, low_rank)
        losses.append(loss.item())
        grads = torch.autograd.grad(loss, [t_ for n in names for t_ in parts[n]])
        for i, n in enumerate(names):
            deltas[(n, k)] = (adam(state, (n, k, "a"), grads[2 * i], lr, t, eps=eps),
                              adam(state, (n, k, "b"), grads[2 * i + 1], lr, t, eps=eps))
    apply_hd_deltas(params, names, slices, deltas, K)
    return losses


def apply_hd_deltas(params, names, slices, deltas, K):
    """W -= dB_cat A_cat + (B_cat - dB_cat) dA_cat, the shards' (dA_k, dB_k) = deltas[(name, k)]
    concatenated (hdpissa-spec.md, step 6)."""
    with torch.no_grad():
        for n in names:
            a_cat, b_cat = slices[n]
            da = torch.cat([deltas[(n, k)][0] for k in range(K)], 0)
            db = torch.cat([deltas[(n, k)][1] for k in range(K)], 1)
            params[n] -= db @ a_cat + (b_cat - db) @ da


def lora_setup(params, names, r):
    adapters = {}
    for name in names:
        m, n = params[name].shape
        if is_conv1d(name):  # stored [in, out]: the random factor on the input side, as PEFT's
            adapters[name] = (torch.zeros(r, n), torch.randn(m, r) / math.sqrt(m))
        else:
            adapters[name] = (torch.randn(r, n) / math.sqrt(n), torch.zeros(m, r))
    return adapters


def lora_step(model, params, names, adapters, state, shards, K, lr, t):
    leaves = {n: (a.requires_grad_(), b.requires_grad_()) for n, (a, b) in adapters.items()}
    total = [torch.zeros_like(x) for n in names for x in leaves[n]]
    for ids, targets in shards:
        loss = model.loss(ids, targets, lambda name, x: None if name not in leaves else
                          low_rank_term(name, x, *leaves[name]))
        for acc, g in zip(total, torch.autograd.grad(loss, [x for n in names for x in leaves[n]])):
            acc += g / K
    with torch.no_grad():
        for i, n in enumerate(names):
            a, b = leaves[n]
            a -= adam(state, (n, "a"), total[2 * i], lr, t)
            b -= adam(state, (n, "b"), total[2 * i + 1], lr, t)


def main():
    job = json.loads(sys.argv[1])
    cfg, method, K, r = job["model"], job["method"], job["devices"], job["rank"]
    per_shard, steps, lr = job["perShard"], job["steps"], 1e-4
    t0 = time.perf_counter()
    # Drawn on the CPU whatever the device, so that every device starts from the same weights.
    params = {n: w.to(DEVICE) for n, w in init_params(cfg).items()}
    names = adapted_names(params)
    model = Model(cfg, params)
    sync()
    t_init = time.perf_counter()
    if method == "hdpissa":
        extra = hdpissa_setup(params, names, K, r)
    else:
        extra = {n: (a.to(DEVICE), b.to(DEVICE)) for n, (a, b) in lora_setup(params, names, r).items()}
    sync()
    setup = time.perf_counter() - t_init
    state = {}
    step_no = 0
    for seq in job["seqs"]:
        gen = torch.Generator().manual_seed(seq)
        draw = lambda: torch.randint(0, cfg["vocab"], (per_shard, seq), generator=gen).to(DEVICE)
        shards = [(draw(), draw()) for _ in range(K)]
        times = []
        for _ in range(steps):
            step_no += 1
            a = time.perf_counter()
            if method == "hdpissa":
                hdpissa_step(model, params, names, extra, state, shards, K, r, lr, step_no)
            else:
                lora_step(model, params, names, extra, state, shards, K, lr, step_no)
            sync()
            times.append(time.perf_counter() - a)
        rest = sorted(times[1:]) or times
        median = rest[len(rest) // 2]
        print(json.dumps({
            "seq": seq,
            "tokensPerStep": K * per_shard * seq,
            "initS": round(t_init - t0, 1),
            "setupS": round(setup, 1),
            "firstStepS": round(times[0], 2),
            "medianStepMs": round(median * 1000, 1),
            "tokensPerS": round(K * per_shard * seq / median),
            "peakRssGiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2),
            "peakDeviceGiB": peak_device_gib(),
            "torch": torch.__version__,
            "device": describe(),
        }), flush=True)


if __name__ == "__main__":
    main()
