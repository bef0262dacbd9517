"""The parts of the book's d2l package a reader's PyTorch model is built with, for the
stand-in :mod:`common.d2l` gives ``nin check`` (d2l 2023, ``from d2l import torch``).

Backend layer.
"""

from __future__ import annotations

import torch
from torch import nn

from common.d2l import HyperParameters

__all__ = ["Classifier", "HyperParameters", "Module", "cpu", "init_cnn", "try_gpu", "nn", "torch"]


class Module(nn.Module, HyperParameters):
    """d2l.Module as a model: ``self.net`` is the network."""

    def __init__(self, plot_train_per_epoch=2, plot_valid_per_epoch=1):
        super().__init__()

    def forward(self, X):
        return self.net(X)

    def apply_init(self, inputs, init=None):
        self.forward(*inputs)
        if init is not None:
            self.net.apply(init)

    def layer_summary(self, X_shape):
        X = torch.randn(*X_shape)
        for layer in self.net:
            X = layer(X)
            print(layer.__class__.__name__, "output shape:\t", X.shape)


class Classifier(Module):
    pass


def init_cnn(module):
    """Xavier initialisation of convolutions and dense layers (d2l.init_cnn)."""
    if type(module) in (nn.Linear, nn.Conv2d):
        nn.init.xavier_uniform_(module.weight)


def try_gpu(i=0):
    return torch.device("cpu")  # the checker runs on the CPU


def cpu():
    return torch.device("cpu")
