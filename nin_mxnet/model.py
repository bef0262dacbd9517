"""NiN in MXNet Gluon, built from :mod:`common.spec` and hybridized.

Network in Network (Lin, Chen & Yan 2013): https://arxiv.org/abs/1312.4400

Backend layer.
"""

from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet import autograd, nd
from mxnet.gluon import nn

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


def default_context() -> mx.Context:
    return mx.gpu() if mx.context.num_gpus() > 0 else mx.cpu()


def conv_block(convs: tuple[Conv, ...]) -> nn.HybridSequential:
    block = nn.HybridSequential()
    for conv in convs:
        # in_channels is left out: Gluon infers it at the first forward (deferred init).
        block.add(
            nn.Conv2D(
                conv.out_channels,
                conv.kernel_size,
                conv.stride,
                conv.padding,
                activation="relu" if conv.relu else None,
            )
        )
    return block


def nin_block(
    out_channels: int, kernel_size: int, strides: int, padding: int, num_1x1: int = 2
) -> nn.HybridSequential:
    """A convolution and `num_1x1` 1x1 convolutions, each followed by ReLU (d2l 7.3.1)."""
    return conv_block(nin_block_convs(out_channels, kernel_size, strides, padding, num_1x1))


def _layer(layer) -> nn.HybridBlock:
    if isinstance(layer, ConvBlock):
        return conv_block(layer.convs)
    if isinstance(layer, MaxPool):
        return nn.MaxPool2D(layer.kernel_size, layer.stride)
    if isinstance(layer, Dropout):
        return nn.Dropout(layer.rate)
    if isinstance(layer, GlobalAvgPool):
        return nn.GlobalAvgPool2D()
    if isinstance(layer, Flatten):
        return nn.Flatten()
    if isinstance(layer, Dense):
        return nn.Dense(layer.units, activation="relu" if layer.relu else None)
    raise TypeError(f"unknown layer {layer!r}")


def build_nin(
    spec: Spec | str | None = None, *, seed: int = 0, ctx: mx.Context | None = None, **overrides
) -> nn.HybridSequential:
    """The spec's network (NiN by default), hybridized, with Xavier weights drawn from `seed`.

    `overrides` are the spec's options, e.g. ``build_nin(num_1x1=1)`` or
    ``build_nin("alexnet")``. The model knows its spec as ``net.spec``.
    """
    spec = make_spec(spec, **overrides)
    net = nn.HybridSequential()
    for layer in spec.layers:
        net.add(_layer(layer))
    net.initialize(ctx=ctx or default_context())
    size = spec.input_size if spec.fixed_input_size else shapes.min_input_size(spec)
    net(nd.zeros((1, spec.in_channels, size, size), ctx=ctx or default_context()))  # deferred init
    net.spec = spec
    set_weights(net, init_weights(spec, seed))
    # Static allocation and shapes let MXNet plan memory once: 1.15x faster training at
    # 224 px on this CPU than plain hybridize() (docs/benchmarks.md). Another batch shape
    # (the last, partial batch) is still allowed; it rebuilds the plan.
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def _context(net: nn.Block) -> mx.Context:
    return next(iter(net.collect_params().values())).list_ctx()[0]


def predict_logits(net: nn.Block, images, batch_size: int = 256) -> np.ndarray:
    """Logits (N, num_classes) for NCHW float32 `images`, in inference mode (dropout off)."""
    images = shapes.as_input_batch(net.spec, images)
    ctx = _context(net)
    # Outside autograd.record() Gluon runs in inference mode; predict_mode makes it explicit.
    with autograd.predict_mode():
        return np.concatenate(
            [
                net(nd.array(images[start : start + batch_size], ctx=ctx)).asnumpy()
                for start in range(0, len(images), batch_size)
            ]
        )


def layer_outputs(net: nn.HybridSequential, images, names) -> dict[str, np.ndarray]:
    """The NCHW outputs of the top-level layers `names` for NCHW `images`, in one inference
    pass (:func:`common.api.layer_output` and ``layer_shapes`` are built on it)."""
    wanted, outputs = set(names), {}
    x = nd.array(np.ascontiguousarray(images, np.float32), ctx=_context(net))
    with autograd.predict_mode():
        for name, layer in zip(net.spec.layer_names(), net):
            x = layer(x)
            if name in wanted:
                outputs[name] = x.asnumpy()
    return outputs


def parameter_shapes(net: nn.HybridSequential) -> dict[str, list[tuple[int, ...]]]:
    """Each top-level layer's parameters' shapes, as Gluon holds them."""
    return {
        name: [tuple(parameter.shape) for parameter in layer.collect_params().values()]
        for name, layer in zip(net.spec.layer_names(), net)
    }
