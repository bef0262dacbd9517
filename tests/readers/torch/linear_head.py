# The linear head: no ReLU on the class maps (this project's training presets).
import torch
from torch import nn


def nin_block(in_channels, out_channels, kernel_size, strides, padding, last_relu=True):
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size, strides, padding), nn.ReLU(),
              nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
              nn.Conv2d(out_channels, out_channels, kernel_size=1)]
    if last_relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


net = nn.Sequential(
    nin_block(1, 96, kernel_size=11, strides=4, padding=0), nn.MaxPool2d(3, stride=2),
    nin_block(96, 256, kernel_size=5, strides=1, padding=2), nn.MaxPool2d(3, stride=2),
    nin_block(256, 384, kernel_size=3, strides=1, padding=1), nn.MaxPool2d(3, stride=2),
    nn.Dropout(0.5),
    nin_block(384, 10, kernel_size=3, strides=1, padding=1, last_relu=False),
    nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())
