"""NiN in MXNet Gluon: ``import nin_mxnet as nin`` gives the same API as the other backends.

Backend layer.
"""

import os
import sys

from common.platform.threads import intra_op_threads

from ._numpy_compat import restore_removed_names

# MXNet 1.9.1 reads names NumPy 2 removed: they go back on numpy before mxnet is imported.
restore_removed_names()

# MXNet sizes its OpenMP pool once, as it loads. Without OMP_NUM_THREADS it takes half the
# processors on x86, assuming two hyper-threads per core (apache/mxnet#10836): on a machine
# without them, such as this project's 2-core one, it trained on one core of two.
# MXNET_OMP_MAX_THREADS is read only then and outranks OMP_NUM_THREADS, so it is set for
# this import alone: a worker started later gets the OMP_NUM_THREADS its launcher gives it.
if "mxnet" not in sys.modules and "MXNET_OMP_MAX_THREADS" not in os.environ:
    os.environ["MXNET_OMP_MAX_THREADS"] = str(intra_op_threads())
    try:
        import mxnet  # noqa: F401
    finally:
        del os.environ["MXNET_OMP_MAX_THREADS"]

from common import api
from common.api import *  # noqa: F401,F403  the half of the API written once, for every backend

from .bench import gemm_seconds
from .export import export_onnx
from .model import build_nin, layer_outputs, nin_block, parameter_shapes, predict_logits
from .train import Trainer
from .weights import (
    FRAMEWORK_VERSION,
    NATIVE_SUFFIX,
    get_weights,
    load_native,
    save_native,
    set_weights,
)

BACKEND = "mxnet"
train = Trainer.train

__all__ = api.PUBLIC_API
