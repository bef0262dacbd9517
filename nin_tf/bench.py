"""The fp32 matrix product ``nin bench`` measures this machine's peak with, in TensorFlow.

Backend layer.
"""

from __future__ import annotations

import time

import tensorflow as tf


@tf.function
def _product_sum(a, b):
    # Summing forces the product to be computed without copying 16 MB back to NumPy.
    return tf.reduce_sum(tf.linalg.matmul(a, b))


def gemm_seconds(n: int = 2048, repeats: int = 3) -> float:
    """Best wall time of one n x n by n x n float32 matrix product (after a warm-up)."""
    a, b = tf.random.normal((n, n)), tf.random.normal((n, n))
    _product_sum(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        _product_sum(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return best
