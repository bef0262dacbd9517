"""What a backend's probe reports about a model, in framework-free terms.

A :class:`ModelTrace` is one forward pass of a reader's model as a list of :class:`Step`\\ s, in
the order they ran: every layer the probe can see, with its configuration and output shape
(NCHW whatever the framework's layout). Convolutions and dense layers are *parameterised
steps*, numbered in the order they run: the probe sets, reads and differentiates their weights
by that number, in the canonical layouts of :mod:`common.weights`.

How much a probe sees depends on the framework: PyTorch's records every functional call too
(``F.relu``, ``torch.flatten``), Gluon's and Keras's only layers (``tf.nn.relu`` inside a
subclassed ``call`` is invisible). So what is *missing* from a trace is never a verdict by
itself: the shapes and the numbers decide, and the steps name the cause.

Core layer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# The kinds of step a probe reports.
CONV, DENSE = "conv", "dense"
RELU, ACTIVATION, SOFTMAX = "relu", "activation", "softmax"
MAX_POOL, AVG_POOL = "max_pool", "avg_pool"
GLOBAL_AVG_POOL, GLOBAL_MAX_POOL = "global_avg_pool", "global_max_pool"
DROPOUT, FLATTEN, RESHAPE, PADDING = "dropout", "flatten", "reshape", "padding"
BATCH_NORM, OTHER = "batch_norm", "other"
PARAMETERISED = (CONV, DENSE)


@dataclass
class Step:
    """One layer (or functional call) of a reader's model, as it ran.

    `config` by kind: conv: ``out_channels``, ``kernel``, ``stride``, ``padding`` (as
    ((top, bottom), (left, right)) or "same"), ``dilation``, ``groups``, ``bias``; dense:
    ``units``, ``bias``; pools: ``kernel``, ``stride``; dropout: ``rate``; activation:
    ``name``.
    """

    path: str  # where it sits in the reader's model: "net.0.0", "conv1"
    kind: str
    detail: str  # the framework's name for it: "Conv2d", "F.relu", "Conv2D"
    output_shape: tuple[int, ...]
    config: dict = field(default_factory=dict)
    param: int | None = None  # the parameterised step's number
    input_shape: tuple[int, ...] | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Step:
        data = dict(data)
        for key in ("output_shape", "input_shape"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)


@dataclass
class ModelTrace:
    """A forward pass of one input through a reader's model."""

    framework: str  # the registry's backend name
    model_type: str  # e.g. "torch.nn.Sequential"
    steps: list[Step]
    output_shape: tuple[int, ...] | None  # None when the pass failed
    # canonical (weight shape, bias shape or None) of each parameterised step, by number
    param_shapes: list[tuple[tuple[int, ...], tuple[int, ...] | None]]
    total_params: int
    trainable_params: int
    error: str | None = None  # why the pass failed
    error_at: str | None = None  # in which layer (a path as the steps have them)
    frozen: list[str] = field(default_factory=list)  # parameterised steps that do not train

    @property
    def param_steps(self) -> list[Step]:
        return [step for step in self.steps if step.param is not None]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["steps"] = [step.to_dict() for step in self.steps]
        return data
