"""The fp32 matrix product ``nin bench`` measures this machine's peak with, in PyTorch."""

from __future__ import annotations

import time

import torch


def gemm_seconds(n: int = 2048, repeats: int = 3) -> float:
    """Best wall time of one n x n by n x n float32 matrix product (after a warm-up)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return best
