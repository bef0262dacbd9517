"""The backend registry: one entry per backend, lazy imports and clear errors for missing
frameworks.

Every list of backends, every choice, colour, label, help text and test parameter is built
from :data:`BACKENDS`; adding a backend is one entry here, its package and its pins.
Backends are imported only when asked for (as einops does), so `nin shapes --backend torch`
never pays for importing TensorFlow. Core layer.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from types import ModuleType

from .platform.engines import Engine, JaxDistributed, ParameterServer, TFConfig, TorchRun


@dataclass(frozen=True)
class BackendInfo:
    """Everything `common` knows about one backend without importing it."""

    name: str  # what --backend takes
    package: str  # the backend package (nin_torch)
    framework: str  # the module it needs installed (torch)
    extra: str  # its pip extra (nin-reference[torch])
    label: str  # its name in reports
    model_class: str  # what a model of it is, in words
    color: str  # its colour in plots (matplotlib)
    distributions: tuple[str, ...]  # what it runs on, for the versions a run records
    # The modules whose classes make a model of its framework: how `nin check` tells a
    # reader's model's framework from its type.
    model_modules: tuple[str, ...]
    d2l_modules: tuple[str, ...]  # the book's package's modules for this framework
    onnx_needs: tuple[str, ...]  # what exporting to ONNX needs installed
    engine: Engine  # its data-parallel engine's launch convention
    book_path: str  # what Trainer(fast=False), the book's code path, runs (the bench's baseline)
    # Distributions pip must install with --no-deps, after the extra: their metadata forbids
    # the NumPy the others need (MXNet's says numpy<2), though they run with it.
    no_deps: tuple[str, ...] = ()
    # Whether its fast training path (Trainer(fast=True)) computes bit for bit what the
    # book's path computes: PyTorch's channels-last convolutions round otherwise than NCHW, and
    # JAX's two max poolings' gradients add overlapping windows in another order.
    fast_path_exact: bool = True


BACKENDS: dict[str, BackendInfo] = {
    info.name: info
    for info in (
        BackendInfo(
            "torch",
            "nin_torch",
            "torch",
            "torch",
            "PyTorch",
            "torch nn.Module",
            "tab:red",
            distributions=("torch",),
            model_modules=("torch",),
            d2l_modules=("d2l.torch", "d2lzh_pytorch"),
            onnx_needs=("onnx", "onnxruntime"),
            engine=TorchRun(),
            book_path="eager NCHW PyTorch",
            fast_path_exact=False,
        ),
        BackendInfo(
            "mxnet",
            "nin_mxnet",
            "mxnet",
            "mxnet",
            "MXNet Gluon",
            "Gluon Block",
            "tab:blue",
            distributions=("mxnet",),
            model_modules=("mxnet",),
            d2l_modules=("d2l.mxnet", "d2lzh"),
            onnx_needs=("onnx", "onnxruntime"),
            engine=ParameterServer(package="nin_mxnet"),
            book_path="non-hybridized Gluon",
            no_deps=("mxnet",),
        ),
        BackendInfo(
            "tf",
            "nin_tf",
            "tensorflow",
            "tf",
            "Keras 3 (TensorFlow)",
            "Keras Model",
            "tab:orange",
            distributions=("tensorflow-cpu", "tensorflow", "keras"),
            model_modules=("keras", "tensorflow", "tf_keras"),
            d2l_modules=("d2l.tensorflow",),
            onnx_needs=("onnx", "onnxruntime", "tf2onnx"),
            engine=TFConfig(),
            book_path="`compile` + `train_on_batch` and eager calls in Keras",
        ),
        BackendInfo(
            "jax",
            "nin_jax",
            "jax",
            "jax",
            "JAX",
            "Flax module",
            "tab:green",
            distributions=("jax", "jaxlib"),
            # A JAX model is parameters and pure functions: this package's Network (a Flax
            # linen module and its parameters), or a reader's Flax module, as the book's JAX
            # code builds them.
            model_modules=("nin_jax", "flax"),
            d2l_modules=("d2l.jax",),  # its stand-in: nin_jax/d2l.py, on Flax linen
            onnx_needs=("onnx", "onnxruntime"),  # (the graph is written from the spec)
            engine=JaxDistributed(),
            book_path="a jitted JAX step pooling with Flax's `nn.max_pool` (XLA's `reduce_window`)",
            # The book's path pools with XLA's reduce_window, whose gradient sums overlapping
            # windows in another order than nin_jax's max_pool (1e-6 relative).
            fast_path_exact=False,
        ),
    )
}
# Views of the registry, for the many places that want one field by name.
FRAMEWORK_LABELS = {name: info.label for name, info in BACKENDS.items()}


def listed(words, last: str = "and") -> str:
    """'a, b and c': the registry's names, labels or engines in a sentence."""
    words = list(words)
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"


class BackendUnavailable(RuntimeError):
    """The backend's framework is not installed (or fails to import)."""


def check_backend_name(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    return name


def framework_of(obj) -> str | None:
    """The backend whose framework `obj`'s class comes from, by module name alone: nothing is
    imported that the object's own framework did not already import."""
    for cls in type(obj).__mro__:
        module = cls.__module__ or ""
        for name, info in BACKENDS.items():
            if any(
                module == prefix or module.startswith(prefix + ".") for prefix in info.model_modules
            ):
                return name
    return None


def is_installed(name: str) -> bool:
    return importlib.util.find_spec(BACKENDS[check_backend_name(name)].framework) is not None


def load_backend(name: str) -> ModuleType:
    """Import and return the backend package (`nin_torch`, ...) for `name`.

    A framework that is missing, or installed but failing to import (one built against
    another NumPy raises AttributeError or ImportError), is a :class:`BackendUnavailable`; an
    error in the backend package's own code is not hidden behind it.
    """
    info = BACKENDS[check_backend_name(name)]
    package, framework = info.package, info.framework
    if not is_installed(name):
        raise BackendUnavailable(
            f"backend {name!r} needs {framework}, which is not installed; "
            f"run `make setup` or {install_command(info)}"
        )
    try:
        return importlib.import_module(package)  # which imports (and configures) the framework
    except BackendUnavailable:
        raise
    # frameworks fail in many ways (ImportError, AttributeError, OSError)
    except Exception as error:
        try:
            importlib.import_module(framework)
        except Exception:
            first = (str(error).strip().splitlines() or [""])[0][:200]
            raise BackendUnavailable(
                f"backend {name!r}: {framework} is installed but fails to import "
                f"({type(error).__name__}: {first}); reinstall with `make setup`, whose "
                "constraints.txt pins versions that work together"
            ) from None
        raise  # the framework imports: the error is the backend package's own


def import_through_backend(package: str) -> None:
    """Before a reader's file imports `package`: when it is a backend's framework not yet
    imported, import it through the backend package, which prepares the process first (MXNet
    1.9 reads names NumPy 2 removed, which nin_mxnet restores; its thread count). A framework
    that fails to import is left to the reader's own import statement to report."""
    for name, info in BACKENDS.items():
        if info.framework == package and package not in sys.modules and is_installed(name):
            with contextlib.suppress(BackendUnavailable):
                load_backend(name)


def install_command(info: BackendInfo) -> str:
    """The pip command(s) that install a backend's framework beside the others."""
    command = f"pip install -c constraints.txt 'nin-reference[{info.extra}]'"
    if info.no_deps:
        command += f" && pip install --no-deps -c constraints.txt {' '.join(info.no_deps)}"
    return command


def load_backend_module(name: str, module: str) -> ModuleType:
    """One module of a backend package (``nin_torch.probe``, ``nin_tf.distributed``), its
    framework imported and checked first by :func:`load_backend`."""
    load_backend(name)
    return importlib.import_module(f"{BACKENDS[name].package}.{module}")


def installed_backends() -> list[str]:
    return [name for name in BACKENDS if is_installed(name)]


def framework_versions(name: str) -> dict[str, str]:
    """Installed versions of what the backend runs on, read from package metadata."""
    from importlib import metadata

    versions = {"numpy": metadata.version("numpy")}
    for distribution in BACKENDS[check_backend_name(name)].distributions:
        try:
            versions[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            pass
    return versions
