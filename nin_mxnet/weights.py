"""MXNet Gluon parameters <-> the canonical weight format (:mod:`common.weights`).

Gluon stores convolution kernels OIHW (its default NCHW layout) and dense weights as
``(units, in_units)``, flattening NCHW, so its layouts are the canonical ones.

Backend layer.
"""

from __future__ import annotations

from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet.gluon import nn

from common import weights as interchange


def _parameter_layers(block: nn.Block) -> list[nn.Block]:
    if isinstance(block, (nn.Conv2D, nn.Dense)):
        return [block]
    return [layer for child in block._children.values() for layer in _parameter_layers(child)]


def parameters(net: nn.Block) -> list:
    """The Gluon Parameters in canonical order (each layer's weight, then its bias)."""
    return [
        parameter for layer in _parameter_layers(net) for parameter in (layer.weight, layer.bias)
    ]


def parameter_names(net: nn.Block) -> list[str]:
    """Canonical names in :func:`parameters` order."""
    return interchange.parameter_names(net.spec)


def to_canonical(net: nn.Block, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Arrays shaped like the parameters (weights, Adam moments, ...) in canonical layout:
    Gluon's layouts are the canonical ones."""
    return interchange.as_float32(arrays)


from_canonical = to_canonical


def get_weights(net: nn.Block) -> dict[str, np.ndarray]:
    return {
        name: parameter.data().asnumpy()
        for name, parameter in zip(parameter_names(net), parameters(net))
    }


def set_weights(net: nn.Block, arrays: dict[str, np.ndarray]) -> None:
    interchange.check_arrays(net.spec, arrays)
    for name, parameter in zip(parameter_names(net), parameters(net)):
        parameter.set_data(mx.nd.array(arrays[name]))


FRAMEWORK_VERSION = mx.__version__  # written into exported files
NATIVE_SUFFIX = ".params"


def save_native(net: nn.Block, path: str | Path) -> Path:
    """Gluon's own format, for ``net.load_parameters``."""
    net.save_parameters(str(path))
    return Path(path)


def load_native(net: nn.Block, path: str | Path) -> None:
    net.load_parameters(str(path), ctx=net.collect_params().list_ctx())
