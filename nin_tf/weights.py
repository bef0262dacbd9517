"""Keras parameters <-> the canonical weight format (:mod:`common.weights`).

Keras keeps convolution kernels HWIO and dense kernels ``(in, out)``, and its Flatten runs
over NHWC, so the dense layer after Flatten sees its inputs in (H, W, C) order where the
canonical (PyTorch/Gluon) order is (C, H, W): its rows are permuted on the way in and out.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from common import weights as interchange


def _parameter_layers(layer) -> list:
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
        return [layer]
    return [found for child in getattr(layer, "layers", []) for found in _parameter_layers(child)]


def get_weights(net: keras.Model) -> dict[str, np.ndarray]:
    arrays = {}
    for slot, layer in zip(interchange.param_slots(net.spec), _parameter_layers(net)):
        kernel, bias = (keras.ops.convert_to_numpy(variable) for variable in (layer.kernel, layer.bias))
        if slot.is_conv:
            weight = kernel.transpose(3, 2, 0, 1)  # HWIO -> OIHW
        else:
            weight = kernel.T
            if slot.flattened_chw:
                weight = interchange.dense_to_nchw(weight, slot.flattened_chw)
        arrays[f"{slot.name}.weight"] = np.ascontiguousarray(weight)
        arrays[f"{slot.name}.bias"] = bias
    return arrays


def set_weights(net: keras.Model, arrays: dict[str, np.ndarray]) -> None:
    interchange.check_arrays(net.spec, arrays)
    for slot, layer in zip(interchange.param_slots(net.spec), _parameter_layers(net)):
        weight = np.asarray(arrays[f"{slot.name}.weight"])
        if slot.is_conv:
            kernel = weight.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        else:
            if slot.flattened_chw:
                weight = interchange.dense_to_nhwc(weight, slot.flattened_chw)
            kernel = weight.T
        layer.kernel.assign(kernel)
        layer.bias.assign(arrays[f"{slot.name}.bias"])


def export_weights(net: keras.Model, path: str | Path) -> Path:
    return interchange.save_weights(path, net.spec, get_weights(net), framework="tf",
                                    framework_version=f"keras {keras.__version__}")


def import_weights(net: keras.Model, path: str | Path) -> None:
    set_weights(net, interchange.load_weights(path, net.spec).arrays)


NATIVE_SUFFIX = ".weights.h5"  # Keras 3 insists on this suffix for save_weights


def save_native(net: keras.Model, path: str | Path) -> Path:
    """Keras's own weights format, for ``model.load_weights``."""
    net.save_weights(str(path))
    return Path(path)


def load_native(net: keras.Model, path: str | Path) -> None:
    net.load_weights(str(path))
