"""The two *probe* rows of docs/training.md's ablation: ideas for the book's head that are not
recipe options, tried in plain PyTorch at the quick budget.

    python docs/probes/head_probe.py head-lr-0.1 0,1,2,3,4
    python docs/probes/head_probe.py head-bias-0.1 0,1,2,3,4

Each line printed is one run: test accuracy on all 10,000 images and the number of classes
never predicted. The rest is the quick recipe: Adam lr 0.002, 200-step linear warm-up, cosine
decay, standardized inputs, 2 epochs over the first 30,000 images at 67 px, the book's head.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import torch
from torch import nn

import nin_torch
from common.data import load_data

PROBES = {
    # The Caffe-derived CIFAR NiN trains its last convolution at a tenth of the rate.
    "head-lr-0.1": {"head_lr": 0.1},
    # Class maps that start above 0 everywhere: the last convolution's biases at 0.1.
    "head-bias-0.1": {"head_bias": 0.1},
}
LR, WARMUP, EPOCHS = 2e-3, 200, 2
# common.data's TRAIN_MEAN and TRAIN_STD rounded, as the runs in docs/training.md had them.
MEAN, STD = 0.2860, 0.3530


def run(seed: int, head_lr: float = 1.0, head_bias: float = 0.0) -> tuple[float, int]:
    train, test = load_data(128, 67, seed=seed, train_limit=30_000)
    net = nin_torch.build_nin(seed=seed)  # the book's head
    head = net.nin_block_4
    if head_bias:
        with torch.no_grad():
            head[-2].bias.fill_(head_bias)  # head[-1] is the ReLU on the class maps
    head_ids = {id(parameter) for parameter in head.parameters()}
    body = [parameter for parameter in net.parameters() if id(parameter) not in head_ids]
    optimizer = torch.optim.Adam(
        [{"params": body, "lr": LR}, {"params": list(head.parameters()), "lr": LR * head_lr}]
    )
    peaks = [group["lr"] for group in optimizer.param_groups]
    torch.manual_seed(seed)
    total, step, loss_function = EPOCHS * len(train), 0, nn.CrossEntropyLoss()

    def standardized(images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((images - MEAN) / STD)

    for epoch in range(EPOCHS):
        net.train()
        for images, labels in train.epoch(epoch):
            factor = (
                (step + 1) / WARMUP
                if step < WARMUP
                else 0.5 * (1 + math.cos(math.pi * (step - WARMUP) / (total - WARMUP)))
            )
            for group, peak in zip(optimizer.param_groups, peaks):
                group["lr"] = peak * factor
            loss = loss_function(net(standardized(images)), torch.from_numpy(labels))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
    net.eval()
    with torch.no_grad():
        predicted = np.concatenate(
            [net(standardized(images)).argmax(1).numpy() for images, _ in test.epoch()]
        )
    return float((predicted == test.labels).mean()), 10 - len(np.unique(predicted))


if __name__ == "__main__":
    torch.set_num_threads(2)
    name, seeds = sys.argv[1], [int(seed) for seed in sys.argv[2].split(",")]
    for seed in seeds:
        accuracy, never = run(seed, **PROBES[name])
        print(
            json.dumps(
                {
                    "probe": name,
                    "seed": seed,
                    "test_accuracy": accuracy,
                    "classes_never_predicted": never,
                }
            ),
            flush=True,
        )
