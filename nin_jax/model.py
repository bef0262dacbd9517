"""NiN in JAX, built from :mod:`common.spec`: pure layers, parameters as a pytree.

Network in Network (Lin, Chen & Yan 2013): https://arxiv.org/abs/1312.4400

What JAX does differently from the other three, and where it shows here:

- A layer holds no state. It is a description with two functions: ``init`` says what its
  parameters are for an input of some shape, ``apply(params, x)`` computes. A model is its
  spec, its layers and ``net.params``: a pytree (nested dicts and lists of arrays) that the
  training step takes and returns, never changes in place.
- Randomness is an explicit key: dropout takes one, so a forward pass is a function of its
  arguments alone.
- Whatever runs often is compiled whole by ``jax.jit`` (the forward pass here, the training
  step in :mod:`nin_jax.train`).

The layers compute channels-last (NHWC activations, HWIO kernels): XLA's CPU convolutions are
NHWC, and a NCHW ``conv_general_dilated`` is compiled to the same convolution between two
transposes, 10 % slower here (measured on the first NiN block, both layouts equal to the
last bit). The public API speaks NCHW like the other backends: images are transposed on the
way in and outputs reported as NCHW.

Backend layer.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from common import shapes
from common.spec import (
    Conv,
    ConvBlock,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    MaxPool,
    Spec,
    make_spec,
    nin_block_convs,
)
from common.weights import init_weights

from .weights import set_weights

_CHANNELS_LAST = ("NHWC", "HWIO", "NHWC")


def to_nhwc(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1))


def to_nchw(array) -> np.ndarray:
    """A layer's output as NumPy, NCHW when it is an image batch."""
    array = np.asarray(array)
    return np.ascontiguousarray(array.transpose(0, 3, 1, 2)) if array.ndim == 4 else array


# -- layers: (parameters' shapes, a pure function) -----------------------------------------


@dataclass(frozen=True)
class Layer:
    """A pure layer: ``param_shapes(in_shape)`` and ``apply(params, x, training, key)``.

    `x` is NHWC. Layers without parameters take an empty list; those without randomness
    ignore `key`.
    """

    def param_shapes(self, in_shape: tuple[int, ...]) -> list:
        return []

    def apply(self, params, x, *, training: bool = False, key=None):
        raise NotImplementedError


def _conv(x, kernel, bias, conv: Conv):
    pad = ((conv.padding, conv.padding),) * 2
    y = lax.conv_general_dilated(
        x, kernel, (conv.stride, conv.stride), pad, dimension_numbers=_CHANNELS_LAST
    )
    y = y + bias
    return jax.nn.relu(y) if conv.relu else y


@dataclass(frozen=True)
class ConvLayers(Layer):
    """Convolutions in sequence, each with its ReLU: a NiN block (or AlexNet's conv layer)."""

    convs: tuple[Conv, ...]

    def param_shapes(self, in_shape):
        channels, shapes_ = in_shape[-1], []
        for conv in self.convs:
            kernel = (conv.kernel_size, conv.kernel_size, channels, conv.out_channels)
            shapes_.append({"kernel": kernel, "bias": (conv.out_channels,)})
            channels = conv.out_channels
        return shapes_

    def apply(self, params, x, *, training=False, key=None):
        for conv, weights in zip(self.convs, params):
            x = _conv(x, weights["kernel"], weights["bias"], conv)
        return x


def _pool_windows(x, size: int, stride: int) -> list:
    """The size x size strided views of NHWC `x` that a VALID max pooling compares, in
    row-major window order."""
    batch, height, width, channels = x.shape
    rows, cols = (height - size) // stride + 1, (width - size) // stride + 1
    return [
        lax.slice(
            x,
            (0, i, j, 0),
            (batch, i + stride * (rows - 1) + 1, j + stride * (cols - 1) + 1, channels),
            (1, stride, stride, 1),
        )
        for i in range(size)
        for j in range(size)
    ]


# Not lax.reduce_window: its gradient is select_and_scatter, which XLA:CPU runs as an argmax
# reduce-window and a sequential scatter loop over every input element, 16 % of a training step
# at 67 px (measured; TensorFlow's whole pooling, forward and backward, took 1/40 of it). As the
# maximum of the strided windows with this gradient, a step is 1.13-1.17x faster at batch 32
# and 128 on a busy machine, 1.6x in nin bench's quiet run at batch 64 (docs/benchmarks.md),
# with the same logits and each window's gradient going to its first maximum, as
# select_and_scatter sends it.
@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def max_pool(x, size: int, stride: int):
    """VALID size x size max pooling of NHWC `x` with `stride`."""
    return functools.reduce(jnp.maximum, _pool_windows(x, size, stride))


def _max_pool_forward(x, size, stride):
    pooled = max_pool(x, size, stride)
    return pooled, (x, pooled)


def _max_pool_backward(size, stride, residuals, gradient):
    x, pooled = residuals
    height, width, rows, cols = x.shape[1], x.shape[2], pooled.shape[1], pooled.shape[2]
    taken, dx = jnp.zeros(pooled.shape, bool), jnp.zeros_like(x)
    for index, window in enumerate(_pool_windows(x, size, stride)):
        i, j = divmod(index, size)
        first = (window == pooled) & ~taken  # the window's first maximum, and only it
        taken = taken | first
        # Back to the input's grid: (low, high, interior) padding of each spatial axis.
        pad_rows = (i, height - i - stride * (rows - 1) - 1, stride - 1)
        pad_cols = (j, width - j - stride * (cols - 1) - 1, stride - 1)
        spread = lax.pad(
            jnp.where(first, gradient, 0.0), 0.0, ((0, 0, 0), pad_rows, pad_cols, (0, 0, 0))
        )
        dx = dx + spread
    return (dx,)


max_pool.defvjp(_max_pool_forward, _max_pool_backward)


@dataclass(frozen=True)
class MaxPooling(Layer):
    kernel_size: int
    stride: int

    def apply(self, params, x, *, training=False, key=None):
        return max_pool(x, self.kernel_size, self.stride)


@dataclass(frozen=True)
class XlaMaxPooling(MaxPooling):
    """Max pooling as one ``lax.reduce_window``, as Flax's ``nn.max_pool`` (the book's JAX)
    pools: the book's path, and what the ONNX export traces (one MaxPool op for tf2onnx,
    where :func:`max_pool` would be nine slices and eight maxima)."""

    def apply(self, params, x, *, training=False, key=None):
        window = (1, self.kernel_size, self.kernel_size, 1)
        return lax.reduce_window(
            x, -jnp.inf, lax.max, window, (1, self.stride, self.stride, 1), "VALID"
        )


@dataclass(frozen=True)
class DropoutLayer(Layer):
    """Inverted dropout: in training, zero each value with probability `rate` and scale the
    rest by 1 / (1 - rate); the mask comes from `key`, so it is the caller's to choose."""

    rate: float

    def apply(self, params, x, *, training=False, key=None):
        if not training or self.rate == 0:
            return x
        keep = jax.random.bernoulli(key, 1.0 - self.rate, x.shape)
        return jnp.where(keep, x / (1.0 - self.rate), 0.0)


@dataclass(frozen=True)
class GlobalAveragePooling(Layer):
    def apply(self, params, x, *, training=False, key=None):
        return jnp.mean(x, axis=(1, 2), keepdims=True)


@dataclass(frozen=True)
class Flattening(Layer):
    # NHWC flattens in (H, W, C) order; the dense layer after it holds its rows in that order
    # (nin_jax.weights converts from the canonical (C, H, W) order).
    def apply(self, params, x, *, training=False, key=None):
        return x.reshape(x.shape[0], -1)


@dataclass(frozen=True)
class DenseLayer(Layer):
    units: int
    relu: bool = True

    def param_shapes(self, in_shape):
        return [{"kernel": (in_shape[-1], self.units), "bias": (self.units,)}]

    def apply(self, params, x, *, training=False, key=None):
        (weights,) = params
        y = x @ weights["kernel"] + weights["bias"]
        return jax.nn.relu(y) if self.relu else y


def _layer(layer) -> Layer:
    if isinstance(layer, ConvBlock):
        return ConvLayers(layer.convs)
    if isinstance(layer, MaxPool):
        return MaxPooling(layer.kernel_size, layer.stride)
    if isinstance(layer, Dropout):
        return DropoutLayer(layer.rate)
    if isinstance(layer, GlobalAvgPool):
        return GlobalAveragePooling()
    if isinstance(layer, Flatten):
        return Flattening()
    if isinstance(layer, Dense):
        return DenseLayer(layer.units, layer.relu)
    raise TypeError(f"unknown layer {layer!r}")


def nin_block(
    out_channels: int, kernel_size: int, strides: int, padding: int, num_1x1: int = 2
) -> ConvLayers:
    """A convolution and `num_1x1` 1x1 convolutions, each followed by ReLU (d2l 7.3.1): a
    pure layer, whose input channels are whatever its parameters are made for
    (:func:`init_params`)."""
    return ConvLayers(nin_block_convs(out_channels, kernel_size, strides, padding, num_1x1))


def output_shape(layer: Layer, in_shape: tuple[int, ...]) -> tuple[int, ...]:
    """What `layer` makes of an NHWC input of `in_shape`, traced without computing."""
    params = jax.tree_util.tree_map(
        lambda shape: jax.ShapeDtypeStruct(shape, jnp.float32),
        layer.param_shapes(in_shape),
        is_leaf=lambda node: isinstance(node, tuple),
    )
    x = jax.ShapeDtypeStruct(in_shape, jnp.float32)
    return tuple(jax.eval_shape(lambda p, x: layer.apply(p, x), params, x).shape)


def init_params(layer: Layer, in_shape: tuple[int, ...]) -> list:
    """Zero parameters of `layer` for an NHWC input of `in_shape` (weights are set from the
    canonical arrays afterwards, as in every backend)."""
    return jax.tree_util.tree_map(
        lambda shape: jnp.zeros(shape, jnp.float32),
        layer.param_shapes(in_shape),
        is_leaf=lambda node: isinstance(node, tuple),
    )


# -- the network -----------------------------------------------------------------------------


Architecture = tuple[tuple[str, Layer], ...]  # the named layers: hashable, a jit's static argument


def forward(architecture: Architecture, params, images, *, training: bool = False, key=None):
    """The logits of `architecture` for NHWC `images`, a pure function of its arguments: in
    training, dropout layer i draws its mask from ``fold_in(key, i)``."""
    x = images
    for index, (name, layer) in enumerate(architecture):
        layer_key = jax.random.fold_in(key, index) if training and key is not None else None
        x = layer.apply(params[name], x, training=training, key=layer_key)
    return x


def with_xla_pooling(architecture: Architecture) -> Architecture:
    """The same architecture pooling with :class:`XlaMaxPooling`: the same function."""
    return tuple(
        (name, XlaMaxPooling(layer.kernel_size, layer.stride))
        if type(layer) is MaxPooling
        else (name, layer)
        for name, layer in architecture
    )


# Compiled once per architecture and batch shape, for every network of that architecture: the
# layers are a static argument (hashed by value), the parameters an ordinary one.
compiled_forward = jax.jit(forward, static_argnums=0, static_argnames="training")


class Network:
    """A spec's network in JAX: the named pure layers, and ``params``, the pytree they take
    (``{layer name: [{"kernel": ..., "bias": ...}, ...]}``; layers without parameters have an
    empty list). Calling it runs :meth:`apply` with its own parameters."""

    def __init__(self, spec: Spec, layers: dict[str, Layer], params: dict[str, list]):
        self.spec, self.layers, self.params = spec, layers, params

    @property
    def architecture(self) -> Architecture:
        return tuple(self.layers.items())

    def apply(self, params, images, *, training: bool = False, key=None):
        """:func:`forward` of this network's layers (pure: `params` may be any pytree shaped
        like ``self.params``)."""
        return forward(self.architecture, params, images, training=training, key=key)

    def __call__(self, images, *, training: bool = False, key=None):
        return self.apply(self.params, images, training=training, key=key)

    def __repr__(self) -> str:
        return f"nin_jax.Network({self.spec.describe()}, {len(self.layers)} layers)"


def build_nin(spec: Spec | str | None = None, *, seed: int = 0, **overrides) -> Network:
    """The spec's network (NiN by default) with Xavier weights drawn from `seed`.

    `overrides` are the spec's options, e.g. ``build_nin(num_1x1=1)`` or
    ``build_nin("alexnet")``. The network takes NHWC arrays; the functions of this module take
    NCHW arrays. It knows its spec as ``net.spec``.
    """
    spec = make_spec(spec, **overrides)
    size = spec.input_size if spec.fixed_input_size else shapes.min_input_size(spec)
    shape: tuple[int, ...] = (1, size, size, spec.in_channels)
    layers, params = {}, {}
    for name, layer in zip(spec.layer_names(), spec.layers):
        layers[name] = _layer(layer)
        params[name] = init_params(layers[name], shape)
        shape = output_shape(layers[name], shape)
    net = Network(spec, layers, params)
    set_weights(net, init_weights(spec, seed))
    return net


def predict_logits(net: Network, images, batch_size: int = 256) -> np.ndarray:
    """Logits (N, num_classes) for NCHW float32 `images`, in inference mode (dropout off)."""
    images = to_nhwc(shapes.as_input_batch(net.spec, images))
    architecture = net.architecture
    return np.concatenate(
        [
            np.asarray(
                compiled_forward(architecture, net.params, images[start : start + batch_size])
            )
            for start in range(0, len(images), batch_size)
        ]
    )


def layer_outputs(net: Network, images, names) -> dict[str, np.ndarray]:
    """The outputs (reported NCHW) of the top-level layers `names` for NCHW `images`, in one
    inference pass (:func:`common.api.layer_output` and ``layer_shapes`` are built on it)."""
    wanted, outputs = set(names), {}
    x = jnp.asarray(to_nhwc(np.ascontiguousarray(images, np.float32)))
    for name, layer in net.layers.items():
        x = layer.apply(net.params[name], x)
        if name in wanted:
            outputs[name] = to_nchw(x)
    return outputs


def parameter_shapes(net: Network) -> dict[str, list[tuple[int, ...]]]:
    """Each top-level layer's parameters' shapes, as the pytree holds them (HWIO kernels)."""
    return {
        name: [tuple(leaf.shape) for leaf in jax.tree_util.tree_leaves(params)]
        for name, params in net.params.items()
    }
