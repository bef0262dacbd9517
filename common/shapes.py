"""Shape and parameter arithmetic from a :class:`~common.spec.Spec`, with no framework.

Every backend's tables are checked against these numbers, and every backend validates its
input with :func:`check_input_shape` before the framework sees it.

Core layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from .spec import ConvBlock, Dense, Dropout, Flatten, GlobalAvgPool, MaxPool, Spec


def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """floor((size + 2*padding - kernel) / stride) + 1; pooling uses the same formula."""
    return (size + 2 * padding - kernel_size) // stride + 1


@dataclass(frozen=True)
class LayerShape:
    name: str
    output_shape: tuple[int, ...]


def layer_shapes(spec: Spec, input_shape: tuple[int, ...]) -> list[LayerShape]:
    """Output shape of each top-level layer for an NCHW `input_shape` (no validation)."""
    batch, channels, height, width = input_shape
    shape: tuple[int, ...] = (batch, channels, height, width)
    result = []
    for name, layer in zip(spec.layer_names(), spec.layers):
        shape = _next_shape(layer, shape)
        result.append(LayerShape(name, shape))
    return result


def conv_shapes(block: ConvBlock, shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Output shape of each convolution inside a block."""
    shapes = []
    batch, _, height, width = shape
    for conv in block.convs:
        height = conv_output_size(height, conv.kernel_size, conv.stride, conv.padding)
        width = conv_output_size(width, conv.kernel_size, conv.stride, conv.padding)
        shapes.append((batch, conv.out_channels, height, width))
    return shapes


def _next_shape(layer, shape: tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(layer, ConvBlock):
        return conv_shapes(layer, shape)[-1]
    if isinstance(layer, MaxPool):
        batch, channels, height, width = shape
        return (
            batch,
            channels,
            conv_output_size(height, layer.kernel_size, layer.stride),
            conv_output_size(width, layer.kernel_size, layer.stride),
        )
    if isinstance(layer, GlobalAvgPool):
        return (*shape[:2], 1, 1)
    if isinstance(layer, Flatten):
        flat = 1
        for size in shape[1:]:
            flat *= size
        return (shape[0], flat)
    if isinstance(layer, Dense):
        return (shape[0], layer.units)
    if isinstance(layer, Dropout):
        return shape
    raise TypeError(f"unknown layer {layer!r}")


@cache
def min_input_size(spec: Spec) -> int:
    """The smallest square input for which every layer's output is at least 1x1."""
    size = 1
    while not _fits(spec, size, size):
        size += 1
    return size


def _fits(spec: Spec, height: int, width: int) -> bool:
    shape: tuple[int, ...] = (1, spec.in_channels, height, width)
    for layer in spec.layers:
        if isinstance(layer, ConvBlock):
            for conv_shape in conv_shapes(layer, shape):
                if min(conv_shape[2:]) < 1:
                    return False
        shape = _next_shape(layer, shape)
        if len(shape) == 4 and min(shape[2:]) < 1:
            return False
    return True


@dataclass(frozen=True)
class LayerParams:
    name: str
    weights: int
    biases: int

    @property
    def total(self) -> int:
        return self.weights + self.biases


def layer_params(spec: Spec, *, bias: bool = True) -> list[LayerParams]:
    """Weights and biases of each top-level layer (Dense layers sized at `spec.input_size`)."""
    shape: tuple[int, ...] = (1, spec.in_channels, spec.input_size, spec.input_size)
    result = []
    for name, layer in zip(spec.layer_names(), spec.layers):
        weights = biases = 0
        if isinstance(layer, ConvBlock):
            channels = shape[1]
            for conv in layer.convs:
                weights += conv.out_channels * channels * conv.kernel_size**2
                biases += conv.out_channels
                channels = conv.out_channels
        elif isinstance(layer, Dense):
            weights = shape[1] * layer.units
            biases = layer.units
        result.append(LayerParams(name, weights, biases if bias else 0))
        shape = _next_shape(layer, shape)
    return result


def count_params(spec: Spec, *, bias: bool = True) -> int:
    return sum(layer.total for layer in layer_params(spec, bias=bias))


def check_input_shape(spec: Spec, shape: tuple[int, ...]) -> None:
    """Raise a ValueError that says what is wrong and what is allowed, before any framework."""
    if len(shape) != 4:
        raise ValueError(
            f"expected a 4-D NCHW batch (N, {spec.in_channels}, H, W), "
            f"got a {len(shape)}-D array of shape {tuple(shape)}"
        )
    batch, channels, height, width = shape
    if batch < 1:
        raise ValueError(f"expected at least one image, got shape {tuple(shape)}")
    if channels != spec.in_channels:
        raise ValueError(
            f"expected {spec.in_channels} input channel(s) (NCHW), got {channels} "
            f"in shape {tuple(shape)}"
        )
    if spec.fixed_input_size:
        if (height, width) != (spec.input_size, spec.input_size):
            raise ValueError(
                f"{spec.name} has a Dense layer after Flatten, so it takes exactly "
                f"{spec.input_size}x{spec.input_size} images, got {height}x{width}"
            )
        return
    smallest = min_input_size(spec)
    if min(height, width) < smallest:
        raise ValueError(
            f"{spec.name} needs images of at least {smallest}x{smallest} pixels, "
            f"got {height}x{width}"
        )


def check_layer_name(spec: Spec, name: str) -> None:
    if name not in spec.layer_names():
        raise ValueError(
            f"{spec.describe()} has no layer {name!r}; its layers are "
            f"{', '.join(spec.layer_names())}"
        )


def as_input_batch(spec: Spec, images) -> np.ndarray:
    """Validate an NCHW image batch for `spec` and return it as contiguous float32."""
    array = np.asarray(images)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"expected a numeric image array, got dtype {array.dtype}")
    check_input_shape(spec, array.shape)
    return np.ascontiguousarray(array, dtype=np.float32)
