"""Data-parallel NiN in PyTorch: DistributedDataParallel, gloo all-reduce.

Workers are found through torchrun's variables (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE);
``nin train --workers N`` sets them for this machine, ``torchrun`` across machines.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from common import distributed, training
from common.platform import launcher

from .model import build_nin
from .train import Trainer as LocalTrainer


class Group(distributed.Group):
    engine = launcher.ENGINES["torch"]

    def __init__(self):
        dist.init_process_group("gloo")  # env://: waits until all WORLD_SIZE workers are in
        super().__init__(dist.get_rank(), dist.get_world_size())

    def build(self, spec, recipe, seed: int):
        net = build_nin(spec, seed=seed)
        return net, Trainer(net, recipe, seed=seed, group=self)

    def sum_over_workers(self, values: list[float]) -> np.ndarray:
        total = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(total)
        return total.numpy()

    def leave(self) -> None:
        dist.barrier()
        dist.destroy_process_group()


def join() -> Group:
    return Group()


class Trainer(distributed.DataParallel, LocalTrainer):
    """nin_torch's Trainer on one worker: DDP all-reduces the gradients during backward."""

    def __init__(self, net: nn.Module, recipe: training.Recipe | None = None, *, seed: int = 0,
                 group: Group):
        super().__init__(net, recipe, seed=seed, group=group)
        # DDP broadcasts rank 0's weights now and averages gradients in buckets as backward
        # produces them; `net` stays the plain module for weights, inference and export.
        self.replica = DistributedDataParallel(net)

    def _shard_step(self, images: np.ndarray, labels: np.ndarray,
                    total: int) -> tuple[float, int]:
        self.net.train()
        images = torch.from_numpy(images).to(self._device)
        labels = torch.from_numpy(labels).to(self._device)
        logits = self.replica(images)
        share = nn.functional.cross_entropy(logits, labels, reduction="sum") / total
        self.optimizer.zero_grad()
        # DDP averages over the workers, so each scales its share by their number: the
        # average is then the global batch's mean-loss gradient, whatever the shard sizes.
        (share * self.group.size).backward()
        if self.recipe.clip_norm:  # on the averaged gradient: the global batch's norm
            nn.utils.clip_grad_norm_(self._parameters, self.recipe.clip_norm)
        if self.recipe.optimizer == "adam":
            self._match_keras_adam_epsilon(self.step_count + 1)
        self.optimizer.step()
        return share.item(), int((logits.argmax(dim=1) == labels).sum())
