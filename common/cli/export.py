"""``nin export``: trained weights as an ONNX model, checked against onnxruntime.

CLI layer.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..backends import BACKENDS, load_backend
from ..onnx import DEFAULT_OPSET, OPSETS, OnnxModel, require_exporter
from .common import UsageError, add_spec_arguments
from .weights import input_treatment, load_weights_into, weights_in

# How many random images the export is checked on, and how far onnxruntime's logits may be
# from the framework's, relative to the largest logit when that is above 1
# (tests/test_onnx.py measures 4e-6 at most, on logits of up to 2.3).
CHECK_IMAGES = 8
CHECK_TOLERANCE = 1e-5


def cmd_export(args) -> int:
    import numpy as np

    from ..tools.runs import check_writable_parent

    out = Path(args.onnx)
    if out.suffix != ".onnx":
        raise UsageError(f"{out.name}: an ONNX model's name ends in .onnx")
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists; pass --force to replace it")
    if out.exists() and not out.is_file():
        raise UsageError(f"{out} is not a file")
    check_writable_parent(out)
    weights = weights_in(args.weights)
    require_exporter(args.backend)
    backend = load_backend(args.backend)
    net = load_weights_into(backend, weights, args)
    size, standardize = input_treatment(weights, net.spec)
    backend.export_onnx(net, out, opset=args.opset, input_treatment=(size, standardize))

    # onnxruntime referees the export: the same images through the framework and the file.
    images = np.random.default_rng(0).random(
        (CHECK_IMAGES, net.spec.in_channels, size, size), dtype=np.float32
    )
    expected = backend.predict_logits(net, images)
    gap = float(np.abs(OnnxModel(out).predict_logits(images) - expected).max())
    scale = max(1.0, float(np.abs(expected).max()))
    print(
        f"{net.spec.describe()}: {weights} ({args.backend}) -> {out} (ONNX opset {args.opset}; "
        f"input {input_shape_text(net.spec)} NCHW, trained at {size} px"
        f"{', standardized' if standardize else ''})"
    )
    if gap > CHECK_TOLERANCE * scale:
        print(
            f"nin export: onnxruntime's logits differ from {args.backend}'s by {gap:.2g}; "
            f"{out} is kept for inspection",
            file=sys.stderr,
        )
        return 1
    print(
        f"onnxruntime agrees with {args.backend}: largest logit difference {gap:.1g} "
        f"on {CHECK_IMAGES} random images"
    )
    return 0


def input_shape_text(spec) -> str:
    size = spec.input_size if spec.fixed_input_size else None
    return f"images (batch, {spec.in_channels}, {size or 'height'}, {size or 'width'})"


def add_commands(commands) -> None:
    text = "trained weights as an ONNX model (dynamic batch, NCHW input), checked on onnxruntime"
    sub = commands.add_parser("export", help=text, description=text)
    sub.set_defaults(function=cmd_export)
    sub.add_argument(
        "--backend",
        required=True,
        choices=list(BACKENDS),
        help="the framework whose converter writes the model",
    )
    sub.add_argument(
        "--weights", required=True, help="weights.npz, the backend's native file, or a run folder"
    )
    sub.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the model to write")
    sub.add_argument(
        "--opset",
        type=int,
        choices=OPSETS,
        default=DEFAULT_OPSET,
        help=f"ONNX opset (default {DEFAULT_OPSET})",
    )
    sub.add_argument("--force", action="store_true", help="replace OUT.onnx if it exists")
    add_spec_arguments(sub)
