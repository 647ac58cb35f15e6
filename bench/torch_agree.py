"""PyTorch's side of bench/torch_agree.ts: the losses of a few training steps of a real-size
decoder, from our weights and batches.

    /usr/bin/python3 bench/torch_agree.py <folder written by torch_agree.ts>

The folder holds job.json (the model config, the method, rank, adapted names, optimizer, and each
step's shards of token ids, targets and masks) and every parameter as raw little-endian f32. The
model is bench/torch_scale.py's (the Hugging Face equations), in float32 as a PyTorch user would
run it. "full": Adam on the adapted matrices with the mean of the shards' gradients. "hdpissa":
torch_scale.py's step (the benchmark's own anchor) on the slices of an exact SVD (float64, rounded
to f32 as ours are). Prints one JSON line: the per-shard losses of each step.
"""

import json
import os
import sys

import numpy as np
import torch

from torch_scale import Model, adam, hdpissa_step

torch.set_num_threads(2)


def exact_slices(w, width):
    """A_cat [width, n], B_cat [m, width]: sqrt(sigma)-scaled leading components, zero-padded."""
    u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)
    k = min(width, s.numel())
    a, b = torch.zeros(width, w.shape[1]), torch.zeros(w.shape[0], width)
    a[:k] = (s[:k].sqrt()[:, None] * vh[:k]).float()
    b[:, :k] = (u[:, :k] * s[:k].sqrt()[None]).float()
    return a, b


def full_step(model, params, names, state, shards, opt, t, tensor):
    leaves = [params[n].requires_grad_() for n in names]
    total = [torch.zeros_like(p) for p in leaves]
    step_losses = []
    for shard in shards:
        loss = model.loss(tensor(shard["ids"], torch.long), tensor(shard["targets"], torch.long),
                          lambda name, x: None, tensor(shard["mask"], torch.float32))
        step_losses.append(loss.item())
        for acc, g in zip(total, torch.autograd.grad(loss, leaves)):
            acc += g / len(shards)
    with torch.no_grad():
        for n, p, g in zip(names, leaves, total):
            params[n] = p.detach() - adam(state, n, g, opt["lr"], t, eps=opt["eps"])
    return step_losses


def main():
    folder = sys.argv[1]
    with open(os.path.join(folder, "job.json")) as f:
        job = json.load(f)
    params = {}
    for name, entry in job["params"].items():
        data = np.fromfile(os.path.join(folder, entry["file"]), dtype="<f4")
        params[name] = torch.from_numpy(data).reshape(entry["shape"])
    model = Model(job["model"], params)
    names, opt = job["adapt"], job["optimizer"]
    tensor = lambda s, dtype: torch.tensor(s["data"], dtype=dtype).reshape(s["shape"])
    state, losses = {}, []
    if job["method"] == "hdpissa":
        K, r = len(job["steps"][0]), job["rank"]
        slices = {n: exact_slices(params[n], K * r) for n in names}
        for t, shards in enumerate(job["steps"], start=1):
            batch = [(tensor(s["ids"], torch.long), tensor(s["targets"], torch.long))
                     for s in shards]
            losses.append(hdpissa_step(model, params, names, slices, state, batch, K, r,
                                       opt["lr"], t, eps=opt["eps"]))
    else:
        for t, shards in enumerate(job["steps"], start=1):
            losses.append(full_step(model, params, names, state, shards, opt, t, tensor))
    print(json.dumps({"losses": losses, "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
