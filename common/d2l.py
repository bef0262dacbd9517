"""A stand-in for the book's ``d2l`` package while ``nin check`` runs a reader's file.

Readers' files import d2l (``from d2l import torch as d2l``, ``import d2lzh as d2l``), build
the model with a few of its helpers and then load Fashion-MNIST and train with it. The
stand-in gives them the helpers a model is built with (``d2l.Classifier``, ``d2l.init_cnn``,
``d2l.try_gpu``: each backend's ``d2l`` module) and nothing else: anything that would load
data or train raises :class:`NotAvailable`, which the runner treats as "not run". So a file
is checked the same whether d2l is installed or not, and never downloads or trains.

Core layer.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types

from .backends import BACKENDS

# Which backend each module name of the book's packages stands for.
MODULES = {
    "d2l": None,
    **{module: name for name, info in BACKENDS.items() for module in info.d2l_modules},
}
_TRAINING = {
    "train_ch3",
    "train_ch5",
    "train_ch6",
    "train_ch11",
    "train_ch13",
    "Trainer",
    "train_epoch_ch3",
    "train_2d",
    "train_concise_ch11",
}
_NO_OPS = {"use_svg_display", "set_figsize", "set_axes"}


class NotAvailable(Exception):
    """A d2l function the stand-in does not run (data loading, training, plotting)."""


class _Unavailable:
    """What the stand-in gives for any other name: calling it, or deriving a class from it,
    raises NotAvailable."""

    def __init__(self, name: str):
        self.name = name

    def _raise(self):
        what = (
            "does not train"
            if self.name.split(".")[-1] in _TRAINING
            else "loads no data and does not train"
        )
        raise NotAvailable(f"{self.name} is not run: the checker's stand-in for d2l {what}")

    def __call__(self, *args, **kwargs):
        self._raise()

    def __mro_entries__(self, bases):
        self._raise()

    def __getattr__(self, attribute):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return _Unavailable(f"{self.name}.{attribute}")


class HyperParameters:
    """d2l's mixin: ``save_hyperparameters()`` keeps the caller's arguments as attributes."""

    def save_hyperparameters(self, ignore=()):
        frame = inspect.currentframe().f_back
        _, _, _, local_vars = inspect.getargvalues(frame)
        self.hparams = {
            key: value
            for key, value in local_vars.items()
            if key not in set(ignore) | {"self"} and not key.startswith("_")
        }
        for key, value in self.hparams.items():
            setattr(self, key, value)


def _no_op(*args, **kwargs):
    return None


def _module(name: str, backend: str | None) -> types.ModuleType:
    module = types.ModuleType(name, f"nin check's stand-in for {name}")
    short = "d2l"

    def attribute(attribute: str):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        if attribute in _NO_OPS:
            return _no_op
        if backend is not None:
            helpers = importlib.import_module(f"{BACKENDS[backend].package}.d2l")
            if attribute in helpers.__all__:
                value = getattr(helpers, attribute)
                setattr(module, attribute, value)
                return value
        return _Unavailable(f"{short}.{attribute}")

    module.__getattr__ = attribute
    return module


def install() -> None:
    """Put the stand-ins in sys.modules, in place of any installed d2l."""
    for name, backend in MODULES.items():
        sys.modules[name] = _module(name, backend)
    package = sys.modules["d2l"]
    package.__path__ = []  # a package, so that `from d2l import torch` finds its submodules
    for name in MODULES:
        if name.startswith("d2l."):
            setattr(package, name.split(".", 1)[1], sys.modules[name])
