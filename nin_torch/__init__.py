"""NiN in PyTorch: ``import nin_torch as nin`` gives the same API as nin_mxnet and nin_tf."""

from .model import (build_nin, count_params, layer_shapes, nin_block, params_by_layer,
                    predict_logits)
from .train import Trainer, evaluate, train
from .weights import export_weights, get_weights, import_weights, set_weights

BACKEND = "torch"

__all__ = ["BACKEND", "Trainer", "build_nin", "count_params", "evaluate", "export_weights",
           "get_weights", "import_weights", "layer_shapes", "nin_block", "params_by_layer",
           "predict_logits", "set_weights", "train"]
