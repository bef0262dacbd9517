"""The parts of the book's d2l package a reader's Gluon model is built with, for the stand-in
:mod:`common.d2l` gives ``nin check`` (``from d2l import mxnet``, ``import d2lzh``).

Backend layer.
"""

from __future__ import annotations

import mxnet as mx
from mxnet import autograd, gluon, init, np, npx
from mxnet.gluon import nn

from common.d2l import HyperParameters

__all__ = [
    "Classifier",
    "HyperParameters",
    "Module",
    "autograd",
    "cpu",
    "gluon",
    "init",
    "nn",
    "np",
    "npx",
    "try_gpu",
]


class Module(nn.Block, HyperParameters):
    """d2l.Module as a model: ``self.net`` is the network."""

    def __init__(self, plot_train_per_epoch=2, plot_valid_per_epoch=1):
        super().__init__()

    def forward(self, X):
        return self.net(X)

    def layer_summary(self, X_shape):
        X = np.random.randn(*X_shape) if mx.util.is_np_array() else mx.nd.random.randn(*X_shape)
        for layer in self.net:
            X = layer(X)
            print(layer.__class__.__name__, "output shape:\t", X.shape)


class Classifier(Module):
    pass


def try_gpu(i=0):
    return mx.cpu()  # the checker runs on the CPU


def cpu():
    return mx.cpu()
