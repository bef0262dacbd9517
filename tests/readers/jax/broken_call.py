# Mistake: a module whose __call__ takes an argument nobody passes (it cannot run at all).
import jax.numpy as jnp
from flax import linen as nn


class NiN(nn.Module):
    @nn.compact
    def __call__(self, x, scale):
        x = nn.relu(nn.Conv(96, (11, 11), 4, 0)(x))
        x = nn.relu(nn.Conv(96, (1, 1))(x))
        return jnp.mean(x, axis=(1, 2)) * scale


net = NiN()
