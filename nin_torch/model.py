"""NiN in PyTorch, built from :mod:`common.spec`.

Network in Network (Lin, Chen & Yan 2013): https://arxiv.org/abs/1312.4400

Backend layer.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from common import shapes
from common.platform.threads import intra_op_threads
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


def conv_block(convs: tuple[Conv, ...]) -> nn.Sequential:
    # In-place ReLUs (the convolution before each one keeps its input, not its output, for
    # the backward pass): one activation-sized write and allocation fewer per layer.
    layers = []
    for conv in convs:
        # Lazy: input channels are inferred on the first forward pass.
        layers.append(nn.LazyConv2d(conv.out_channels, conv.kernel_size, conv.stride, conv.padding))
        if conv.relu:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def nin_block(
    out_channels: int, kernel_size: int, strides: int, padding: int, num_1x1: int = 2
) -> nn.Sequential:
    """A convolution and `num_1x1` 1x1 convolutions, each followed by ReLU (d2l 7.3.1)."""
    return conv_block(nin_block_convs(out_channels, kernel_size, strides, padding, num_1x1))


def _layer(layer) -> nn.Module:
    if isinstance(layer, ConvBlock):
        return conv_block(layer.convs)
    if isinstance(layer, MaxPool):
        return nn.MaxPool2d(layer.kernel_size, layer.stride)
    if isinstance(layer, Dropout):
        return nn.Dropout(layer.rate)
    if isinstance(layer, GlobalAvgPool):
        return nn.AdaptiveAvgPool2d((1, 1))
    if isinstance(layer, Flatten):
        return nn.Flatten()
    if isinstance(layer, Dense):
        return (
            nn.Sequential(nn.LazyLinear(layer.units), nn.ReLU(inplace=True))
            if layer.relu
            else nn.LazyLinear(layer.units)
        )
    raise TypeError(f"unknown layer {layer!r}")


def build_nin(spec: Spec | str | None = None, *, seed: int = 0, **overrides) -> nn.Sequential:
    """The spec's network (NiN by default) with Xavier weights drawn from `seed`.

    `overrides` are the spec's options, e.g. ``build_nin(num_1x1=1)`` or
    ``build_nin("alexnet")``. The model knows its spec as ``net.spec``.
    """
    spec = make_spec(spec, **overrides)
    net = nn.Sequential(
        OrderedDict((name, _layer(layer)) for name, layer in zip(spec.layer_names(), spec.layers))
    )
    size = spec.input_size if spec.fixed_input_size else shapes.min_input_size(spec)
    with torch.no_grad():
        net(torch.zeros(1, spec.in_channels, size, size))  # materialise the lazy layers
    net.spec = spec
    set_weights(net, init_weights(spec, seed))
    # oneDNN's convolutions run channels-last natively: 1.2x (67 px) to 1.7x (224 px) faster
    # training on this CPU than NCHW (docs/benchmarks.md). Inputs follow in `as_tensor`.
    return net.to(memory_format=torch.channels_last)


def use_intra_op_threads() -> None:
    """Run PyTorch's CPU operators on :func:`common.backends.intra_op_threads` threads.

    PyTorch reads its thread count from the process's OpenMP runtime, which importing MXNet
    sets to 1 for the main thread: 1.7x slower training at 224 px, and other sums (oneDNN's
    depend on the thread count), wherever both are loaded (nin compare, sweeps, the tests).
    Called before each step and prediction, so an import in between changes nothing.
    """
    threads = intra_op_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def as_tensor(net: nn.Module, images: np.ndarray) -> torch.Tensor:
    """An NCHW float32 batch on the net's device, in the net's memory format."""
    weight = next(net.parameters())
    tensor = torch.from_numpy(images).to(weight.device)
    if weight.dim() == 4 and weight.is_contiguous(memory_format=torch.channels_last):
        tensor = tensor.contiguous(memory_format=torch.channels_last)
    return tensor


def predict_logits(net: nn.Module, images, batch_size: int = 256) -> np.ndarray:
    """Logits (N, num_classes) for NCHW float32 `images`, in inference mode (dropout off)."""
    images = shapes.as_input_batch(net.spec, images)
    use_intra_op_threads()
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode():
            return np.concatenate(
                [
                    net(as_tensor(net, images[start : start + batch_size])).cpu().numpy()
                    for start in range(0, len(images), batch_size)
                ]
            )
    finally:
        net.train(was_training)


def layer_outputs(net: nn.Sequential, images, names) -> dict[str, np.ndarray]:
    """The NCHW outputs of the top-level layers `names` for NCHW `images`, in one inference
    pass (:func:`common.api.layer_output` and ``layer_shapes`` are built on it)."""
    wanted, outputs = set(names), {}
    use_intra_op_threads()
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode():
            x = as_tensor(net, np.ascontiguousarray(images, np.float32))
            for name, layer in net.named_children():
                x = layer(x)
                if name in wanted:
                    outputs[name] = x.contiguous().cpu().numpy()
    finally:
        net.train(was_training)
    return outputs


def parameter_shapes(net: nn.Sequential) -> dict[str, list[tuple[int, ...]]]:
    """Each top-level layer's parameters' shapes, as PyTorch holds them."""
    return {
        name: [tuple(parameter.shape) for parameter in layer.parameters()]
        for name, layer in net.named_children()
    }
