# Flax NNX: the layers and their parameters live on the module, which knows its input
# channels; the mode is model.train() / model.eval().
from flax import nnx


class NiNBlock(nnx.Module):
    def __init__(self, in_channels, out_channels, kernel_size, strides, padding, *, rngs):
        self.conv = nnx.Conv(in_channels, out_channels, (kernel_size, kernel_size),
                             strides, padding=padding, rngs=rngs)
        self.conv_1x1_a = nnx.Conv(out_channels, out_channels, (1, 1), rngs=rngs)
        self.conv_1x1_b = nnx.Conv(out_channels, out_channels, (1, 1), rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.conv(x))
        x = nnx.relu(self.conv_1x1_a(x))
        return nnx.relu(self.conv_1x1_b(x))


class NiN(nnx.Module):
    def __init__(self, num_classes=10, *, rngs):
        self.block1 = NiNBlock(1, 96, 11, 4, 0, rngs=rngs)
        self.block2 = NiNBlock(96, 256, 5, 1, 2, rngs=rngs)
        self.block3 = NiNBlock(256, 384, 3, 1, 1, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.block4 = NiNBlock(384, num_classes, 3, 1, 1, rngs=rngs)

    def __call__(self, x):
        x = nnx.max_pool(self.block1(x), (3, 3), (2, 2))
        x = nnx.max_pool(self.block2(x), (3, 3), (2, 2))
        x = nnx.max_pool(self.block3(x), (3, 3), (2, 2))
        x = self.block4(self.dropout(x))
        return x.mean(axis=(1, 2))


model = NiN(rngs=nnx.Rngs(0))
model.eval()
