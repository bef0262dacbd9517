"""The process's memory policy: glibc's malloc keeping freed memory for the next step.

Platform layer.
"""

from __future__ import annotations

import functools

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


@functools.cache
def reuse_freed_memory() -> bool:
    """Have glibc's malloc keep the memory this process frees for its next allocations.

    glibc gives every block over 32 MiB its own mapping, unmapped when freed, and hands the
    heap's free top back to the system. PyTorch's CPU tensors come straight from malloc (it
    caches memory only on GPUs), so each training step maps its large activations and
    gradients afresh and page-faults through them: 1.4x slower training at 224 px on this
    project's 2-core CPU (docs/benchmarks.md). MXNet and TensorFlow pool their own memory.
    Process-wide and one-way: the heap keeps what it grew to (up to 2 GiB free at its top).
    Returns whether it applies (glibc only).
    """
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
