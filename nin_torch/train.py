"""Training NiN in PyTorch: the usual zero_grad / backward / step loop.

Backend layer.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from common import training
from common.platform.memory import reuse_freed_memory

from .model import as_tensor, predict_logits, use_intra_op_threads
from .weights import from_canonical, parameter_names, to_canonical


class Trainer(training.Trainer):
    def __init__(
        self,
        net: nn.Module,
        recipe: training.Recipe | None = None,
        *,
        seed: int = 0,
        fast: bool = True,
    ):
        super().__init__(net, recipe, seed=seed, fast=fast)
        self._device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        # The book's code path is NCHW with out-of-place ReLUs in a default process; the fast
        # path is build_nin's channels-last net with in-place ReLUs, and malloc keeping freed
        # memory for the next step.
        net.to(self._device, memory_format=torch.channels_last if fast else torch.contiguous_format)
        for module in net.modules():
            if isinstance(module, nn.ReLU):
                module.inplace = fast
        if fast:
            reuse_freed_memory()
        self.loss = nn.CrossEntropyLoss()  # mean over the batch
        # What the step runs and how many processes average its gradients: on a worker of a
        # data-parallel run, DDP's wrapper and the workers' count (nin_torch.distributed).
        self.replica: nn.Module = net
        self.workers = 1
        recipe = self.recipe
        self._parameters = list(net.parameters())
        if recipe.optimizer == "adam":
            self.optimizer = torch.optim.Adam(
                self._parameters,
                lr=recipe.lr,
                eps=recipe.adam_epsilon,
                weight_decay=recipe.weight_decay,
            )
        else:
            momentum = recipe.momentum if recipe.optimizer == "momentum" else 0.0
            self.optimizer = torch.optim.SGD(
                self._parameters, lr=recipe.lr, momentum=momentum, weight_decay=recipe.weight_decay
            )
        self._lr = recipe.lr  # the rate the momentum buffers are scaled for

    @property
    def device(self) -> str:
        return str(self._device)

    def _seed_dropout(self, seed: int) -> None:
        # nn.Dropout draws from the default generator; nothing else in a step does.
        torch.manual_seed(seed)

    def _set_learning_rate(self, lr: float) -> None:
        if self.recipe.optimizer == "momentum" and lr != self._lr:
            self._rescale_momentum(self._lr / lr)
        self._lr = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _rescale_momentum(self, factor: float) -> None:
        """Keep PyTorch's momentum the update Keras and MXNet make when the lr changes.

        PyTorch keeps b = mu b + g and steps w -= lr b; Keras and MXNet keep v = mu v - lr g
        and step w += v. They agree while v = -lr b, which a new lr breaks unless b is
        rescaled by lr_old / lr_new (with a schedule they would otherwise differ).
        """
        with torch.no_grad():
            for parameter in self._parameters:
                buffer = self.optimizer.state.get(parameter, {}).get("momentum_buffer")
                if buffer is not None:
                    buffer.mul_(factor)

    def _train_step(self, images: np.ndarray, labels: np.ndarray, total: int) -> tuple[float, int]:
        use_intra_op_threads()
        self.net.train()
        images = as_tensor(self.net, images)
        labels = torch.from_numpy(labels).to(self._device)
        logits = self.replica(images)
        share = self.loss(logits, labels) * (len(labels) / total)  # x 1.0 in one process
        self.optimizer.zero_grad()
        # DDP averages the gradients over the workers, so each scales its share by their
        # number: the average is then the global batch's mean-loss gradient, whatever the
        # shard sizes (one process: x 1).
        (share * self.workers).backward()
        if self.recipe.clip_norm:  # on the summed gradient: the global batch's norm
            nn.utils.clip_grad_norm_(self._parameters, self.recipe.clip_norm)
        if self.recipe.optimizer == "adam":
            self._match_keras_adam_epsilon(self.step_count + 1)
        self.optimizer.step()
        return share.item(), int((logits.argmax(dim=1) == labels).sum())

    def _match_keras_adam_epsilon(self, t: int) -> None:
        """Make torch's Adam take the step Keras's and MXNet's Adam take at update t.

        Keras and MXNet fold both bias corrections into the step size and add epsilon to the
        uncorrected sqrt(v): lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps). PyTorch adds it
        to the corrected one: lr / (1 - b1^t) m / (sqrt(v) / sqrt(1 - b2^t) + eps). They are
        equal when PyTorch's epsilon is eps / sqrt(1 - b2^t) at step t; without this, the
        updates differ by 10-30% where sqrt(v) is near eps (tests/test_parity.py).
        """
        for group in self.optimizer.param_groups:
            group["eps"] = self.recipe.adam_epsilon / math.sqrt(1.0 - group["betas"][1] ** t)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return predict_logits(self.net, images)

    def weights_finite(self) -> bool:
        with torch.no_grad():
            return bool(torch.isfinite(torch.stack([p.sum() for p in self._parameters])).all())

    # -- optimizer state in canonical form --------------------------------------------------
    def optimizer_state(self) -> training.OptimizerState:
        names = parameter_names(self.net)
        slots: dict[str, dict[str, np.ndarray]] = {}
        for name, parameter in zip(names, self._parameters):
            state = self.optimizer.state.get(parameter, {})
            if self.recipe.optimizer == "adam" and state:
                slots.setdefault("m", {})[name] = state["exp_avg"].cpu().numpy().copy()
                slots.setdefault("v", {})[name] = state["exp_avg_sq"].cpu().numpy().copy()
            elif self.recipe.optimizer == "momentum" and state.get("momentum_buffer") is not None:
                velocity = -self._lr * state["momentum_buffer"].cpu().numpy()
                slots.setdefault("velocity", {})[name] = velocity.astype(np.float32)
        return training.OptimizerState(
            self.recipe.optimizer,
            self.step_count,
            {slot: to_canonical(self.net, arrays) for slot, arrays in slots.items()},
        )

    def load_optimizer_state(self, state: training.OptimizerState) -> None:
        self.step_count = state.step
        self.optimizer.state.clear()
        if state.step == 0 or self.recipe.optimizer == "sgd":
            return
        # Stored for the recipe's base rate; the next _set_learning_rate rescales them.
        self._lr = self.recipe.lr
        slots = {slot: from_canonical(self.net, arrays) for slot, arrays in state.slots.items()}
        for name, parameter in zip(parameter_names(self.net), self._parameters):

            def tensor(slot, name=name, device=parameter.device):
                return torch.from_numpy(np.array(slots[slot][name], np.float32)).to(device)

            if self.recipe.optimizer == "adam":
                self.optimizer.state[parameter] = {
                    "step": torch.tensor(float(state.step)),
                    "exp_avg": tensor("m"),
                    "exp_avg_sq": tensor("v"),
                }
            else:
                self.optimizer.state[parameter] = {
                    "momentum_buffer": tensor("velocity") / -self._lr
                }
