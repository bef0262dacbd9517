"""Data-parallel training on several processes: the framework-free half.

Each framework trains on its own engine, in its backend's ``distributed`` module: PyTorch's
DistributedDataParallel (gloo all-reduce), TensorFlow's MultiWorkerMirroredStrategy
(collective all-reduce) and MXNet's kvstore (a parameter server). What they share is here:

* what a worker trains on: every worker reads the same seeded global batch and trains on its
  slice (:func:`shard`), so N workers at batch b take the steps one process takes at batch
  N x b; :class:`DataParallel` turns a backend Trainer into such a worker, reporting the
  global batch's loss and accuracy and stopping on the same step as the others;
* how a worker joins its engine and builds its model (:class:`Group`).

Core layer. How a worker's run goes and who writes the run folder is
:func:`common.tools.workers.train_worker`; how the processes are started, and how each learns
who it is, :mod:`common.platform.launcher`.

docs/distributed.md has the commands that run the same workers across machines.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable

import numpy as np

# -- what each worker trains on ------------------------------------------------------------------


def shard(count: int, rank: int, workers: int) -> slice:
    """Worker `rank`'s part of a global batch of `count` examples: contiguous slices whose
    sizes differ by at most one (equal when `workers` divides `count`)."""
    return slice(rank * count // workers, (rank + 1) * count // workers)


def check_shardable(examples: int, batch_size: int, workers: int) -> None:
    """That every batch of a run gives each of `workers` workers at least one example.

    The global batch must split into equal per-worker batches; a partial last batch is split
    as evenly as :func:`shard` can, and each worker's loss is weighted by its share, so the
    step is still the one-process step. A last batch smaller than `workers` is refused: some
    worker would get no example, which not every framework can run.
    """
    if batch_size % workers:
        raise ValueError(
            f"a batch of {batch_size} does not split into {workers} equal per-worker batches"
        )
    last = examples % batch_size
    if 0 < last < workers:
        raise ValueError(
            f"the last batch holds {last} example(s), fewer than the {workers} "
            f"workers; choose a --train-limit that leaves a last batch of 0 or at "
            f"least {workers}"
        )


def worker_dropout_seed(step_seed: int, rank: int) -> int:
    """Worker `rank`'s dropout seed for a step seeded `step_seed`: its own, so that no two
    shards share masks (worker 0 keeps the step's seed, so one worker is one process)."""
    if rank == 0:
        return step_seed
    return int(np.random.SeedSequence([step_seed, rank, 0xD1]).generate_state(1)[0] & 0x7FFFFFFF)


class Group:
    """This process's place among the workers of a run, on its framework's engine.

    A backend's ``distributed`` module defines a subclass, connected to the others when it is
    made, beside its worker ``Trainer`` (a :class:`DataParallel` one).
    """

    def __init__(self, rank: int, size: int):
        self.rank, self.size = rank, size

    def scope(self) -> contextlib.AbstractContextManager:
        """Where the engine wants the model and its optimizer made (TensorFlow's strategy)."""
        return contextlib.nullcontext()

    def build(self, spec, recipe, seed: int):
        """(net, trainer) of this worker: the backend's model and worker Trainer."""
        engine = sys.modules[type(self).__module__]  # the backend's distributed module
        with self.scope():
            net = sys.modules[engine.__package__].build_nin(spec, seed=seed)
            return net, engine.Trainer(net, recipe, seed=seed, group=self)

    def sum_over_workers(self, values: list[float]) -> np.ndarray:
        """The element-wise sum of `values` over all workers (a collective: all must call)."""
        raise NotImplementedError

    def leave(self) -> None:
        """Wait until every worker is here, then disconnect."""
        raise NotImplementedError


class DataParallel:
    """Makes a backend Trainer one worker of a data-parallel run (list it first in the bases).

    The shared loop (:meth:`common.training.Trainer.fit`) hands every worker the same global
    batch; the worker trains on its shard and reports the global batch's mean loss and correct
    count. A stop request (Ctrl-C) is summed over the workers with those metrics, so every
    worker stops after the same step. The backend's one step
    (:meth:`common.training.Trainer._train_step`) runs on the shard; its worker class sums
    the gradients over the workers inside it.
    """

    def __init__(self, *args, group: Group, **kwargs):
        self.group = group
        self._local_stop: Callable[[], str | None] | None = None
        self._stop_agreed = False
        super().__init__(*args, **kwargs)

    def _step(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
        part = shard(len(labels), self.group.rank, self.group.size)
        loss, correct = self._train_step(images[part], labels[part], len(labels))
        stop = 1.0 if self._local_stop and self._local_stop() else 0.0
        loss, correct, stops = self.group.sum_over_workers([loss, correct, stop])
        self._stop_agreed = stops > 0
        return float(loss), int(round(correct))

    def _seed_dropout(self, seed: int) -> None:
        super()._seed_dropout(worker_dropout_seed(seed, self.group.rank))

    def fit(self, *args, stop_requested: Callable[[], str | None] | None = None, **kwargs):
        self._local_stop, self._stop_agreed = stop_requested, False
        return super().fit(*args, stop_requested=self._agreed_stop, **kwargs)

    def _agreed_stop(self) -> str | None:
        # Only what was summed in the last step counts: a request that arrived since then is
        # agreed (and honoured) after the next step, on every worker at once.
        if not self._stop_agreed:
            return None
        return (self._local_stop and self._local_stop()) or "a stop on another worker"
