"""Data-parallel NiN in PyTorch: DistributedDataParallel, gloo all-reduce.

Workers are found through torchrun's variables (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE);
``nin train --workers N`` sets them for this machine, ``torchrun`` across machines.

Backend layer.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from common import distributed, training

from .train import Trainer as LocalTrainer


class Group(distributed.Group):
    def __init__(self):
        dist.init_process_group("gloo")  # env://: waits until all WORLD_SIZE workers are in
        super().__init__(dist.get_rank(), dist.get_world_size())

    def sum_over_workers(self, values: list[float]) -> np.ndarray:
        total = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(total)
        return total.numpy()

    def leave(self) -> None:
        dist.barrier()
        dist.destroy_process_group()


class Trainer(distributed.DataParallel, LocalTrainer):
    """nin_torch's Trainer on one worker: its step runs the DDP wrapper, which all-reduces
    the gradients during backward."""

    def __init__(
        self, net: nn.Module, recipe: training.Recipe | None = None, *, seed: int = 0, group: Group
    ):
        super().__init__(net, recipe, seed=seed, group=group)
        # DDP broadcasts rank 0's weights now and averages gradients in buckets as backward
        # produces them; `net` stays the plain module for weights, inference and export.
        self.replica = DistributedDataParallel(net)
        self.workers = group.size
