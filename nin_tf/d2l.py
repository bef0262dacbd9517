"""The parts of the book's d2l package a reader's Keras model is built with, for the stand-in
:mod:`common.d2l` gives ``nin check`` (``from d2l import tensorflow as d2l``).

Backend layer.
"""

from __future__ import annotations

import tensorflow as tf

from common.d2l import HyperParameters

__all__ = ["Classifier", "HyperParameters", "Module", "cpu", "tf", "try_gpu"]


class Module(tf.keras.Model, HyperParameters):
    """d2l.Module as a model: ``self.net`` is the network."""

    def __init__(self, plot_train_per_epoch=2, plot_valid_per_epoch=1):
        super().__init__()

    def call(self, X, *args, **kwargs):
        return self.net(X, *args, **kwargs)

    def layer_summary(self, X_shape):
        X = tf.random.normal(X_shape)
        for layer in self.net.layers:
            X = layer(X)
            print(layer.__class__.__name__, "output shape:\t", X.shape)


class Classifier(Module):
    pass


def try_gpu(i=0):
    return tf.device("/CPU:0")  # the checker runs on the CPU


def cpu():
    return tf.device("/CPU:0")
