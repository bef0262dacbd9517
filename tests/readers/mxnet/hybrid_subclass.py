# A reader's own HybridBlock: the blocks as attributes, the activations and pooling in
# hybrid_forward through F.
from mxnet import gluon
from mxnet.gluon import nn


class NiN(nn.HybridBlock):
    def __init__(self, classes=10, **kwargs):
        super().__init__(**kwargs)
        self.blocks = nn.HybridSequential()
        for width, kernel, stride, pad in [(96, 11, 4, 0), (256, 5, 1, 2), (384, 3, 1, 1),
                                           (classes, 3, 1, 1)]:
            block = nn.HybridSequential()
            block.add(nn.Conv2D(width, kernel, stride, pad), nn.Activation('relu'),
                      nn.Conv2D(width, 1), nn.Activation('relu'),
                      nn.Conv2D(width, 1), nn.Activation('relu'))
            self.blocks.add(block)
        self.drop = nn.Dropout(0.5)

    def hybrid_forward(self, F, x):
        for index, block in enumerate(self.blocks):
            if index == 3:
                x = self.drop(x)
            x = block(x)
            if index < 3:
                x = F.Pooling(x, kernel=(3, 3), stride=(2, 2), pool_type='max')
        x = F.Pooling(x, global_pool=True, kernel=(1, 1), pool_type='avg')
        return F.Flatten(x)


net = NiN()
net.initialize()
net.hybridize()
