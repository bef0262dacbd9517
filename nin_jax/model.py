"""NiN in JAX with Flax's ``flax.linen``, built from :mod:`common.spec`.

Network in Network (Lin, Chen & Yan 2013): https://arxiv.org/abs/1312.4400

The file opens with the book's NiN as its JAX tab writes it (d2l 7.3): ``flax.linen`` layers
in ``nn.Sequential``. Linen rather than Flax's newer NNX because that is what the book's JAX
code is, and because a linen module holds no state: its parameters are an explicit pytree
(nested dicts of arrays) that ``module.apply`` takes, which is what ``jax.jit``, optax, the pure
training step (:mod:`nin_jax.train`) and the checkpoints want. Randomness is explicit too:
dropout draws from a ``"dropout"`` key the caller passes.

:func:`build_nin` builds any spec's network (:class:`SpecNet`, one named submodule per
top-level layer) and returns a :class:`Network`: the spec, the module and its parameters.

The layers compute channels-last (NHWC activations, HWIO kernels), Flax's layout, which is
also XLA:CPU's: an NCHW ``conv_general_dilated`` is compiled to the same convolution between
two transposes, 10 % slower here (measured on the first NiN block, both layouts equal to the
last bit). The public API speaks NCHW like the other backends: images are transposed on the
way in and outputs reported as NCHW.

Backend layer.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax import lax

from common import shapes
from common.spec import (
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

from .weights import parameter_leaves, set_weights

# -- the book's NiN (d2l 7.3, JAX tab) --------------------------------------------------------


def _pair(value):
    """Flax takes a convolution's sizes per axis: an int n is (n, n)."""
    return (value, value) if isinstance(value, int) else tuple(value)


def nin_block(out_channels, kernel_size, strides, padding, num_1x1=2):
    """A convolution and `num_1x1` 1x1 convolutions, each followed by ReLU (d2l 7.3.1). Its
    input channels are whatever the input has when the parameters are made (``init``)."""
    layers = [nn.Conv(out_channels, _pair(kernel_size), _pair(strides), _pair(padding)), nn.relu]
    for _ in range(num_1x1):
        layers += [nn.Conv(out_channels, kernel_size=(1, 1)), nn.relu]
    return nn.Sequential(layers)


class NiN(nn.Module):
    """The book's NiN for NHWC images: ``NiN(training=True).apply(variables, x,
    rngs={"dropout": key})``."""

    num_classes: int = 10
    training: bool = False

    def setup(self):
        self.net = nn.Sequential(
            [
                nin_block(96, kernel_size=(11, 11), strides=(4, 4), padding=(0, 0)),
                lambda x: nn.max_pool(x, (3, 3), strides=(2, 2)),
                nin_block(256, kernel_size=(5, 5), strides=(1, 1), padding=(2, 2)),
                lambda x: nn.max_pool(x, (3, 3), strides=(2, 2)),
                nin_block(384, kernel_size=(3, 3), strides=(1, 1), padding=(1, 1)),
                lambda x: nn.max_pool(x, (3, 3), strides=(2, 2)),
                nn.Dropout(0.5, deterministic=not self.training),
                nin_block(self.num_classes, kernel_size=(3, 3), strides=1, padding=(1, 1)),
                lambda x: x.mean((1, 2)),  # global average pooling
                lambda x: x.reshape((x.shape[0], -1)),  # flatten
            ]
        )

    def __call__(self, x):
        return self.net(x)


# -- the fast path's max pooling ----------------------------------------------------------------


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


# Not lax.reduce_window (nn.max_pool): its gradient is select_and_scatter, which XLA:CPU runs
# as an argmax reduce-window and a sequential scatter loop over every input element, 16 % of a
# training step at 67 px (measured; TensorFlow's whole pooling, forward and backward, took 1/40
# of it). As the maximum of the strided windows with this gradient, a step was 1.13-1.17x
# faster at batch 32 and 128 on a busy machine, 1.6x in nin bench's quiet run at batch 64
# (jaxlib 0.4.30, docs/benchmarks.md); on jaxlib 0.10.2 about 1.1x (batch 64, a busy machine),
# never slower. The same logits, and each window's gradient goes to its first maximum, as
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


# -- any spec's network -----------------------------------------------------------------------


class MaxPooling(nn.Module):
    """VALID max pooling: Flax's ``nn.max_pool`` (one ``reduce_window``, the book's; what the
    ONNX export traces), or with `fast` :func:`max_pool`: the same numbers, a faster gradient."""

    window: int
    stride: int
    fast: bool = False

    def __call__(self, x):
        if self.fast:
            return max_pool(x, self.window, self.stride)
        return nn.max_pool(x, _pair(self.window), strides=_pair(self.stride))


class GlobalAveragePooling(nn.Module):
    """The mean of each channel, keeping the rank (N, 1, 1, C), as the spec's layer does."""

    def __call__(self, x):
        return jnp.mean(x, axis=(1, 2), keepdims=True)


class Flattening(nn.Module):
    # NHWC flattens in (H, W, C) order; the dense layer after it holds its rows in that order
    # (nin_jax.weights converts from the canonical (C, H, W) order).
    def __call__(self, x):
        return x.reshape((x.shape[0], -1))


def conv_block(block: ConvBlock) -> nn.Sequential:
    """A spec's block of convolutions: :func:`nin_block` where it is one (AlexNet's
    convolution layers are blocks of one), else each convolution with its ReLU if it has one
    (a linear head's last convolution has none)."""
    first = block.convs[0]
    geometry = (first.out_channels, first.kernel_size, first.stride, first.padding)
    if block.convs == nin_block_convs(*geometry, len(block.convs) - 1):
        return nin_block(*geometry, len(block.convs) - 1)
    layers = []
    for conv in block.convs:
        layers.append(
            nn.Conv(
                conv.out_channels, _pair(conv.kernel_size), _pair(conv.stride), _pair(conv.padding)
            )
        )
        if conv.relu:
            layers.append(nn.relu)
    return nn.Sequential(layers)


class SpecNet(nn.Module):
    """A spec's network, one submodule per top-level layer named as the spec names it
    (``nin_block_1``, ``max_pool_1``, ..., ``dropout``, ``global_avg_pool``, ``flatten``).

    `fast_pooling` pools with :func:`max_pool` instead of Flax's ``nn.max_pool``: the
    Trainer's fast path sets it (``module.clone(fast_pooling=True)``).
    """

    spec: Spec
    fast_pooling: bool = False

    def setup(self):
        for name, layer in zip(self.spec.layer_names(), self.spec.layers):
            setattr(self, name, self._layer(layer))

    def _layer(self, layer) -> nn.Module:
        if isinstance(layer, ConvBlock):
            return conv_block(layer)
        if isinstance(layer, MaxPool):
            return MaxPooling(layer.kernel_size, layer.stride, self.fast_pooling)
        if isinstance(layer, Dropout):
            return nn.Dropout(layer.rate)
        if isinstance(layer, GlobalAvgPool):
            return GlobalAveragePooling()
        if isinstance(layer, Flatten):
            return Flattening()
        if isinstance(layer, Dense):
            return nn.Sequential(
                [nn.Dense(layer.units), nn.relu] if layer.relu else [nn.Dense(layer.units)]
            )
        raise TypeError(f"unknown layer {layer!r}")

    def __call__(self, x, training: bool = False):
        """The logits of NHWC `x`; in training, dropout draws from the ``"dropout"`` rng."""
        for name, layer in zip(self.spec.layer_names(), self.spec.layers):
            module = getattr(self, name)
            x = module(x, deterministic=not training) if isinstance(layer, Dropout) else module(x)
        return x


class Network:
    """A spec's network in JAX: ``spec``; ``module``, its :class:`SpecNet` (a
    ``flax.linen.Module``, computing NHWC); and ``params``, the parameter pytree the module
    takes as ``module.apply({"params": net.params}, x, training=..., rngs={"dropout": key})``:
    the inner dict of linen's variables, ``{layer name: {"layers_0": {"kernel": ...,
    "bias": ...}, "layers_2": ...}}`` (each block's ``nn.Sequential`` numbers its layers,
    ReLUs included; layers without parameters have no entry). Calling it runs :meth:`apply`
    with its own parameters."""

    def __init__(self, spec: Spec, module: SpecNet, params: dict):
        self.spec, self.module, self.params = spec, module, params

    def apply(self, params, images, *, training: bool = False, key=None):
        """The logits of NHWC `images` (pure: `params` may be any pytree shaped like
        ``self.params``); in training, dropout's masks come from `key`."""
        rngs = {"dropout": key} if training and key is not None else None
        return self.module.apply({"params": params}, images, training=training, rngs=rngs)

    def __call__(self, images, *, training: bool = False, key=None):
        return self.apply(self.params, images, training=training, key=key)

    def __repr__(self) -> str:
        return f"nin_jax.Network({self.spec.describe()}, {len(self.spec.layers)} layers)"


def build_nin(spec: Spec | str | None = None, *, seed: int = 0, **overrides) -> Network:
    """The spec's network (NiN by default) with Xavier weights drawn from `seed`.

    `overrides` are the spec's options, e.g. ``build_nin(num_1x1=1)`` or
    ``build_nin("alexnet")``. The network takes NHWC arrays; the functions of this module take
    NCHW arrays. It knows its spec as ``net.spec``.
    """
    spec = make_spec(spec, **overrides)
    module = SpecNet(spec)
    size = spec.input_size if spec.fixed_input_size else shapes.min_input_size(spec)
    images = jax.ShapeDtypeStruct((1, size, size, spec.in_channels), jnp.float32)
    # The parameters' shapes, traced without computing (Flax infers the input channels); the
    # values are the canonical initialisation, drawn in common as in every backend.
    held = jax.eval_shape(module.init, jax.random.PRNGKey(0), images)["params"]
    params = jax.tree_util.tree_map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), held)
    net = Network(spec, module, params)
    set_weights(net, init_weights(spec, seed))
    return net


def to_nhwc(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1))


def to_nchw(array) -> np.ndarray:
    """A layer's output as NumPy, NCHW when it is an image batch."""
    array = np.asarray(array)
    return np.ascontiguousarray(array.transpose(0, 3, 1, 2)) if array.ndim == 4 else array


def _logits(module: SpecNet, params, images):
    return module.apply({"params": params}, images)


# Compiled once per module (a linen module is hashable, its spec and pooling by value) and batch
# shape, for every network of that architecture: the parameters are an ordinary argument.
compiled_logits = jax.jit(_logits, static_argnums=0)


def predict_logits(net: Network, images, batch_size: int = 256) -> np.ndarray:
    """Logits (N, num_classes) for NCHW float32 `images`, in inference mode (dropout off)."""
    images = to_nhwc(shapes.as_input_batch(net.spec, images))
    return np.concatenate(
        [
            np.asarray(compiled_logits(net.module, net.params, images[start : start + batch_size]))
            for start in range(0, len(images), batch_size)
        ]
    )


def layer_outputs(net: Network, images, names) -> dict[str, np.ndarray]:
    """The outputs (reported NCHW) of the top-level layers `names` for NCHW `images`, in one
    inference pass (:func:`common.api.layer_output` and ``layer_shapes`` are built on it)."""
    wanted = set(names)

    def top_level(module, method: str) -> bool:
        return method == "__call__" and module.name in wanted and isinstance(module.parent, SpecNet)

    x = jnp.asarray(to_nhwc(np.ascontiguousarray(images, np.float32)))
    _, state = net.module.apply({"params": net.params}, x, capture_intermediates=top_level)
    captured = state["intermediates"]
    return {name: to_nchw(captured[name]["__call__"][0]) for name in names}


def parameter_shapes(net: Network) -> dict[str, list[tuple[int, ...]]]:
    """Each top-level layer's parameters' shapes, as the pytree holds them (HWIO kernels),
    each layer's kernel then bias; layers without parameters are not listed."""
    held: dict[str, list[tuple[int, ...]]] = {}
    for _, layer, sublayer, kind in parameter_leaves(net):
        held.setdefault(layer, []).append(tuple(net.params[layer][sublayer][kind].shape))
    return held
