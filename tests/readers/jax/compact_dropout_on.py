# Mistake: the dropout told deterministic=False outright, in a compact module: it stays on
# when the model predicts.
import jax.numpy as jnp
from flax import linen as nn


class Block(nn.Module):
    channels: int
    kernel: int
    stride: int
    padding: int

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(self.channels, (self.kernel, self.kernel), self.stride, self.padding)(x))
        x = nn.relu(nn.Conv(self.channels, (1, 1))(x))
        return nn.relu(nn.Conv(self.channels, (1, 1))(x))


class NiN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.max_pool(Block(96, 11, 4, 0)(x), (3, 3), (2, 2))
        x = nn.max_pool(Block(256, 5, 1, 2)(x), (3, 3), (2, 2))
        x = nn.max_pool(Block(384, 3, 1, 1)(x), (3, 3), (2, 2))
        x = nn.Dropout(0.5, deterministic=False)(x)
        return jnp.mean(Block(10, 3, 1, 1)(x), axis=(1, 2))


net = NiN()
