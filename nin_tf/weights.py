"""Keras parameters <-> the canonical weight format (:mod:`common.weights`).

Keras keeps convolution kernels HWIO and dense kernels ``(in, out)``, and its Flatten runs
over NHWC, so the dense layer after Flatten sees its inputs in (H, W, C) order where the
canonical (PyTorch/Gluon) order is (C, H, W): its rows are permuted on the way in and out.

Backend layer.
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


def _variables(net: keras.Model) -> list:
    return [variable for layer in _parameter_layers(net) for variable in (layer.kernel, layer.bias)]


def parameter_names(net: keras.Model) -> list[str]:
    """Canonical names in ``net.trainable_variables`` order (each kernel, then its bias)."""
    return interchange.parameter_names(net.spec)


def to_canonical(net: keras.Model, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Arrays shaped like Keras's variables (kernels, Adam moments, ...) in canonical layout."""
    return interchange.arrays_from_channels_last(net.spec, arrays)


def from_canonical(net: keras.Model, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inverse of :func:`to_canonical`."""
    return interchange.arrays_to_channels_last(net.spec, arrays)


def get_weights(net: keras.Model) -> dict[str, np.ndarray]:
    return to_canonical(
        net,
        {
            name: keras.ops.convert_to_numpy(variable)
            for name, variable in zip(parameter_names(net), _variables(net))
        },
    )


def set_weights(net: keras.Model, arrays: dict[str, np.ndarray]) -> None:
    interchange.check_arrays(net.spec, arrays)
    native = from_canonical(net, arrays)
    for name, variable in zip(parameter_names(net), _variables(net)):
        variable.assign(native[name])


FRAMEWORK_VERSION = f"keras {keras.__version__}"  # written into exported files
NATIVE_SUFFIX = ".weights.h5"  # Keras 3 insists on this suffix for save_weights


def save_native(net: keras.Model, path: str | Path) -> Path:
    """Keras's own weights format, for ``model.load_weights``."""
    net.save_weights(str(path))
    return Path(path)


def load_native(net: keras.Model, path: str | Path) -> None:
    net.load_weights(str(path))
