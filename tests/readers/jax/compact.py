# A linen module written @nn.compact: the layers are made where they are called, with
# nn.relu, nn.max_pool and jnp.mean between them, and the mode is an argument.
import jax.numpy as jnp
from flax import linen as nn


class NiNBlock(nn.Module):
    channels: int
    kernel: int
    stride: int
    padding: int

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(self.channels, (self.kernel, self.kernel), self.stride, self.padding)(x)
        x = nn.relu(x)
        x = nn.relu(nn.Conv(self.channels, (1, 1))(x))
        return nn.relu(nn.Conv(self.channels, (1, 1))(x))


class NiN(nn.Module):
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = NiNBlock(96, 11, 4, 0)(x)
        x = nn.max_pool(x, (3, 3), (2, 2))
        x = NiNBlock(256, 5, 1, 2)(x)
        x = nn.max_pool(x, (3, 3), (2, 2))
        x = NiNBlock(384, 3, 1, 1)(x)
        x = nn.max_pool(x, (3, 3), (2, 2))
        x = nn.Dropout(0.5, deterministic=not train)(x)
        x = NiNBlock(self.num_classes, 3, 1, 1)(x)
        return jnp.mean(x, axis=(1, 2))  # global average pooling, flattened


net = NiN()
