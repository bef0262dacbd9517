"""NiN in JAX (Flax linen layers, optax optimizers): ``import nin_jax as nin`` gives the same
API as the other backends.

Backend layer.
"""

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

BACKEND = "jax"
train = Trainer.train

__all__ = api.PUBLIC_API
