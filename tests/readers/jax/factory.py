# Only a function that builds the model, with Flax NNX's Sequential: check it with
# `nin check factory.py:get_net`.
from functools import partial

from flax import nnx


def block(in_channels, out_channels, kernel_size, strides, padding, rngs):
    return nnx.Sequential(
        nnx.Conv(in_channels, out_channels, (kernel_size, kernel_size), strides,
                 padding=padding, rngs=rngs), nnx.relu,
        nnx.Conv(out_channels, out_channels, (1, 1), rngs=rngs), nnx.relu,
        nnx.Conv(out_channels, out_channels, (1, 1), rngs=rngs), nnx.relu)


def get_net():
    rngs = nnx.Rngs(0)
    pool = partial(nnx.max_pool, window_shape=(3, 3), strides=(2, 2))
    return nnx.Sequential(
        block(1, 96, 11, 4, 0, rngs), pool,
        block(96, 256, 5, 1, 2, rngs), pool,
        block(256, 384, 3, 1, 1, rngs), pool,
        nnx.Dropout(0.5, rngs=rngs),
        block(384, 10, 3, 1, 1, rngs),
        lambda x: x.mean(axis=(1, 2)))
