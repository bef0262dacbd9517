# Mistake: the third block's first 1x1 convolution has no ReLU after it (the functional
# forward forgot one F.relu).
import torch
import torch.nn.functional as F
from torch import nn


class NiN(nn.Module):
    def __init__(self):
        super().__init__()
        widths = [(1, 96, 11, 4, 0), (96, 256, 5, 1, 2), (256, 384, 3, 1, 1), (384, 10, 3, 1, 1)]
        self.blocks = nn.ModuleList(
            nn.ModuleList([nn.Conv2d(cin, cout, k, s, p), nn.Conv2d(cout, cout, 1),
                           nn.Conv2d(cout, cout, 1)]) for cin, cout, k, s, p in widths)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x):
        for number, (spatial, first, second) in enumerate(self.blocks):
            if number == 3:
                x = self.dropout(x)
            x = F.relu(spatial(x))
            x = first(x) if number == 2 else F.relu(first(x))
            x = F.relu(second(x))
            if number < 3:
                x = F.max_pool2d(x, 3, 2)
        return x.mean(dim=(2, 3))


net = NiN()
