"""A PyTorch NiN as an ONNX model (the interface is :mod:`common.onnx`'s).

``torch.onnx.export(..., dynamo=False)``: the TorchScript tracer. The dynamo exporter, the
default since PyTorch 2.9, needs onnxscript, whose current releases need an ml-dtypes that
TensorFlow 2.17 does not allow (constraints.txt). Tracing is exact here: NiN has no control
flow, and dropout is traced in eval mode, where it is the identity.

Backend layer.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from common import onnx as onnx_io
from common.backends import framework_of
from common.shapes import min_input_size

from .weights import FRAMEWORK_VERSION


def export_onnx(
    net: nn.Module,
    path: str | Path,
    *,
    opset: int = onnx_io.DEFAULT_OPSET,
    input_treatment: tuple[int, bool] | None = None,
) -> Path:
    """Write `net` as an ONNX model at `path`, checked; `input_treatment` is the
    (size, standardize) its weights were trained with, kept in the model's metadata."""
    spec = net.spec
    size = spec.input_size if spec.fixed_input_size else min_input_size(spec)
    example = torch.zeros(2, spec.in_channels, size, size, device=next(net.parameters()).device)
    dynamic = {0: "batch"} if spec.fixed_input_size else {0: "batch", 2: "height", 3: "width"}
    with onnx_io.exporting(
        path,
        spec,
        opset=opset,
        framework=framework_of(net),
        framework_version=FRAMEWORK_VERSION,
        input_treatment=input_treatment,
    ) as converted:
        torch.onnx.export(
            net,
            (example,),
            str(converted),
            dynamo=False,
            opset_version=opset,
            input_names=[onnx_io.INPUT_NAME],
            output_names=[onnx_io.OUTPUT_NAME],
            dynamic_axes={onnx_io.INPUT_NAME: dynamic, onnx_io.OUTPUT_NAME: {0: "batch"}},
        )
    return Path(path)
