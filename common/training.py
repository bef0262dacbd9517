"""One training loop for every backend: the recipe, the schedule, metrics, the NaN guard,
checkpoints and clean stops.

A backend subclasses :class:`Trainer` and implements only what its framework does differently:
one optimisation step, setting the learning rate, seeding dropout, inference and moving the
optimizer state in and out. Everything a user compares across frameworks (what is averaged,
when accuracy is measured, which learning rate step t gets, which dropout seed step t uses) is
therefore defined once, here.

Every random draw of a run is a function of the run seed and a position, never of global
state: the initial weights of ``seed``, the data order and augmentation of ``(seed, epoch)``
(:mod:`common.data`) and the dropout masks of ``(seed, step)`` (:func:`dropout_seed`). So
the same seed is the same run whatever ran before it in the process, and the position in a
run is all a checkpoint needs to continue it exactly.

Core layer.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from .backends import framework_of
from .data import prefetched
from .platform import failpoints

OPTIMIZERS = ("sgd", "momentum", "adam")
SCHEDULES = ("constant", "cosine")
# What torch.nn.utils.clip_grad_norm_ adds to the norm; used by every backend.
CLIP_EPSILON = 1e-6


def _finite_number(value) -> bool:
    """Whether `value` is a real number a float holds: not a bool, NaN, an infinity, or an
    int too large for a float (a JSON file may hold any of them)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond a float's range
        return False


def _whole(value) -> bool:
    """Whether `value` is a whole number >= 0 (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True)
class Recipe:
    """How each step trains: optimizer, learning-rate schedule, clipping and input treatment.

    ``Recipe()`` is plain Adam at a constant rate (the library default); the CLI's presets
    (``PRESETS`` in :mod:`common.tools.config`) are the tuned recipes. Every field means the
    same in every backend: the learning rate of step t is :meth:`learning_rate`, gradients are
    clipped to a global L2 norm as ``torch.nn.utils.clip_grad_norm_`` does, and weight decay is
    L2 added to the gradient (PyTorch's and MXNet's ``weight_decay``/``wd``; not Keras's
    decoupled one).
    """

    optimizer: str = "adam"
    lr: float = 2e-3
    momentum: float = 0.9  # only for "momentum"
    # The same epsilon everywhere (Keras defaults to 1e-7, PyTorch and MXNet to 1e-8), and in
    # the same place: see nin_torch.train.Trainer._match_keras_adam_epsilon.
    adam_epsilon: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 0  # linear warm-up from lr/warmup_steps to lr
    schedule: str = "constant"  # after warm-up: "constant" or "cosine" (to 0 at the last step)
    clip_norm: float = 0.0  # global gradient-norm clipping; 0 is off
    standardize: bool = False  # inputs to zero mean, unit variance (Fashion-MNIST's statistics)
    augment: bool = False  # random 28x28 crops of the 2-pixel-padded image, random flips

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {self.optimizer!r:.40}; choose from {', '.join(OPTIMIZERS)}"
            )
        if not (_finite_number(self.lr) and self.lr > 0):
            raise ValueError(f"learning rate must be a positive number, got {self.lr!r:.40}")
        if not (_finite_number(self.momentum) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r:.40}")
        if not (_finite_number(self.adam_epsilon) and self.adam_epsilon > 0):
            raise ValueError(
                f"adam_epsilon must be a positive number, got {self.adam_epsilon!r:.40}"
            )
        if not (_finite_number(self.weight_decay) and 0 <= self.weight_decay < 1):
            raise ValueError(f"weight decay must be in [0, 1), got {self.weight_decay!r:.40}")
        if not _whole(self.warmup_steps):
            raise ValueError(
                f"warmup steps must be a whole number >= 0, got {self.warmup_steps!r:.40}"
            )
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"unknown schedule {self.schedule!r:.40}; choose from {', '.join(SCHEDULES)}"
            )
        if not (_finite_number(self.clip_norm) and self.clip_norm >= 0):
            raise ValueError(f"clip norm must be >= 0 (0 is off), got {self.clip_norm!r:.40}")

    @classmethod
    def book(cls) -> Recipe:
        """d2l 7.3: plain minibatch SGD, learning rate 0.1."""
        return cls(optimizer="sgd", lr=0.1)

    def learning_rate(self, step: int, total_steps: int | None = None) -> float:
        """The learning rate of optimisation step `step` (0-based) of `total_steps`."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        if total_steps is None:
            raise ValueError("a cosine schedule needs the run's total number of steps")
        decay_steps = max(1, total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * progress))

    def describe(self) -> str:
        """One line: what differs from plain constant-rate training."""
        parts = [f"{self.optimizer} lr {self.lr:g}"]
        if self.optimizer == "momentum":
            parts.append(f"momentum {self.momentum:g}")
        if self.warmup_steps:
            parts.append(f"{self.warmup_steps}-step warm-up")
        if self.schedule != "constant":
            parts.append(f"{self.schedule} decay")
        if self.weight_decay:
            parts.append(f"weight decay {self.weight_decay:g}")
        if self.clip_norm:
            parts.append(f"gradient norm clipped at {self.clip_norm:g}")
        if self.standardize:
            parts.append("standardized inputs")
        if self.augment:
            parts.append("random crops and flips")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Recipe:
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown recipe field(s): {', '.join(unknown)}")
        return cls(**data)


def dropout_seed(seed: int, step: int) -> int:
    """The dropout seed of optimisation step `step` of a run seeded `seed` (a 31-bit int)."""
    return int(np.random.SeedSequence([seed, step, 0xD0]).generate_state(1)[0] & 0x7FFFFFFF)


class TrainingDiverged(RuntimeError):
    """The loss or a weight became NaN or infinite; training stopped at once."""


class TrainingStopped(Exception):
    """A stop was requested (SIGINT/SIGTERM) and honoured after a complete step."""

    def __init__(self, reason: str, state: TrainingState):
        super().__init__(reason)
        self.reason, self.state = reason, state


@dataclass(frozen=True)
class StepMetrics:
    """Training loss and accuracy averaged over the steps since the previous point."""

    step: int  # optimisation steps done
    epoch: float  # fractional epoch, as the book's animator plots
    train_loss: float
    train_accuracy: float

    def to_dict(self) -> dict:
        return {"kind": "step", **asdict(self)}


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    train_loss: float
    train_accuracy: float
    test_accuracy: float | None
    examples_per_second: float
    seconds: float
    classes_predicted: int | None = None  # distinct classes predicted on the test set

    def to_dict(self) -> dict:
        return {"kind": "epoch", **asdict(self)}


@dataclass
class _Sums:
    loss: float = 0.0
    correct: int = 0
    seen: int = 0
    steps: int = 0

    def add(self, loss: float, correct: int, count: int) -> None:
        self.loss += loss * count
        self.correct += correct
        self.seen += count
        self.steps += 1


@dataclass
class TrainingState:
    """Where a run stands: with the weights and optimizer state, enough to continue exactly.

    `epoch` epochs are complete and `batch` batches of the next one are done. The sums of the
    unfinished epoch and log interval are kept so that a resumed run reports the same numbers
    as one that was never stopped (the wall-clock figures aside).
    """

    epoch: int = 0
    batch: int = 0
    step: int = 0
    epoch_sums: _Sums = field(default_factory=_Sums)
    point_sums: _Sums = field(default_factory=_Sums)
    epoch_seconds: float = 0.0
    history: list[EpochMetrics] = field(default_factory=list)
    points: list[StepMetrics] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "batch": self.batch,
            "step": self.step,
            "epoch_sums": asdict(self.epoch_sums),
            "point_sums": asdict(self.point_sums),
            "epoch_seconds": self.epoch_seconds,
            "history": [asdict(item) for item in self.history],
            "points": [asdict(item) for item in self.points],
        }

    @classmethod
    def from_dict(cls, data: dict) -> TrainingState:
        """The inverse of :meth:`to_dict`; ValueError/TypeError for anything else (a damaged
        or hostile file): every number typed and finite, one history entry per complete
        epoch."""
        position = [data["epoch"], data["batch"], data["step"]]
        if not all(_whole(value) for value in position):
            raise ValueError(f"a position is whole numbers >= 0, got {position!r:.80}")
        sums = [_Sums(**data[key]) for key in ("epoch_sums", "point_sums")]
        numbers = [item.loss for item in sums] + [data["epoch_seconds"]]
        counts = [value for item in sums for value in (item.correct, item.seen, item.steps)]
        if not all(map(_finite_number, numbers)) or not all(map(_whole, counts)):
            raise ValueError("the running sums must be finite numbers (the counts whole, >= 0)")
        history = [EpochMetrics(**item) for item in data["history"]]
        points = [StepMetrics(**item) for item in data["points"]]
        for index, metrics in enumerate(history):
            _check_metrics(f"history entry {index + 1}", metrics)
        for index, point in enumerate(points):
            _check_metrics(f"logged point {index + 1}", point)
        if len(history) != position[0]:
            raise ValueError(
                f"the history holds {len(history)} epoch(s), but the position says "
                f"{position[0]!r:.20} are complete (one entry per epoch)"
            )
        epochs = [metrics.epoch for metrics in history]
        if epochs != list(range(1, len(history) + 1)):
            raise ValueError(
                f"the history's epochs are numbered {epochs!r:.60}, expected 1 to {len(history)}"
            )
        return cls(*position, *sums, float(data["epoch_seconds"]), history, points)


# The fields of the stored metrics that are whole numbers (>= 0) rather than finite numbers,
# and those that may be None.
_WHOLE = {EpochMetrics: ("epoch", "classes_predicted"), StepMetrics: ("step",)}
_OPTIONAL = ("test_accuracy", "classes_predicted")


def _check_metrics(where: str, metrics: EpochMetrics | StepMetrics) -> None:
    """That every field of a stored EpochMetrics or StepMetrics is a number of its kind."""
    for name, value in vars(metrics).items():
        if value is None and name in _OPTIONAL:
            continue
        whole = name in _WHOLE[type(metrics)]
        if not (_whole(value) if whole else _finite_number(value)):
            kind = "a whole number >= 0" if whole else "a finite number"
            raise ValueError(f"{where}: {name} must be {kind}, got {value!r:.40}")


_RECORD_KINDS = {"epoch": EpochMetrics, "step": StepMetrics}


def metrics_from_record(record) -> EpochMetrics | StepMetrics:
    """A record of metrics.jsonl (an EpochMetrics' or StepMetrics' `to_dict`) read back,
    every field checked as a checkpoint's history is; ValueError for anything else."""
    if not isinstance(record, dict) or record.get("kind") not in _RECORD_KINDS:
        raise ValueError('a record is a JSON object whose "kind" is "epoch" or "step"')
    kind = _RECORD_KINDS[record["kind"]]
    given = {name: value for name, value in record.items() if name != "kind"}
    try:
        metrics = kind(**given)
    except TypeError:  # a field missing or unknown
        expected = ", ".join(item.name for item in fields(kind))
        raise ValueError(
            f"{record['kind']} records have the fields {expected}; got {', '.join(given)!s:.120}"
        ) from None
    _check_metrics(f"the {record['kind']} record", metrics)
    return metrics


def accuracy(predict: Callable[[np.ndarray], np.ndarray], batches: Iterable) -> float:
    """Fraction of correctly classified examples; `predict` maps images to logits."""
    predicted, labels = predict_classes(predict, batches)
    return float((predicted == labels).mean())


def predict_classes(
    predict: Callable[[np.ndarray], np.ndarray], batches: Iterable
) -> tuple[np.ndarray, np.ndarray]:
    """(predicted classes, true labels) over `batches`; `predict` maps images to logits."""
    predicted, labels = [], []
    for images, batch_labels in batches:
        predicted.append(predict(images).argmax(axis=1))
        labels.append(batch_labels)
    return np.concatenate(predicted), np.concatenate(labels)


@dataclass(frozen=True)
class OptimizerState:
    """Optimizer state in canonical names and layouts (those of :mod:`common.weights`).

    `slots` maps a slot name to arrays keyed like the weights: ``"m"`` and ``"v"`` for Adam
    (first and second moments, as all three frameworks define them), ``"velocity"`` for
    momentum in Keras's and MXNet's convention (the last update, in weight units:
    ``v = mu v - lr g; w += v``). `step` is the number of updates taken (Adam's t).
    """

    optimizer: str
    step: int
    slots: dict[str, dict[str, np.ndarray]]


class Trainer:
    """Trains one backend's network; subclasses implement the framework hooks."""

    def __init__(self, net, recipe: Recipe | None = None, *, seed: int = 0, fast: bool = True):
        """`fast=False` trains on the book's code path instead of the framework's fastest
        (each backend's ``BackendInfo.book_path``): the baseline of ``nin bench --baseline``."""
        self.net = net
        self.backend = framework_of(net)  # the registry name, for messages
        self.recipe = recipe or Recipe()
        self.seed = seed
        self.fast = fast
        self.step_count = 0  # optimisation steps taken: the schedule's position
        self.total_steps: int | None = None
        self.state: TrainingState | None = None  # of the last fit
        self.test_predictions: np.ndarray | None = None  # after the last scored epoch
        self.data_seconds = 0.0

    # -- framework hooks -------------------------------------------------------------------
    def _train_step(self, images: np.ndarray, labels: np.ndarray, total: int) -> tuple[float, int]:
        """One optimisation step at the current learning rate on `images`, part of a batch
        of `total` examples: (their mean loss x len(images) / total, number correct).

        The one step of a backend, alone and on a worker: in one process the part is the
        whole batch (`total` is its size); on a worker of a data-parallel run the gradients
        are summed over the workers (:class:`common.distributed.DataParallel`) before the
        update. Clipping (``recipe.clip_norm``) and weight decay happen here.
        """
        raise NotImplementedError

    def _step(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
        """One optimisation step on the whole batch: (mean loss, number correct)."""
        return self._train_step(images, labels, len(labels))

    def _set_learning_rate(self, lr: float) -> None:
        raise NotImplementedError

    def _seed_dropout(self, seed: int) -> None:
        """Make the next step's dropout masks a function of `seed` alone."""
        raise NotImplementedError

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Logits in inference mode (dropout off)."""
        raise NotImplementedError

    def weights_finite(self) -> bool:
        """Whether every parameter is finite. Checked after every step because a finite loss
        does not prove it: MXNet's ReLU maps NaN to 0, so a net with NaN weights still reports
        loss ln(10)."""
        raise NotImplementedError

    def optimizer_state(self) -> OptimizerState:
        raise NotImplementedError

    def load_optimizer_state(self, state: OptimizerState) -> None:
        raise NotImplementedError

    @property
    def device(self) -> str:
        return "cpu"

    # -- shared ----------------------------------------------------------------------------
    def train_step(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
        """One step with this step's learning rate and dropout seed: (mean loss, correct)."""
        self._set_learning_rate(self.recipe.learning_rate(self.step_count, self.total_steps))
        self._seed_dropout(dropout_seed(self.seed, self.step_count))
        result = self._step(images, labels)
        self.step_count += 1
        return result

    def evaluate(self, batches: Iterable) -> float:
        return accuracy(self.predict, batches)

    def fit(
        self,
        train_data,
        test_data=None,
        *,
        epochs: int,
        progress: bool | None = None,
        state: TrainingState | None = None,
        log_every: int | None = None,
        checkpoint: Callable[[TrainingState], None] | None = None,
        checkpoint_every: int | None = None,
        stop_requested: Callable[[], str | None] | None = None,
        on_point: Callable[[StepMetrics], None] | None = None,
        on_epoch: Callable[[EpochMetrics], None] | None = None,
    ) -> list[EpochMetrics]:
        """Train until `epochs` passes over `train_data` (a :class:`common.data.DataLoader`).

        `state` continues a run (the weights and optimizer state must already be loaded).
        Every `log_every` steps the interval's mean loss and accuracy become a point; after
        each epoch `test_data` is scored in inference mode. `checkpoint(state)` is called after
        every epoch, every `checkpoint_every` steps and before a requested stop
        (`stop_requested()` returns a reason), which raises :class:`TrainingStopped`.
        Raises :class:`TrainingDiverged` on a NaN/inf loss or weight, before any checkpoint of
        that state. `progress=None` shows a tqdm bar only on a terminal.
        """
        state = self._begin(train_data, epochs, state)
        steps_per_epoch = len(train_data)
        log_every = log_every or default_log_every(steps_per_epoch)
        stop_requested = stop_requested or (lambda: None)
        for epoch in range(state.epoch, epochs):
            start = time.perf_counter() - state.epoch_seconds
            with self._progress(train_data, state, epoch, epochs, progress) as bar:
                for images, labels in bar:
                    self._learn(images, labels, state, epoch)
                    if state.step % log_every == 0 or state.batch == steps_per_epoch:
                        point = self._record_point(state, epoch + state.batch / steps_per_epoch)
                        if on_point:
                            on_point(point)
                    sums = state.epoch_sums
                    bar.set_postfix(
                        loss=f"{sums.loss / sums.seen:.3f}", acc=f"{sums.correct / sums.seen:.4f}"
                    )
                    if state.batch < steps_per_epoch:  # (the epoch's end is handled below)
                        state.epoch_seconds = time.perf_counter() - start
                        self._between_steps(state, stop_requested(), checkpoint, checkpoint_every)
            metrics = self._end_epoch(state, test_data, time.perf_counter() - start)
            if on_epoch:
                on_epoch(metrics)
            if checkpoint:
                checkpoint(state)
            reason = stop_requested()
            if reason and epoch + 1 < epochs:
                raise TrainingStopped(reason, state)
        return state.history

    def _begin(self, train_data, epochs: int, state: TrainingState | None) -> TrainingState:
        """The state a fit starts from (a copy: the caller's, a loaded checkpoint's say, may
        be continued again), checked against the data, and the schedule's length."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be a whole number >= 1, got {epochs!r}")
        state = self.state = copy.deepcopy(state) if state else TrainingState()
        steps_per_epoch = len(train_data)
        if state.step != state.epoch * steps_per_epoch + state.batch:
            raise ValueError(
                "the training state does not fit this data: "
                f"step {state.step} is not epoch {state.epoch}, batch {state.batch} "
                f"of {steps_per_epoch} batches"
            )
        self.total_steps, self.step_count = epochs * steps_per_epoch, state.step
        self.test_predictions, self.data_seconds = None, 0.0
        return state

    @contextmanager
    def _progress(
        self, train_data, state: TrainingState, epoch: int, epochs: int, progress: bool | None
    ):
        """The epoch's remaining batches, prefetched, timed and behind a tqdm bar."""
        from tqdm import tqdm

        batches = prefetched(train_data.epoch(epoch, start_batch=state.batch))
        with (
            closing(batches),
            tqdm(
                self._timed(batches),
                total=len(train_data),
                initial=state.batch,
                leave=False,
                desc=f"{self.backend} epoch {epoch + 1}/{epochs}",
                disable=None if progress is None else not progress,
            ) as bar,
        ):
            yield bar

    @staticmethod
    def _between_steps(
        state: TrainingState, reason: str | None, checkpoint, checkpoint_every: int | None
    ) -> None:
        """Within an epoch: a checkpoint when one is due or a stop was asked for (`reason`),
        then the stop."""
        if checkpoint and (reason or (checkpoint_every and state.step % checkpoint_every == 0)):
            checkpoint(state)
        if reason:
            raise TrainingStopped(reason, state)

    def _learn(
        self, images: np.ndarray, labels: np.ndarray, state: TrainingState, epoch: int
    ) -> None:
        """One step, the NaN guard, and the running sums."""
        loss, correct = self.train_step(images, labels)
        failpoints.reached("step", state.step + 1)
        problem = (
            f"loss became {loss}"
            if not math.isfinite(loss)
            else None
            if self.weights_finite()
            else "weights became NaN or inf"
        )
        if problem:
            raise TrainingDiverged(
                f"{self.backend}: {problem} at epoch {epoch + 1}, step {state.batch + 1} "
                f"({self.recipe.optimizer}, lr {self.recipe.lr:g}); training stopped. "
                f"Try a lower learning rate, e.g. --lr {self.recipe.lr / 10:g}"
            )
        state.batch += 1
        state.step += 1
        for sums in (state.epoch_sums, state.point_sums):
            sums.add(loss, correct, len(labels))

    @staticmethod
    def _record_point(state: TrainingState, epoch: float) -> StepMetrics:
        sums = state.point_sums
        point = StepMetrics(state.step, epoch, sums.loss / sums.seen, sums.correct / sums.seen)
        state.points.append(point)
        state.point_sums = _Sums()
        return point

    def _end_epoch(self, state: TrainingState, test_data, seconds: float) -> EpochMetrics:
        """Score the test set, record the epoch's metrics and move the position on."""
        test_accuracy = classes = None
        if test_data is not None:
            with closing(prefetched(test_data.epoch())) as batches:
                predicted, labels = predict_classes(self.predict, batches)
            self.test_predictions = predicted
            test_accuracy = float((predicted == labels).mean())
            classes = int(len(np.unique(predicted)))
        sums = state.epoch_sums
        metrics = EpochMetrics(
            state.epoch + 1,
            sums.loss / sums.seen,
            sums.correct / sums.seen,
            test_accuracy,
            sums.seen / seconds,
            seconds,
            classes,
        )
        state.history.append(metrics)
        state.epoch, state.batch = state.epoch + 1, 0
        state.epoch_sums, state.epoch_seconds = _Sums(), 0.0
        return metrics

    def _timed(self, batches):
        """`batches`, adding the time each takes to arrive to ``self.data_seconds``."""
        batches = iter(batches)
        while True:
            start = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                return
            self.data_seconds += time.perf_counter() - start
            yield batch

    @classmethod
    def train(
        cls,
        net,
        train_data,
        test_data=None,
        *,
        epochs: int,
        lr: float = 2e-3,
        optimizer: str = "adam",
        momentum: float = 0.9,
        seed: int = 0,
        recipe: Recipe | None = None,
        progress: bool | None = None,
        on_epoch: Callable[[EpochMetrics], None] | None = None,
    ) -> list[EpochMetrics]:
        """Train `net` in place (the book's ``train_ch6``); returns per-epoch metrics.

        The batch size and input size are the data loaders' (``common.data.load_data``);
        `recipe` replaces `lr`, `optimizer` and `momentum` when given.
        """
        recipe = recipe or Recipe(optimizer=optimizer, lr=lr, momentum=momentum)
        trainer = cls(net, recipe, seed=seed)
        return trainer.fit(
            train_data, test_data, epochs=epochs, progress=progress, on_epoch=on_epoch
        )


def default_log_every(steps_per_epoch: int) -> int:
    """About ten points per epoch."""
    return max(1, steps_per_epoch // 10)


def with_overrides(recipe: Recipe, **changes) -> Recipe:
    """`recipe` with the given fields replaced (None means keep)."""
    return replace(recipe, **{key: value for key, value in changes.items() if value is not None})
