"""The fp32 matrix product ``nin bench`` measures this machine's peak with, in MXNet.

Backend layer.
"""

from __future__ import annotations

import time

from mxnet import nd


def gemm_seconds(n: int = 2048, repeats: int = 3) -> float:
    """Best wall time of one n x n by n x n float32 matrix product (after a warm-up)."""
    a, b = nd.random.normal(shape=(n, n)), nd.random.normal(shape=(n, n))
    nd.dot(a, b).wait_to_read()  # MXNet is asynchronous: wait for the result
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        nd.dot(a, b).wait_to_read()
        best = min(best, time.perf_counter() - start)
    return best
