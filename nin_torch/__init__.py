"""NiN in PyTorch: ``import nin_torch as nin`` gives the same API as nin_mxnet and nin_tf."""

from .bench import gemm_seconds
from .export import export_onnx
from .model import (build_nin, count_params, layer_output, layer_shapes, nin_block,
                    params_by_layer, predict_logits)
from .train import Trainer, evaluate, train
from .weights import (NATIVE_SUFFIX, export_weights, get_weights, import_weights,
                      load_native, save_native, set_weights)

BACKEND = "torch"

__all__ = [
    "BACKEND", "NATIVE_SUFFIX", "Trainer", "build_nin", "count_params", "evaluate",
    "export_onnx", "export_weights", "gemm_seconds", "get_weights", "import_weights",
    "layer_output", "layer_shapes", "load_native", "nin_block", "params_by_layer",
    "predict_logits", "save_native", "set_weights", "train",
]
