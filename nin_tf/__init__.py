"""NiN in Keras 3 on TensorFlow: ``import nin_tf as nin`` gives the same API as the other
backends.

Backend layer.
"""

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
        f"{keras.backend.backend()!r} backend; import nin_tf first or unset KERAS_BACKEND"
    )

from common import api  # noqa: E402
from common.api import *  # noqa: E402,F401,F403  the half of the API written once, for every backend

from .bench import gemm_seconds  # noqa: E402
from .export import export_onnx  # noqa: E402
from .model import build_nin, layer_outputs, nin_block, parameter_shapes, predict_logits  # noqa: E402
from .train import Trainer  # noqa: E402
from .weights import (  # noqa: E402
    FRAMEWORK_VERSION,
    NATIVE_SUFFIX,
    get_weights,
    load_native,
    save_native,
    set_weights,
)

BACKEND = "tf"
train = Trainer.train

__all__ = api.PUBLIC_API
