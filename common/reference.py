"""Any spec's forward pass in NumPy, in float64: the referee no framework can bias.

Every backend's logits are checked against this function of the same canonical weights
(:mod:`common.weights`), and ``nin check`` checks a reader's model against it layer by layer.
It computes in float64, so each framework's float32 result differs from it by that framework's
own rounding only. Inference mode: dropout is the identity.

Core layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .shapes import as_input_batch
from .spec import Conv, ConvBlock, Dense, Dropout, Flatten, GlobalAvgPool, MaxPool, Spec
from .weights import check_arrays, param_slots


@dataclass
class Forward:
    """The logits of a batch and, when captured, what flowed through the network."""

    logits: np.ndarray  # (N, num_classes), float64
    # Top-level layer name -> its output (NCHW), as a backend's layer_output gives it.
    layer_outputs: dict[str, np.ndarray] = field(default_factory=dict)
    # Parameterised layer (ParamSlot.name) -> its input, and its output after its ReLU.
    slot_inputs: dict[str, np.ndarray] = field(default_factory=dict)
    slot_outputs: dict[str, np.ndarray] = field(default_factory=dict)


def conv2d(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int = 1, padding: int = 0
) -> np.ndarray:
    """NCHW x OIHW -> NCHW, as every framework's Conv2D with symmetric zero padding."""
    kernel = weight.shape[-1]
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    if kernel == 1:
        windows = x[:, :, ::stride, ::stride]
        out = np.tensordot(windows, weight[:, :, 0, 0], axes=([1], [1]))  # N, H, W, O
    else:
        windows = sliding_window_view(x, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
        out = np.tensordot(windows, weight, axes=([1, 4, 5], [1, 2, 3]))  # N, H, W, O
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)) + bias[None, :, None, None]


def max_pool(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    windows = sliding_window_view(x, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
    return windows.max(axis=(-2, -1))


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def forward(spec: Spec, arrays: dict[str, np.ndarray], images, *, capture: bool = False) -> Forward:
    """`spec` with the canonical `arrays` on NCHW `images`, in float64.

    With `capture`, also every top-level layer's output and every convolution's and dense
    layer's input and (activated) output.
    """
    check_arrays(spec, arrays)
    x = as_input_batch(spec, images).astype(np.float64)
    slots = iter(param_slots(spec))
    result = Forward(logits=np.empty(0))

    def parameterised(layer: Conv | Dense, x: np.ndarray) -> np.ndarray:
        slot = next(slots)
        weight = arrays[f"{slot.name}.weight"].astype(np.float64)
        bias = arrays[f"{slot.name}.bias"].astype(np.float64)
        if capture:
            result.slot_inputs[slot.name] = x
        if isinstance(layer, Conv):
            x = conv2d(x, weight, bias, layer.stride, layer.padding)
        else:
            x = x @ weight.T + bias
        if layer.relu:
            x = relu(x)
        if capture:
            result.slot_outputs[slot.name] = x
        return x

    for name, layer in zip(spec.layer_names(), spec.layers):
        if isinstance(layer, ConvBlock):
            for conv in layer.convs:
                x = parameterised(conv, x)
        elif isinstance(layer, Dense):
            x = parameterised(layer, x)
        elif isinstance(layer, MaxPool):
            x = max_pool(x, layer.kernel_size, layer.stride)
        elif isinstance(layer, GlobalAvgPool):
            x = x.mean(axis=(2, 3), keepdims=True)
        elif isinstance(layer, Flatten):
            x = x.reshape(len(x), -1)
        elif not isinstance(layer, Dropout):  # dropout: the identity in inference
            raise TypeError(f"unknown layer {layer!r}")
        if capture:
            result.layer_outputs[name] = x
    result.logits = x
    return result


def logits(spec: Spec, arrays: dict[str, np.ndarray], images) -> np.ndarray:
    """The float64 logits of `spec` with `arrays` on NCHW `images`."""
    return forward(spec, arrays, images).logits
