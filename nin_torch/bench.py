"""The fp32 matrix product ``nin bench`` measures this machine's peak with, in PyTorch.

Backend layer.
"""

from __future__ import annotations

import time

import torch

# A 2048^3 product keeps a GPU busy for tens of microseconds, too little to reach its peak.
GPU_GEMM_SIZE = 8192


def gemm_seconds(n: int = 2048, repeats: int = 3) -> float:
    """Best wall time of one n x n by n x n float32 matrix product (after a warm-up), on the
    device a Trainer uses.

    On a GPU the product runs at 8192^3 and the time is scaled to n^3, in TF32: the precision
    PyTorch gives cuDNN's convolutions by default, so a GPU's MFU compares like with like.
    """
    if not torch.cuda.is_available():
        return _best_seconds(torch.randn(n, n), torch.randn(n, n), repeats, sync=lambda: None)
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        a, b = (torch.randn(GPU_GEMM_SIZE, GPU_GEMM_SIZE, device="cuda") for _ in range(2))
        seconds = _best_seconds(a, b, repeats, sync=torch.cuda.synchronize)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return seconds * (n / GPU_GEMM_SIZE) ** 3


def _best_seconds(a: torch.Tensor, b: torch.Tensor, repeats: int, sync) -> float:
    torch.mm(a, b)
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        sync()
        best = min(best, time.perf_counter() - start)
    return best
