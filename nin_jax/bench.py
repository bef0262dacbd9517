"""The fp32 matrix product ``nin bench`` measures this machine's peak with, in JAX.

Backend layer.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp


@jax.jit
def _product_sum(a, b):
    # Summing forces the product to be computed without copying 16 MB back to NumPy.
    return jnp.sum(a @ b)


def gemm_seconds(n: int = 2048, repeats: int = 3) -> float:
    """Best wall time of one n x n by n x n float32 matrix product (after a warm-up)."""
    keys = jax.random.split(jax.random.PRNGKey(0))
    a, b = (jax.random.normal(key, (n, n), jnp.float32) for key in keys)
    _product_sum(a, b).block_until_ready()  # JAX dispatches asynchronously: wait for it
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        _product_sum(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return best
