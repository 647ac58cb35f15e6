"""PyTorch's side of bench/torch_agree.ts: the losses of two data-parallel full fine-tuning steps
of a real-size decoder, from our weights and batches.

    /usr/bin/python3 bench/torch_agree.py <folder written by torch_agree.ts>

The folder holds job.json (the model config, the adapted names, the optimizer, and each step's
shards of token ids, targets and masks) and every parameter as raw little-endian f32. The model is
bench/torch_scale.py's (the Hugging Face equations); the step is Adam on the adapted matrices with
the mean of the shards' gradients, in float32 as a PyTorch user would run it. Prints one JSON line:
the per-shard losses of each step.
"""

import json
import os
import sys

import numpy as np
import torch

from torch_scale import Model, adam

torch.set_num_threads(2)


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
    for t, shards in enumerate(job["steps"], start=1):
        leaves = [params[n].requires_grad_() for n in names]
        total = [torch.zeros_like(p) for p in leaves]
        step_losses = []
        for shard in shards:
            loss = model.loss(tensor(shard["ids"], torch.long), tensor(shard["targets"], torch.long),
                              lambda name, x: None, tensor(shard["mask"], torch.float32))
            step_losses.append(loss.item())
            for acc, g in zip(total, torch.autograd.grad(loss, leaves)):
                acc += g / len(shards)
        losses.append(step_losses)
        with torch.no_grad():
            for n, p, g in zip(names, leaves, total):
                params[n] = p.detach() - adam(state, n, g, opt["lr"], t, eps=opt["eps"])
    print(json.dumps({"losses": losses, "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
