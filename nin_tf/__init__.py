"""NiN in Keras 3 on TensorFlow: ``import nin_tf as nin`` gives the same API as nin_torch and
nin_mxnet."""

import os
import sys

# Keras 3 picks its backend once, at its first import; this package needs TensorFlow's.
if "keras" not in sys.modules:
    os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out

import keras  # noqa: E402

from common.backends import BackendUnavailable  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise BackendUnavailable(
        f"nin_tf needs Keras on TensorFlow, but Keras was already imported with the "
        f"{keras.backend.backend()!r} backend; import nin_tf first or unset KERAS_BACKEND")

from .bench import gemm_seconds  # noqa: E402
from .export import export_onnx  # noqa: E402
from .model import (build_nin, count_params, layer_output, layer_shapes, nin_block,  # noqa: E402
                    params_by_layer, predict_logits)
from .train import Trainer, evaluate, train  # noqa: E402
from .weights import (NATIVE_SUFFIX, export_weights, get_weights, import_weights,  # noqa: E402
                      load_native, save_native, set_weights)

BACKEND = "tf"

__all__ = [
    "BACKEND", "NATIVE_SUFFIX", "Trainer", "build_nin", "count_params", "evaluate",
    "export_onnx", "export_weights", "gemm_seconds", "get_weights", "import_weights",
    "layer_output", "layer_shapes", "load_native", "nin_block", "params_by_layer",
    "predict_logits", "save_native", "set_weights", "train",
]
