"""The backend contract, and the public functions built on it once for every backend.

A backend package supplies primitives (:class:`Backend`): building the model, its weights in
the canonical format, its native save and load, inference (logits, and any top-level
layers' outputs), its parameters' shapes as the framework holds them, ONNX export, a GEMM
timing and a :class:`common.training.Trainer` with one optimisation step. Everything else in
its public API is here, the same for all: ``count_params``, ``params_by_layer``,
``layer_shapes``, ``layer_output``, ``evaluate``, ``export_weights``, ``import_weights``.
They find the model's backend from its type (:func:`common.backends.framework_of`), as
einops finds a tensor's, so each package simply re-exports them.

Core layer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from . import shapes, training
from . import weights as interchange
from .backends import framework_of, load_backend

# The functions below, the same in every backend's package.
__all__ = [
    "count_params",
    "evaluate",
    "export_weights",
    "import_weights",
    "layer_output",
    "layer_shapes",
    "params_by_layer",
]


class Backend(Protocol):
    """What ``import nin_<framework> as nin`` must provide (tests/test_layers.py checks each
    backend against it, signatures included). Arrays in and out are NumPy, images NCHW."""

    BACKEND: str  # the registry name
    NATIVE_SUFFIX: str  # the file suffix of the framework's own weights format
    FRAMEWORK_VERSION: str  # written into exported files
    Trainer: type[training.Trainer]
    train: Callable  # Trainer.train: the book's train_ch6 (common.training.Trainer.train)

    def build_nin(self, spec=None, *, seed: int = 0, **overrides) -> Any:
        """The spec's network with Xavier weights drawn from `seed`; knows it as ``.spec``."""

    def nin_block(
        self, out_channels: int, kernel_size: int, strides: int, padding: int, num_1x1: int = 2
    ) -> Any:
        """The book's NiN block as a layer of the framework."""

    def get_weights(self, net) -> dict[str, np.ndarray]:
        """The parameters in the canonical format (:mod:`common.weights`)."""

    def set_weights(self, net, arrays: dict[str, np.ndarray]) -> None:
        """Set the parameters from canonical arrays (checked against the spec first)."""

    def save_native(self, net, path) -> Path:
        """The framework's own weights file."""

    def load_native(self, net, path) -> None:
        """Read the framework's own weights file into `net`."""

    def predict_logits(self, net, images, batch_size: int = 256) -> np.ndarray:
        """Logits (N, classes) in inference mode, on the backend's fast path."""

    def layer_outputs(self, net, images, names) -> dict[str, np.ndarray]:
        """The NCHW outputs of the top-level layers `names` in one inference pass."""

    def parameter_shapes(self, net) -> dict[str, list[tuple[int, ...]]]:
        """Each top-level layer's parameters' shapes, as the framework holds them."""

    def export_onnx(self, net, path, *, opset: int = 17, input_treatment=None) -> Path:
        """The model as an ONNX file (:mod:`common.onnx`)."""

    def gemm_seconds(self, n: int = 2048, repeats: int = 3) -> float:
        """Seconds for one float32 n x n matrix product (the bench's peak probe)."""


# What ``import nin_<framework> as nin`` offers: the primitives and the shared functions.
PUBLIC_API = sorted(
    {name for name in dir(Backend) if not name.startswith("_")}
    | set(Backend.__annotations__)
    | set(__all__)
)


def backend_for(net) -> ModuleType:
    """The backend package whose framework `net` is a model of."""
    name = framework_of(net)
    if name is None:
        raise TypeError(
            f"{type(net).__module__}.{type(net).__name__} is not a model of any backend's framework"
        )
    return load_backend(name)


def params_by_layer(net) -> dict[str, int]:
    """Parameter count of each top-level layer (layers without any count 0)."""
    held = backend_for(net).parameter_shapes(net)
    return {
        name: sum(int(np.prod(shape)) for shape in held.get(name, []))
        for name in net.spec.layer_names()
    }


def count_params(net) -> int:
    return sum(params_by_layer(net).values())


def layer_shapes(net, input_shape: tuple[int, ...]) -> list[shapes.LayerShape]:
    """Each top-level layer's output shape (NCHW) for an NCHW input of `input_shape`."""
    shapes.check_input_shape(net.spec, input_shape)
    names = net.spec.layer_names()
    outputs = backend_for(net).layer_outputs(net, np.zeros(input_shape, np.float32), names)
    return [shapes.LayerShape(name, tuple(outputs[name].shape)) for name in names]


def layer_output(net, images, name: str) -> np.ndarray:
    """The output (NCHW) of the top-level layer `name` for NCHW `images`, in inference mode:
    a look inside, e.g. at the class maps of the last NiN block."""
    images = shapes.as_input_batch(net.spec, images)
    shapes.check_layer_name(net.spec, name)
    return backend_for(net).layer_outputs(net, images, [name])[name]


def evaluate(net, data) -> float:
    """Accuracy of `net` on a :class:`common.data.DataLoader`, in inference mode."""
    predict = backend_for(net).predict_logits
    return training.accuracy(lambda images: predict(net, images), data.epoch())


def export_weights(net, path: str | Path, **metadata) -> Path:
    """The interchange .npz (:mod:`common.weights`); `metadata` is stored beside the arrays."""
    backend = backend_for(net)
    return interchange.save_weights(
        path,
        net.spec,
        backend.get_weights(net),
        framework=backend.BACKEND,
        framework_version=backend.FRAMEWORK_VERSION,
        **metadata,
    )


def import_weights(net, path: str | Path) -> None:
    backend_for(net).set_weights(net, interchange.load_weights(path, net.spec).arrays)
