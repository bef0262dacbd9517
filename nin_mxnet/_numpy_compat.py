"""MXNet 1.9.1 under NumPy 2: the names NumPy removed, put back before ``import mxnet``.

MXNet's last release (2022) was written against NumPy 1.x. Its import reads aliases NumPy 1.24
and 2.0 removed (``np.int``, ``np.float_``, ``np.PZERO``, ...; mxnet/numpy/utils.py), and
``mxnet.numpy`` binds NumPy's removed functions by name (mxnet/numpy/fallback.py: ``alltrue``,
``msort``, the financial functions ...). With each of those names back on the ``numpy``
module, MXNet imports and trains under NumPy 2 (tests/test_numpy_compat.py; the whole MXNet
suite runs so).

What is put back is what NumPy 1.x meant by the name: the builtin for ``np.int``, the constant
for ``np.NINF``, the renamed function for ``np.product``. The financial functions left NumPy
in 1.20 (NEP 32) and MXNet only binds them; as in NumPy 1.20-1.23, calling one raises an
error that says where they went. Only missing names are set: a name NumPy has is never
replaced, so the rest of the process sees the NumPy it installed, plus these names.

Backend layer.
"""

from __future__ import annotations

import builtins
import warnings

import numpy as np

# NumPy 1.x's financial functions (removed in 1.20); mxnet.numpy.fallback binds some by name.
FINANCIAL = ("fv", "ipmt", "irr", "mirr", "nper", "npv", "pmt", "ppmt", "pv", "rate")


def _removed_financial(name: str):
    def removed(*args, **kwargs):
        raise RuntimeError(
            f"numpy.{name} was removed from NumPy in 1.20 (NEP 32); numpy_financial has it"
        )

    removed.__name__ = removed.__qualname__ = name
    return removed


def _msort(a):
    """NumPy 1.x's ``msort``: a copy sorted along the first axis."""
    return np.sort(a, axis=0)


# Every name MXNet 1.9.1 reads from NumPy that some NumPy release removed, and what NumPy
# 1.x meant by it. The right side is looked up only for names that are missing.
REMOVED = {
    # type aliases of builtins (removed in 1.24)
    "bool": lambda: builtins.bool,
    "int": lambda: builtins.int,
    "float": lambda: builtins.float,
    "complex": lambda: builtins.complex,
    "object": lambda: builtins.object,
    "str": lambda: builtins.str,
    # constants (removed in 2.0)
    "NAN": lambda: np.nan,
    "NaN": lambda: np.nan,
    "Inf": lambda: np.inf,
    "PINF": lambda: np.inf,
    "Infinity": lambda: np.inf,
    "infty": lambda: np.inf,
    "NINF": lambda: -np.inf,
    "PZERO": lambda: 0.0,
    "NZERO": lambda: -0.0,
    # scalar type aliases (removed in 2.0)
    "float_": lambda: np.float64,
    "complex_": lambda: np.complex128,
    "cfloat": lambda: np.complex128,
    "singlecomplex": lambda: np.complex64,
    "longfloat": lambda: np.longdouble,
    "clongfloat": lambda: np.clongdouble,
    "longcomplex": lambda: np.clongdouble,
    "unicode_": lambda: np.str_,
    "string_": lambda: np.bytes_,
    # functions renamed or removed (2.0 to 2.4)
    "product": lambda: np.prod,
    "cumproduct": lambda: np.cumprod,
    "sometrue": lambda: np.any,
    "alltrue": lambda: np.all,
    "round_": lambda: np.round,
    "in1d": lambda: np.isin,
    "trapz": lambda: np.trapezoid,
    "msort": lambda: _msort,
    **{name: (lambda name=name: _removed_financial(name)) for name in FINANCIAL},
}


def _has(name: str) -> bool:
    # NumPy 2 serves some names through its module __getattr__: a deprecated one warns and is
    # there; an expired one raises AttributeError and is not.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hasattr(np, name)


def missing_names() -> list[str]:
    """The names of :data:`REMOVED` that the installed NumPy lacks."""
    return [name for name in REMOVED if not _has(name)]


def restore_removed_names() -> list[str]:
    """Put each missing name of :data:`REMOVED` back on ``numpy``; returns the names set.
    Idempotent: a second call finds none missing."""
    restored = missing_names()
    for name in restored:
        setattr(np, name, REMOVED[name]())
    return restored
