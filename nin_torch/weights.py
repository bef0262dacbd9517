"""PyTorch parameters <-> the canonical weight format (:mod:`common.weights`).

PyTorch's layouts are the canonical ones (OIHW kernels, ``(out, in)`` dense weights with
inputs in NCHW flatten order), so this is a plain copy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from common import weights as interchange


def _parameter_layers(net: nn.Module) -> list[nn.Module]:
    return [module for module in net.modules() if isinstance(module, (nn.Conv2d, nn.Linear))]


def get_weights(net: nn.Module) -> dict[str, np.ndarray]:
    arrays = {}
    for slot, layer in zip(interchange.param_slots(net.spec), _parameter_layers(net)):
        arrays[f"{slot.name}.weight"] = layer.weight.detach().cpu().numpy().copy()
        arrays[f"{slot.name}.bias"] = layer.bias.detach().cpu().numpy().copy()
    return arrays


def set_weights(net: nn.Module, arrays: dict[str, np.ndarray]) -> None:
    interchange.check_arrays(net.spec, arrays)
    with torch.no_grad():
        for slot, layer in zip(interchange.param_slots(net.spec), _parameter_layers(net)):
            layer.weight.copy_(torch.from_numpy(np.asarray(arrays[f"{slot.name}.weight"])))
            layer.bias.copy_(torch.from_numpy(np.asarray(arrays[f"{slot.name}.bias"])))


def export_weights(net: nn.Module, path: str | Path) -> Path:
    return interchange.save_weights(path, net.spec, get_weights(net), framework="torch",
                                    framework_version=torch.__version__)


def import_weights(net: nn.Module, path: str | Path) -> None:
    set_weights(net, interchange.load_weights(path, net.spec).arrays)


NATIVE_SUFFIX = ".pt"


def save_native(net: nn.Module, path: str | Path) -> Path:
    """PyTorch's own format: the state_dict, for ``net.load_state_dict``."""
    torch.save(net.state_dict(), path)
    return Path(path)


def load_native(net: nn.Module, path: str | Path) -> None:
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
