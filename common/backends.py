"""The backend registry: names, lazy imports and clear errors for missing frameworks.

Backends are imported only when asked for (as einops does), so `nin shapes --backend torch`
never pays for importing TensorFlow.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

# name -> (package, framework module it needs, pip extra)
BACKENDS = {
    "torch": ("nin_torch", "torch", "torch"),
    "mxnet": ("nin_mxnet", "mxnet", "mxnet"),
    "tf": ("nin_tf", "tensorflow", "tf"),
}
FRAMEWORK_LABELS = {"torch": "PyTorch", "mxnet": "MXNet Gluon", "tf": "Keras 3 (TensorFlow)"}
# The modules whose classes make a model of each backend's framework: how `nin check` tells a
# reader's model's framework from its type without importing any framework.
MODEL_MODULES = {"torch": ("torch",), "mxnet": ("mxnet",),
                 "tf": ("keras", "tensorflow", "tf_keras")}


class BackendUnavailable(RuntimeError):
    """The backend's framework is not installed (or fails to import)."""


def check_backend_name(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    return name


def is_installed(name: str) -> bool:
    return importlib.util.find_spec(BACKENDS[check_backend_name(name)][1]) is not None


def load_backend(name: str) -> ModuleType:
    """Import and return the backend package (`nin_torch`, ...) for `name`.

    A framework that is missing, or installed but failing to import (MXNet 1.9 with NumPy
    >= 1.24 raises AttributeError), is a :class:`BackendUnavailable`; an error in the backend
    package's own code is not hidden behind it.
    """
    package, framework, extra = BACKENDS[check_backend_name(name)]
    if not is_installed(name):
        raise BackendUnavailable(f"backend {name!r} needs {framework}, which is not installed; "
                                 f"run `make setup` or pip install 'nin-reference[{extra}]'")
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
                "constraints.txt pins versions that work together") from None
        raise  # the framework imports: the error is the backend package's own


def load_backend_module(name: str, module: str) -> ModuleType:
    """One module of a backend package (``nin_torch.probe``, ``nin_tf.distributed``), its
    framework imported and checked first by :func:`load_backend`."""
    load_backend(name)
    return importlib.import_module(f"{BACKENDS[name][0]}.{module}")


def installed_backends() -> list[str]:
    return [name for name in BACKENDS if is_installed(name)]


def framework_versions(name: str) -> dict[str, str]:
    """Installed versions of what the backend runs on, read from package metadata."""
    from importlib import metadata

    distributions = {"torch": ["torch"], "mxnet": ["mxnet"],
                     "tf": ["tensorflow-cpu", "tensorflow", "keras"]}[check_backend_name(name)]
    versions = {"numpy": metadata.version("numpy")}
    for distribution in distributions:
        try:
            versions[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            pass
    return versions
