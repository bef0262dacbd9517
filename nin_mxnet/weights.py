"""MXNet Gluon parameters <-> the canonical weight format (:mod:`common.weights`).

Gluon stores convolution kernels OIHW (its default NCHW layout) and dense weights as
``(units, in_units)``, flattening NCHW, so its layouts are the canonical ones.
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


def get_weights(net: nn.Block) -> dict[str, np.ndarray]:
    arrays = {}
    for slot, layer in zip(interchange.param_slots(net.spec), _parameter_layers(net)):
        arrays[f"{slot.name}.weight"] = layer.weight.data().asnumpy()
        arrays[f"{slot.name}.bias"] = layer.bias.data().asnumpy()
    return arrays


def set_weights(net: nn.Block, arrays: dict[str, np.ndarray]) -> None:
    interchange.check_arrays(net.spec, arrays)
    for slot, layer in zip(interchange.param_slots(net.spec), _parameter_layers(net)):
        layer.weight.set_data(mx.nd.array(arrays[f"{slot.name}.weight"]))
        layer.bias.set_data(mx.nd.array(arrays[f"{slot.name}.bias"]))


def export_weights(net: nn.Block, path: str | Path) -> Path:
    return interchange.save_weights(path, net.spec, get_weights(net), framework="mxnet",
                                    framework_version=mx.__version__)


def import_weights(net: nn.Block, path: str | Path) -> None:
    set_weights(net, interchange.load_weights(path, net.spec).arrays)


NATIVE_SUFFIX = ".params"


def save_native(net: nn.Block, path: str | Path) -> Path:
    """Gluon's own format, for ``net.load_parameters``."""
    net.save_parameters(str(path))
    return Path(path)


def load_native(net: nn.Block, path: str | Path) -> None:
    net.load_parameters(str(path), ctx=net.collect_params().list_ctx())
