"""An MXNet Gluon NiN as an ONNX model (the interface is :mod:`common.onnx`'s).

``mx.onnx.export_model`` on the symbol the hybridized network traces to. It has no opset
argument: it stamps the newest opset the installed onnx package knows (28 for onnx 1.23, which
MXNet's op translations predate) and picks those translations by the same number, so the
export pins ``onnx.defs.onnx_opset_version`` to the requested opset for the call. Its
converter also reads ``onnx.mapping``'s two dtype tables, which onnx removed in 1.16 (their
functions are ``onnx.helper``'s now); :func:`_onnx_mapping` gives them back for the call.

Backend layer.
"""

from __future__ import annotations

import types
from pathlib import Path
from unittest import mock

import mxnet as mx
import numpy as np
from mxnet.gluon import nn

from common import onnx as onnx_io
from common.backends import framework_of
from common.shapes import min_input_size

from .weights import FRAMEWORK_VERSION


def export_onnx(
    net: nn.HybridBlock,
    path: str | Path,
    *,
    opset: int = onnx_io.DEFAULT_OPSET,
    input_treatment: tuple[int, bool] | None = None,
) -> Path:
    """Write `net` as an ONNX model at `path`, checked; `input_treatment` is the
    (size, standardize) its weights were trained with, kept in the model's metadata."""
    import onnx

    spec = net.spec
    size = spec.input_size if spec.fixed_input_size else None
    # Called on a Symbol, a hybridized block returns its graph (what net.export() saves);
    # the identity names the output.
    logits = mx.sym.identity(net(mx.sym.var(onnx_io.INPUT_NAME)), name=onnx_io.OUTPUT_NAME)
    params = {name: parameter.data() for name, parameter in net.collect_params().items()}
    example = (1, spec.in_channels, size or min_input_size(spec), size or min_input_size(spec))
    with onnx_io.exporting(
        path,
        spec,
        opset=opset,
        framework=framework_of(net),
        framework_version=FRAMEWORK_VERSION,
        input_treatment=input_treatment,
    ) as converted:
        # export_model reads onnx_opset_version() when called (and so does the
        # onnx.helper.make_model it calls), so the patch covers both.
        with (
            mock.patch.object(onnx.defs, "onnx_opset_version", lambda: opset),
            mock.patch.object(onnx, "mapping", _onnx_mapping(onnx), create=True),
        ):
            mx.onnx.export_model(
                logits,
                params,
                in_shapes=[example],
                in_types=[np.float32],
                onnx_file_path=str(converted),
                dynamic=True,
                dynamic_input_shapes=[(None, spec.in_channels, size, size)],
            )
    return Path(path)


def _onnx_mapping(onnx) -> types.SimpleNamespace:
    """The two tables of the ``onnx.mapping`` module MXNet's converter reads (removed in
    onnx 1.16), from the ``onnx.helper`` functions that replaced them."""
    to_numpy = {}
    for tensor_type in onnx.TensorProto.DataType.values():
        try:
            to_numpy[tensor_type] = onnx.helper.tensor_dtype_to_np_dtype(tensor_type)
        except (KeyError, ValueError, TypeError):  # UNDEFINED, STRING and the like
            continue
    to_tensor = {}
    for dtype in set(to_numpy.values()):
        try:
            to_tensor[dtype] = onnx.helper.np_dtype_to_tensor_dtype(dtype)
        except (KeyError, ValueError, TypeError):
            continue
    return types.SimpleNamespace(NP_TYPE_TO_TENSOR_TYPE=to_tensor, TENSOR_TYPE_TO_NP_TYPE=to_numpy)
