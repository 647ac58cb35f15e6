"""PyTorch's f32 products beside bench/gpu_matmul.ts: the same layouts (NN: x·W, NT: x·Wᵀ,
TN: xᵀ·W) and square sizes, on HDPISSA_TORCH_DEVICE (torch_device.py: on CUDA in full f32, TF32
off). Prints one JSON line per (layout, size) with GFLOP/s, the median of five timed repetitions.

    HDPISSA_TORCH_DEVICE=cuda python3 bench/torch_matmul.py 1024 2048 4096
"""

import json
import os
import sys
import time

import torch

from torch_device import DEVICE, describe, sync


def rate(f, n, min_s=0.2):
    """GFLOP/s of f() (one n×n×n product): calls grown until a repetition lasts min_s."""
    f()
    sync()
    calls = 1
    while True:
        t = time.perf_counter()
        for _ in range(calls):
            f()
        sync()
        if time.perf_counter() - t >= min_s or calls >= 1 << 16:
            break
        calls *= 4
    reps = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(calls):
            f()
        sync()
        reps.append((time.perf_counter() - t) / calls)
    return 2 * n ** 3 / sorted(reps)[2] / 1e9


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
                print(json.dumps({"layout": layout, "n": n, "gflops": round(rate(f, n), 1)}),
                      flush=True)


if __name__ == "__main__":
    main()
