"""A JAX NiN as an ONNX model (the interface is :mod:`common.onnx`'s), through TensorFlow.

JAX has no ONNX exporter. ``jax2tf.convert`` turns the forward pass into TensorFlow ops and
tf2onnx converts those, as for Keras (:mod:`nin_tf.export`). Each flag of ``convert`` is the
one tf2onnx can read:

* ``native_serialization=False``: the native form is one ``XlaCallModule`` op holding
  StableHLO, which tf2onnx cannot convert; the graph form is ordinary TF ops.
* ``enable_xla=False``: with XLA, convolutions become ``XlaConvV2``, an XLA-only op; without,
  jax2tf writes ``Conv2D`` and ``MaxPool``.
* ``with_gradient=True``: ``False`` wraps the outputs in ``PreventGradient``, which tf2onnx
  has no handler for.

The batch is symbolic, and so are height and width when the network ends in global pooling.
They are declared as ``h + 66`` (NiN's smallest input less one, plus a variable of at least
1): without XLA, jax2tf must decide whether the input is smaller than the first kernel, and
for a bare ``h`` it cannot. The graph then computes each layer's output size from the input's,
down to the global mean's divisor, in jax2tf's sign-safe integer division: some 250 scalar
ops beside the network, about 0.2 ms a run in onnxruntime (measured, batch of one).

The network computes NHWC and the ONNX model takes NCHW, transposed first as
``predict_logits`` does. tf2onnx cancels that Transpose against the one before the first
Conv (a one-channel input keeps an identity Reshape), and every pair between convolutions;
one Transpose is left, on the class maps before the global mean's ReduceSum (AlexNet's is
before Flatten, its dense rows being in (H, W, C) order).

``jax.nn.relu`` is ``max(x, 0)``, which tf2onnx writes as ``Max``; :func:`relu_from_max`
makes it ``Relu``, which onnxruntime fuses into the convolution before it as it does in the
other backends' files (8 % faster on one CPU thread, measured).

Backend layer.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from common import onnx as onnx_io
from common.backends import framework_of
from common.shapes import min_input_size

from .model import forward, with_xla_pooling
from .weights import FRAMEWORK_VERSION


def export_onnx(
    net,
    path: str | Path,
    *,
    opset: int = onnx_io.DEFAULT_OPSET,
    input_treatment: tuple[int, bool] | None = None,
) -> Path:
    """Write `net` as an ONNX model at `path`, checked; `input_treatment` is the
    (size, standardize) its weights were trained with, kept in the model's metadata."""
    onnx_io.require("tensorflow", "tf2onnx")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # read at TensorFlow's first import
    import jax.numpy as jnp
    import onnx
    import tensorflow as tf
    import tf2onnx
    from jax.experimental import jax2tf

    spec = net.spec
    if spec.fixed_input_size:
        size = spec.input_size
        height = width = str(size)
    else:
        size, offset = None, min_input_size(spec) - 1
        height, width = f"h + {offset}", f"w + {offset}"
    images = tf.TensorSpec(
        (None, spec.in_channels, size, size), tf.float32, name=onnx_io.INPUT_NAME
    )
    params = net.params  # closed over: the weights become constants of the graph
    architecture = with_xla_pooling(net.architecture)  # a MaxPool op per pooling

    def logits_of_nchw(images):
        return forward(architecture, params, jnp.transpose(images, (0, 2, 3, 1)))

    as_tensorflow = jax2tf.convert(
        logits_of_nchw,
        polymorphic_shapes=[f"(batch, {spec.in_channels}, {height}, {width})"],
        native_serialization=False,
        enable_xla=False,
        with_gradient=True,
    )

    @tf.function(input_signature=[images], autograph=False)
    def logits(images):
        # A dict output: tf2onnx names the graph's output after its key.
        return {onnx_io.OUTPUT_NAME: as_tensorflow(images)}

    with onnx_io.exporting(
        path,
        spec,
        opset=opset,
        framework=framework_of(net),
        framework_version=FRAMEWORK_VERSION,
        input_treatment=input_treatment,
    ) as converted:
        model, _ = tf2onnx.convert.from_function(logits, input_signature=[images], opset=opset)
        relu_from_max(model.graph)
        onnx.save(model, str(converted))
    return Path(path)


def relu_from_max(graph) -> None:
    """Make each ``Max(x, 0)`` of `graph` (a one-element zero constant) a ``Relu(x)``, in
    place, and drop the constants no node reads any more."""
    from onnx import numpy_helper

    zeros = {
        tensor.name
        for tensor in graph.initializer
        if math.prod(tensor.dims) == 1 and _is_zero(numpy_helper.to_array(tensor))
    }
    for node in graph.node:
        operands = [name for name in node.input if name not in zeros]
        if node.op_type == "Max" and len(node.input) == 2 and len(operands) == 1:
            node.op_type = "Relu"
            del node.input[:]
            node.input.extend(operands)
    read = {name for node in graph.node for name in node.input}
    unread = [tensor for tensor in graph.initializer if tensor.name in zeros - read]
    for tensor in unread:
        graph.initializer.remove(tensor)


def _is_zero(array) -> bool:
    return array.dtype.kind == "f" and not array.any()
