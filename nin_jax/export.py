"""A JAX NiN as an ONNX model (the interface is :mod:`common.onnx`'s), written from its spec.

JAX has no ONNX exporter, nor has Flax. Under jax 0.4.30, ``jax2tf.convert`` turned the
forward pass into ordinary TensorFlow ops for tf2onnx to convert (as :mod:`nin_tf.export`
converts Keras); jax 0.10's jax2tf only serializes StableHLO into one ``XlaCallModule`` op
(``native_serialization=False`` is deprecated and ignored), which tf2onnx cannot convert
("Could not infer the attribute type" for the op's ``Sout``).

So the graph is written here, one ONNX op per layer of the spec, with onnx's own helpers:
the network is its spec and its parameters (:class:`nin_jax.model.Network`), and ONNX's
operators are PyTorch's layouts: NCHW images, OIHW convolution kernels, a Flatten in
(C, H, W) order and a Gemm of ``(out, in)`` weights, which is the canonical layout
:func:`nin_jax.get_weights` gives. No transpose is needed anywhere; each convolution's ReLU
is a ``Relu`` (onnxruntime fuses it into the convolution), dropout is left out (inference),
and the batch, height and width are symbolic. tests/test_onnx.py checks onnxruntime's logits
against the Flax module's.

Backend layer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common import onnx as onnx_io
from common.backends import framework_of
from common.spec import ConvBlock, Dense, Dropout, Flatten, GlobalAvgPool, MaxPool
from common.weights import parameter_names

from .weights import FRAMEWORK_VERSION, get_weights


def export_onnx(
    net,
    path: str | Path,
    *,
    opset: int = onnx_io.DEFAULT_OPSET,
    input_treatment: tuple[int, bool] | None = None,
) -> Path:
    """Write `net` as an ONNX model at `path`, checked; `input_treatment` is the
    (size, standardize) its weights were trained with, kept in the model's metadata."""
    onnx_io.require("onnx")
    import onnx

    with onnx_io.exporting(
        path,
        net.spec,
        opset=opset,
        framework=framework_of(net),
        framework_version=FRAMEWORK_VERSION,
        input_treatment=input_treatment,
    ) as converted:
        onnx.save(onnx_model(net, opset), str(converted))
    return Path(path)


def onnx_model(net, opset: int):
    """The ONNX model of `net`'s inference pass (its interface finished by
    :func:`common.onnx.exporting`)."""
    from onnx import TensorProto, helper, numpy_helper

    spec, arrays = net.spec, get_weights(net)
    names = iter(parameter_names(spec))
    nodes, initializers = [], []
    x = onnx_io.INPUT_NAME

    def add(op: str, inputs: list[str], output: str, **attributes) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def parameters() -> list[str]:  # the next layer's weight and bias, as initializers
        pair = [next(names), next(names)]
        initializers.extend(numpy_helper.from_array(np.asarray(arrays[n]), n) for n in pair)
        return pair

    for name, layer in zip(spec.layer_names(), spec.layers):
        if isinstance(layer, ConvBlock):
            for index, conv in enumerate(layer.convs):
                x = add(
                    "Conv",
                    [x, *parameters()],
                    f"{name}.{index}",
                    kernel_shape=[conv.kernel_size] * 2,
                    strides=[conv.stride] * 2,
                    pads=[conv.padding] * 4,
                )
                if conv.relu:
                    x = add("Relu", [x], f"{name}.{index}.relu")
        elif isinstance(layer, MaxPool):
            x = add(
                "MaxPool",
                [x],
                name,
                kernel_shape=[layer.kernel_size] * 2,
                strides=[layer.stride] * 2,
            )
        elif isinstance(layer, GlobalAvgPool):
            x = add("GlobalAveragePool", [x], name)
        elif isinstance(layer, Flatten):
            x = add("Flatten", [x], name, axis=1)
        elif isinstance(layer, Dense):
            x = add("Gemm", [x, *parameters()], name, transB=1)
            if layer.relu:
                x = add("Relu", [x], f"{name}.relu")
        elif not isinstance(layer, Dropout):  # (dropout is off in inference)
            raise TypeError(f"unknown layer {layer!r}")
    nodes.append(helper.make_node("Identity", [x], [onnx_io.OUTPUT_NAME]))
    graph = helper.make_graph(
        nodes,
        spec.name,
        [helper.make_tensor_value_info(onnx_io.INPUT_NAME, TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(onnx_io.OUTPUT_NAME, TensorProto.FLOAT, None)],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
