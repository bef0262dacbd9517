# Exercise 5's smallest family member: NiN-S (widths 64, 192, 256; one 1x1 per block).
from mxnet import init
from mxnet.gluon import nn


def nin_block(num_channels, kernel_size, strides, padding):
    blk = nn.HybridSequential()
    blk.add(nn.Conv2D(num_channels, kernel_size, strides, padding, activation='relu'),
            nn.Conv2D(num_channels, kernel_size=1, activation='relu'))
    return blk


net = nn.HybridSequential()
for width, kernel, stride, pad in [(64, 11, 4, 0), (192, 5, 1, 2), (256, 3, 1, 1)]:
    net.add(nin_block(width, kernel, stride, pad), nn.MaxPool2D(pool_size=3, strides=2))
net.add(nn.Dropout(0.5), nin_block(10, 3, 1, 1), nn.GlobalAvgPool2D(), nn.Flatten())
net.initialize(init.Xavier())
