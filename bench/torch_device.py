"""Where the PyTorch anchors (torch_micro.py, torch_scale.py) run: HDPISSA_TORCH_DEVICE, "cpu" by
default, "cuda" on a GPU machine. On CUDA the products stay in full f32 (no TF32), as ours are, and
timings wait for the device."""

import os

import torch

DEVICE = torch.device(os.environ.get("HDPISSA_TORCH_DEVICE", "cpu"))
if DEVICE.type == "cuda":
    # PyTorch's default for f32 products is "highest" already; set it so that a site-wide
    # override cannot turn an f32 anchor into TF32.
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def sync():
    """Waits for the device's queued work (CUDA runs asynchronously; the CPU needs nothing)."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def describe():
    """The device as the benchmark tables name it: "cpu", or "cuda (NVIDIA H100 80GB HBM3)"."""
    if DEVICE.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(DEVICE)})"
    return DEVICE.type


def peak_device_gib():
    """The most device memory PyTorch's allocator held (CUDA only; None on the CPU)."""
    if DEVICE.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(DEVICE) / 2 ** 30, 2)
