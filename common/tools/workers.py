"""One worker of a data-parallel run: joining its engine and training its part, rank 0
writing the run folder.

Tools layer; the shared worker classes are :mod:`common.distributed`, the launch
:mod:`common.platform.launcher`.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from ..backends import load_backend, load_backend_module
from ..distributed import check_shardable
from ..platform.launcher import watch_launcher


def load_engine(backend_name: str) -> ModuleType:
    """The backend's ``distributed`` module (nin_torch.distributed, ...)."""
    return load_backend_module(backend_name, "distributed")


def train_worker(backend_name: str, config, out: Path, *, workers: int, resume=None, **options):
    """Train `config` as one of `workers` workers of a data-parallel run; rank 0 writes the
    run folder, as :func:`common.tools.runs.train_run` (which `options` go to) does in one process.

    `config.batch_size` is the global batch. Returns rank 0's :class:`common.tools.runs.RunResult`,
    None on the other workers.
    """
    from .runs import train_run

    check_shardable(config.train_images, config.batch_size, workers)
    watch_launcher()
    group = load_engine(backend_name).Group()  # joins: waits for the others
    if group.size != workers:
        raise ValueError(
            f"the {backend_name} engine counts {group.size} workers, its launch variables {workers}"
        )
    if group.rank == 0:
        result = train_run(backend_name, config, out, resume=resume, group=group, **options)
    else:
        result = None
        net, trainer = group.build(config.spec(), config.recipe, config.seed)
        if resume is not None:
            load_backend(backend_name).set_weights(net, resume.weights)
            trainer.load_optimizer_state(resume.optimizer)
        train_data, _ = config.loaders()
        # No test set: scoring is rank 0's, and the weights are the same on every worker.
        trainer.fit(
            train_data,
            None,
            epochs=config.epochs,
            progress=False,
            state=resume.state if resume else None,
            stop_requested=options.get("stop_requested"),
        )
    # Not on an error: a worker that failed exits at once, the others are stopped for it.
    group.leave()
    return result
