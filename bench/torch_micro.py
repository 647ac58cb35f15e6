"""The `deno task bench` workloads in PyTorch (bench/main.ts runs it), on the CPU or, with
HDPISSA_TORCH_DEVICE=cuda, on the GPU in f32 (torch_device.py): matmul, a*b+c,
the MLP and transformer-block training steps, from the same initial values (raw f32/i32 files
bench/main.ts writes) and with the same timing protocol as bench/util.ts `measure`: a warm-up
call, then N iterations back to back, N grown until one repetition lasts minMs, median of reps.

Reads its settings as JSON on stdin; prints one JSON line per result. Training uses
torch.optim.Adam (it tracks the real step count; at step 1 the arithmetic is ours).
"""

import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from torch_device import DEVICE, describe, sync


def measure(run, min_ms, reps, max_iters=1 << 20):
    """Median ms per iteration of run(n) (n iterations, then a wait for the device)."""
    t0 = time.perf_counter()
    run(1)
    sync()
    first_ms = (time.perf_counter() - t0) * 1e3
    n = 1

    def timed(k):
        t = time.perf_counter()
        run(k)
        sync()
        return (time.perf_counter() - t) * 1e3

    dt = timed(n)
    while dt < min_ms and n < max_iters:
        scale = min(16, max(2, 1.2 * min_ms / max(dt, 1)))
        n = min(max_iters, math.ceil(n * scale))
        dt = timed(n)
    per = sorted(timed(n) / n for _ in range(reps))
    return {"ms": per[len(per) // 2], "iters": n, "first_ms": first_ms}


def load(d, name, shape, dtype=np.float32):
    data = np.fromfile(os.path.join(d, name), dtype=dtype).reshape(shape)
    return torch.from_numpy(data).to(DEVICE)


def train(step, params, min_ms, reps, adam):
    """Times step() (forward, backward, Adam); the loss of the first call is step 1's."""
    opt = torch.optim.Adam(params, lr=adam["lr"], betas=(adam["b1"], adam["b2"]), eps=adam["eps"])
    losses = []

    def run(k):
        for _ in range(k):
            opt.zero_grad(set_to_none=True)
            loss = step()
            loss.backward()
            opt.step()
            if not losses:
                losses.append(loss.item())

    out = measure(run, min_ms, reps)
    out["loss1"] = losses[0]
    return out


def mlp(d, c, min_ms, reps, adam):
    p = {k: load(d, f"{c['id']}_{k}.f32", c["shapes"][k]).requires_grad_() for k in ("w1", "b1", "w2", "b2")}
    x = load(d, f"{c['id']}_x.f32", [c["batch"], c["inputs"]])
    labels = load(d, f"{c['id']}_labels.i32", [c["batch"]], np.int32).long()

    def step():
        h = F.relu(x @ p["w1"] + p["b1"])
        return F.cross_entropy(h @ p["w2"] + p["b2"], labels)

    return train(step, list(p.values()), min_ms, reps, adam)


BLOCK_KEYS = ["ln1g", "ln1b", "wq", "wk", "wv", "wo", "ln2g", "ln2b", "w1", "c1", "w2", "c2"]


def block(d, c, min_ms, reps, adam):
    p = {k: load(d, f"{c['id']}_{k}.f32", c["shapes"][k]).requires_grad_() for k in BLOCK_KEYS}
    b, t, w, h = c["batch"], c["seq"], c["width"], c["heads"]
    x = load(d, f"{c['id']}_x.f32", [b * t, w])
    target = load(d, f"{c['id']}_target.f32", [b * t, w])
    dh = w // h
    future = torch.arange(t, device=DEVICE).reshape(t, 1) < torch.arange(t, device=DEVICE).reshape(1, t)
    big_negative = torch.tensor(-1e9, device=DEVICE)

    def heads(y):
        return y.reshape(b, t, h, dh).permute(0, 2, 1, 3)

    def step():
        x1 = F.layer_norm(x, (w,), p["ln1g"], p["ln1b"], eps=1e-5)
        q, k, v = heads(x1 @ p["wq"]), heads(x1 @ p["wk"]), heads(x1 @ p["wv"])
        scores = (q @ k.transpose(-1, -2)) * (1 / math.sqrt(dh))
        attn = torch.softmax(torch.where(future, big_negative, scores), -1)
        o = (attn @ v).permute(0, 2, 1, 3).reshape(b * t, w)
        x2 = x + o @ p["wo"]
        x3 = F.layer_norm(x2, (w,), p["ln2g"], p["ln2b"], eps=1e-5)
        f = F.gelu(x3 @ p["w1"] + p["c1"], approximate="tanh")
        y = x2 + (f @ p["w2"] + p["c2"])
        return ((y - target) ** 2).mean()

    return train(step, list(p.values()), min_ms, reps, adam)


def main():
    cfg = json.load(sys.stdin)
    d, min_ms, reps = cfg["dir"], cfg["minMs"], cfg["reps"]
    # One thread per core, as torch_scale.py: Debian's build here starts with one.
    torch.set_num_threads(os.cpu_count() or 1)
    info = {"kind": "info", "version": torch.__version__, "threads": torch.get_num_threads(),
            "device": describe()}
    print(json.dumps(info), flush=True)
    for c in cfg["mlp"]:
        print(json.dumps({"kind": "mlp", "id": c["id"], **mlp(d, c, min_ms, reps, cfg["adam"])}), flush=True)
    for c in cfg["block"]:
        print(json.dumps({"kind": "block", "id": c["id"], **block(d, c, min_ms, reps, cfg["adam"])}), flush=True)
    if cfg.get("ew"):
        n = cfg["ew"]
        a, b, c = (load(d, f"ew_{k}.f32", [n]) for k in "abc")
        out = {}

        def run(k):
            for _ in range(k):
                out["y"] = a * b + c

        res = measure(run, min_ms, reps)
        out["y"].cpu().numpy().tofile(os.path.join(d, "ew_out.f32"))
        print(json.dumps({"kind": "ew", **res}), flush=True)
    with torch.no_grad():
        for n in cfg["matmul"]:
            a, b = load(d, f"mm{n}_a.f32", [n, n]), load(d, f"mm{n}_b.f32", [n, n])
            out = {}

            def run(k):
                for _ in range(k):
                    out["c"] = a @ b

            # On the CPU a 2048² product takes long enough alone; the GPU needs many to fill min_ms.
            res = measure(run, min_ms, reps, 2 if n >= 2048 and DEVICE.type == "cpu" else 1 << 20)
            out["c"].cpu().numpy().tofile(os.path.join(d, f"mm{n}_c.f32"))
            print(json.dumps({"kind": "matmul", "n": n, **res}), flush=True)


if __name__ == "__main__":
    main()
