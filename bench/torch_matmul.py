"""PyTorch's f32 products beside bench/gpu_matmul.ts: the same layouts (NN: x·W, NT: x·Wᵀ,
TN: xᵀ·W) and square sizes, on HDPISSA_TORCH_DEVICE (torch_device.py: on CUDA in full f32, TF32
off). Prints one JSON line per (layout, size) with GFLOP/s, timed as torch_micro.measure does
(calls grown until a repetition lasts 200 ms, the median of five repetitions).

    HDPISSA_TORCH_DEVICE=cuda python3 bench/torch_matmul.py 1024 2048 4096
"""

import json
import os
import sys

import torch

from torch_device import DEVICE, describe
from torch_micro import measure


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [1024, 2048, 4096]
    torch.set_num_threads(os.cpu_count() or 1)  # Debian's build starts with one
    print(json.dumps({"torch": torch.__version__, "device": describe(),
                      "matmulPrecision": torch.get_float32_matmul_precision()}), flush=True)
    gen = torch.Generator().manual_seed(0)
    for n in sizes:
        a = torch.randn(n, n, generator=gen).to(DEVICE)
        b = torch.randn(n, n, generator=gen).to(DEVICE)
        products = {"NN": lambda: a @ b, "NT": lambda: a @ b.t(), "TN": lambda: a.t() @ b}
        with torch.no_grad():
            for layout, f in products.items():
                ms = measure(lambda k: [f() for _ in range(k)], 200, 5)["ms"]
                gflops = round(2 * n ** 3 / ms / 1e6, 1)
                print(json.dumps({"layout": layout, "n": n, "gflops": gflops}), flush=True)


if __name__ == "__main__":
    main()
