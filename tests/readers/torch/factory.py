# Only a function that builds the model: check it with `nin check factory.py:get_net`.
from torch import nn


def block(out_channels, kernel_size, stride, padding):
    return nn.Sequential(nn.LazyConv2d(out_channels, kernel_size, stride, padding), nn.ReLU(),
                         nn.LazyConv2d(out_channels, 1), nn.ReLU(),
                         nn.LazyConv2d(out_channels, 1), nn.ReLU())


def get_net():
    return nn.Sequential(block(96, 11, 4, 0), nn.MaxPool2d(3, 2),
                         block(256, 5, 1, 2), nn.MaxPool2d(3, 2),
                         block(384, 3, 1, 1), nn.MaxPool2d(3, 2), nn.Dropout(0.5),
                         block(10, 3, 1, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
