"""A Keras NiN as an ONNX model (the interface is :mod:`common.onnx`'s), through tf2onnx.

The Keras model takes NHWC; the ONNX model takes NCHW like every other backend's. The exported
function transposes first, as ``predict_logits`` does. tf2onnx turns each NHWC convolution
into an ONNX Conv (NCHW only) between two Transposes, and its optimizer cancels every adjacent
pair, this first one included: no Transpose is left in the graph of a NiN (a one-channel input
keeps an identity Reshape, which is what a transpose of a size-1 axis became).

Backend layer.
"""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

from common import onnx as onnx_io
from common.backends import framework_of

from .weights import FRAMEWORK_VERSION


def export_onnx(
    net: keras.Model,
    path: str | Path,
    *,
    opset: int = onnx_io.DEFAULT_OPSET,
    input_treatment: tuple[int, bool] | None = None,
) -> Path:
    """Write `net` as an ONNX model at `path`, checked; `input_treatment` is the
    (size, standardize) its weights were trained with, kept in the model's metadata."""
    onnx_io.require("tf2onnx")
    import tf2onnx

    spec = net.spec
    size = spec.input_size if spec.fixed_input_size else None
    images = tf.TensorSpec(
        (None, spec.in_channels, size, size), tf.float32, name=onnx_io.INPUT_NAME
    )

    @tf.function(input_signature=[images])
    def logits(images):
        # A dict output: tf2onnx names the graph's output after its key.
        return {onnx_io.OUTPUT_NAME: net(tf.transpose(images, (0, 2, 3, 1)), training=False)}

    with onnx_io.exporting(
        path,
        spec,
        opset=opset,
        framework=framework_of(net),
        framework_version=FRAMEWORK_VERSION,
        input_treatment=input_treatment,
    ) as converted:
        tf2onnx.convert.from_function(
            logits, input_signature=[images], opset=opset, output_path=str(converted)
        )
    return Path(path)
