"""PyTorch parameters <-> the canonical weight format (:mod:`common.weights`).

PyTorch's layouts are the canonical ones (OIHW kernels, ``(out, in)`` dense weights with
inputs in NCHW flatten order), so this is a plain copy.

Backend layer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from common import weights as interchange


def parameter_names(net: nn.Module) -> list[str]:
    """Canonical names in ``net.parameters()`` order."""
    return interchange.parameter_names(net.spec)


def to_canonical(net: nn.Module, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Arrays shaped like the parameters (weights, Adam moments, ...) in canonical layout:
    PyTorch's layouts are the canonical ones."""
    return interchange.as_float32(arrays)


from_canonical = to_canonical


def get_weights(net: nn.Module) -> dict[str, np.ndarray]:
    return {
        name: parameter.detach().cpu().numpy().copy()
        for name, parameter in zip(parameter_names(net), net.parameters())
    }


def set_weights(net: nn.Module, arrays: dict[str, np.ndarray]) -> None:
    interchange.check_arrays(net.spec, arrays)
    with torch.no_grad():
        for name, parameter in zip(parameter_names(net), net.parameters()):
            parameter.copy_(torch.from_numpy(np.asarray(arrays[name])))


FRAMEWORK_VERSION = torch.__version__  # written into exported files
NATIVE_SUFFIX = ".pt"


def save_native(net: nn.Module, path: str | Path) -> Path:
    """PyTorch's own format: the state_dict, for ``net.load_state_dict``."""
    torch.save(net.state_dict(), path)
    return Path(path)


def load_native(net: nn.Module, path: str | Path) -> None:
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
