"""NiN in Keras 3 (TensorFlow backend), built from :mod:`common.spec`.

Network in Network (Lin, Chen & Yan 2013): https://arxiv.org/abs/1312.4400

Keras runs channels-last (NHWC; TensorFlow's CPU convolutions support nothing else), while the
public API speaks NCHW like the other backends: inputs are transposed on the way in and shapes
are reported as NCHW.

Backend layer.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np
import tensorflow as tf
from keras import layers

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


def to_nhwc(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1))


def nhwc_shape(nchw: tuple[int, ...]) -> tuple[int, ...]:
    batch, channels, height, width = nchw
    return (batch, height, width, channels)


def nchw_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """An NHWC shape as NCHW (other ranks unchanged), for tables comparable across backends."""
    return (shape[0], shape[3], shape[1], shape[2]) if len(shape) == 4 else tuple(shape)


def _conv_layers(conv: Conv) -> list[layers.Layer]:
    # Conv2D has no integer padding. For stride 1 and padding (k - 1) / 2, 'same' is exactly
    # that padding; anything else gets an explicit ZeroPadding2D and a 'valid' convolution.
    # ('same' with stride > 1 pads asymmetrically and would shift the output.)
    if conv.padding == 0:
        padding, prefix = "valid", []
    elif conv.stride == 1 and 2 * conv.padding == conv.kernel_size - 1:
        padding, prefix = "same", []
    else:
        padding, prefix = "valid", [layers.ZeroPadding2D(conv.padding)]
    return prefix + [
        layers.Conv2D(
            conv.out_channels,
            conv.kernel_size,
            strides=conv.stride,
            padding=padding,
            activation="relu" if conv.relu else None,
        )
    ]


def conv_block(convs: tuple[Conv, ...], name: str | None = None) -> keras.Sequential:
    # No Input layer: input channels are inferred when the block is built.
    return keras.Sequential([layer for conv in convs for layer in _conv_layers(conv)], name=name)


def nin_block(
    out_channels: int,
    kernel_size: int,
    strides: int,
    padding: int,
    num_1x1: int = 2,
    name: str | None = None,
) -> keras.Sequential:
    """A convolution and `num_1x1` 1x1 convolutions, each followed by ReLU (d2l 7.3.1)."""
    return conv_block(nin_block_convs(out_channels, kernel_size, strides, padding, num_1x1), name)


def _layer(layer, name: str, seed: int) -> layers.Layer:
    if isinstance(layer, ConvBlock):
        return conv_block(layer.convs, name)
    if isinstance(layer, MaxPool):
        return layers.MaxPooling2D(layer.kernel_size, layer.stride, name=name)
    if isinstance(layer, Dropout):
        # Without `seed`, Keras seeds the layer from Python's global `random` when it is
        # created, so whatever ran before would change the masks.
        return layers.Dropout(layer.rate, seed=seed, name=name)
    if isinstance(layer, GlobalAvgPool):
        return layers.GlobalAveragePooling2D(keepdims=True, name=name)
    if isinstance(layer, Flatten):
        return layers.Flatten(name=name)
    if isinstance(layer, Dense):
        return layers.Dense(layer.units, activation="relu" if layer.relu else None, name=name)
    raise TypeError(f"unknown layer {layer!r}")


def build_nin(spec: Spec | str | None = None, *, seed: int = 0, **overrides) -> keras.Sequential:
    """The spec's network (NiN by default) with Xavier weights drawn from `seed`.

    `overrides` are the spec's options, e.g. ``build_nin(num_1x1=1)`` or
    ``build_nin("alexnet")``. The model takes NHWC tensors; the functions of this module take
    NCHW arrays. It knows its spec as ``net.spec``.
    """
    spec = make_spec(spec, **overrides)
    size = spec.input_size if spec.fixed_input_size else None
    net = keras.Sequential(
        [keras.Input((size, size, spec.in_channels))]
        + [
            _layer(layer, name, seed + index)
            for index, (name, layer) in enumerate(zip(spec.layer_names(), spec.layers))
        ],
        name=spec.name,
    )
    net.spec = spec
    set_weights(net, init_weights(spec, seed))
    return net


_inference_functions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _inference_function(net: keras.Model):
    """The net's forward pass in inference mode as one traced graph (15-25% faster than
    calling the model eagerly), traced once for any batch size."""
    if net not in _inference_functions:
        _inference_functions[net] = tf.function(
            lambda images: net(images, training=False),
            input_signature=[tf.TensorSpec([None, None, None, net.spec.in_channels], tf.float32)],
        )
    return _inference_functions[net]


def predict_logits(net: keras.Model, images, batch_size: int = 256) -> np.ndarray:
    """Logits (N, num_classes) for NCHW float32 `images`, in inference mode (dropout off)."""
    images = to_nhwc(shapes.as_input_batch(net.spec, images))
    forward = _inference_function(net)
    return np.concatenate(
        [
            forward(images[start : start + batch_size]).numpy()
            for start in range(0, len(images), batch_size)
        ]
    )


def layer_outputs(net: keras.Sequential, images, names) -> dict[str, np.ndarray]:
    """The outputs (reported NCHW) of the top-level layers `names` for NCHW `images`, in one
    inference pass (:func:`common.api.layer_output` and ``layer_shapes`` are built on it)."""
    wanted, outputs = set(names), {}
    x = to_nhwc(np.ascontiguousarray(images, np.float32))
    for layer in net.layers:
        x = layer(x, training=False)
        if layer.name in wanted:
            array = keras.ops.convert_to_numpy(x)
            outputs[layer.name] = (
                np.ascontiguousarray(array.transpose(0, 3, 1, 2)) if array.ndim == 4 else array
            )
    return outputs


def parameter_shapes(net: keras.Sequential) -> dict[str, list[tuple[int, ...]]]:
    """Each top-level layer's weights' shapes, as Keras holds them."""
    return {layer.name: [tuple(weight.shape) for weight in layer.weights] for layer in net.layers}
