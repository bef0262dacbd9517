"""The parts of the book's d2l package a reader's JAX model is built with, for the stand-in
:mod:`common.d2l` gives ``nin check`` (d2l 2023, ``from d2l import jax as d2l``).

The book's JAX models are Flax linen modules: ``d2l.Module`` is a ``flax.linen.Module`` whose
``__call__`` runs ``self.net``, and a model's hyperparameters are its dataclass fields
(``lr: float = 0.1``, ``training: bool = True``). The book's plotting board, a field too, is
left out: nothing here plots or trains.

Backend layer.
"""

from __future__ import annotations

import random

import jax
from flax import linen as nn
from jax import numpy as jnp

from common.d2l import HyperParameters

__all__ = [
    "Classifier",
    "HyperParameters",
    "Module",
    "cpu",
    "get_key",
    "get_seed",
    "gpu",
    "jax",
    "jnp",
    "nn",
    "nn_Module",
    "num_gpus",
    "try_all_gpus",
    "try_gpu",
]

nn_Module = nn.Module


def get_seed() -> int:
    return random.randint(0, 1_000_000)


def get_key():
    return jax.random.PRNGKey(get_seed())


class Module(nn.Module, HyperParameters):
    """d2l.Module as a model: ``__call__`` runs ``self.net`` (made in ``setup``)."""

    def forward(self, X, *args, **kwargs):
        assert hasattr(self, "net"), "Neural network is defined"
        return self.net(X, *args, **kwargs)

    def __call__(self, X, *args, **kwargs):
        return self.forward(X, *args, **kwargs)

    def apply_init(self, dummy_input, key):
        return self.init(key, *dummy_input)


class Classifier(Module):
    """d2l.Classifier: what a model is built with (its loss and accuracy train, and are not
    here)."""

    def layer_summary(self, X_shape, key=None):
        """Each layer of ``self.net`` and its output's shape, as the book prints them (traced
        abstractly: the shapes need no numbers, and Flax's real ``init`` takes seconds)."""

        def summary(X):
            params = self.init(key if key is not None else get_key(), X)
            bound_model = self.clone().bind(params, mutable=["batch_stats"])
            _ = bound_model(X)
            for layer in bound_model.net.layers:
                X = layer(X)
                print(layer.__class__.__name__, "output shape:\t", X.shape)

        jax.eval_shape(summary, jax.ShapeDtypeStruct(tuple(X_shape), jnp.float32))


def cpu():
    return jax.devices("cpu")[0]


def gpu(i=0):
    return cpu()  # the checker runs on the CPU


def num_gpus():
    return 0


def try_gpu(i=0):
    return cpu()


def try_all_gpus():
    return [cpu()]
