# Mistake: the first block's pooling moved inside the block, between its 1x1 convolutions.
import torch
from torch import nn
from d2l import torch as d2l

net = nn.Sequential(
    nn.Conv2d(1, 96, kernel_size=11, stride=4), nn.ReLU(),
    nn.Conv2d(96, 96, kernel_size=1), nn.ReLU(),
    nn.MaxPool2d(3, stride=2),
    nn.Conv2d(96, 96, kernel_size=1), nn.ReLU(),
    nn.Conv2d(96, 256, kernel_size=5, padding=2), nn.ReLU(),
    nn.Conv2d(256, 256, kernel_size=1), nn.ReLU(),
    nn.Conv2d(256, 256, kernel_size=1), nn.ReLU(),
    nn.MaxPool2d(3, stride=2),
    nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(),
    nn.Conv2d(384, 384, kernel_size=1), nn.ReLU(),
    nn.Conv2d(384, 384, kernel_size=1), nn.ReLU(),
    nn.MaxPool2d(3, stride=2),
    nn.Dropout(0.5),
    nn.Conv2d(384, 10, kernel_size=3, padding=1), nn.ReLU(),
    nn.Conv2d(10, 10, kernel_size=1), nn.ReLU(),
    nn.Conv2d(10, 10, kernel_size=1), nn.ReLU(),
    nn.AdaptiveAvgPool2d((1, 1)),
    nn.Flatten())

train_iter, test_iter = d2l.load_data_fashion_mnist(128, resize=224)
d2l.train_ch6(net, train_iter, test_iter, 10, 0.1, d2l.try_gpu())
