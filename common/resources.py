"""The chapter's resource calculator: parameters, FLOPs and memory from a Spec, with no framework.

Everything here is arithmetic on :mod:`common.spec` and :mod:`common.shapes` (numpy and the
standard library only), so the numbers in the report do not depend on which backend ran.

Counting conventions
--------------------
* **MACs** (multiply-accumulates): a convolution does ``output elements x in_channels x k x k``
  (summed over the convolutions of a block), a dense layer ``batch x in x out``.
* **FLOPs** are ``2 x MACs`` of the convolutions and dense layers (one multiply and one add),
  exactly what ``torch.utils.flop_counter.FlopCounterMode`` counts for ``convolution`` and
  ``addmm``/``mm``. Like it, they *exclude* bias additions, ReLU, max/average pooling,
  dropout and the loss (together well under 1% for NiN and AlexNet).
* **Activations** of a layer are its output elements for the whole batch.

Training memory (bytes, float32)
--------------------------------
``parameters + gradients + optimizer state + tensors saved for backward``, where the optimizer
state is 0 (``"sgd"``), 1 (``"momentum"``: one buffer) or 2 (``"adam"``: two moments) copies
of the parameters, and the saved tensors are what PyTorch autograd actually keeps for this
network (unique storages, so a tensor saved by two ops counts once):

* the input batch (saved by the first convolution);
* a convolution saves its input and weight (the weight is a parameter, counted there);
* ReLU (not in place) saves its output, which is also the input the next op saves;
  the convolution's pre-activation output is therefore *not* kept;
* max-pooling saves its input and its argmax indices (int64, 8 bytes per output element);
* dropout (training, rate > 0) saves its mask: on CPU ATen multiplies by a float32 noise
  tensor (4 bytes/element, ``device="cpu"``), on CUDA ``native_dropout`` keeps a bool mask
  (1 byte/element, ``device="cuda"``); its input is not saved;
* global average pooling (a ``mean`` over H and W) and flatten (a view) save nothing;
* a dense layer saves its input (and its weight, a parameter);
* the cross-entropy loss saves its log-softmax output (batch x classes), the int64 targets and
  a one-element total weight.

The figure is what is live at the end of the forward pass, the usual peak. Not modelled:
gradient buffers that exist only during backward, oneDNN layout-reorder copies and other
backend workspaces; PyTorch's measured CPU peak for NiN (batch 32, 96x96, SGD) is 55.7 MB,
about 6% above the 52.6 MB estimate (see tests/test_resources.py).

Inference memory (bytes, float32)
---------------------------------
``parameters + the largest pair of live activations``: the input and output of any one op,
counting each convolution and each ReLU inside a block separately (ReLU is not in place, so its
input and output coexist), pooling, and dense layers; dropout (identity at inference) and
flatten (a view) allocate nothing. This is the floor any framework needs; PyTorch on CPU also
holds the caller's input batch and, inside a oneDNN convolution, transiently one more
activation-sized copy in a blocked layout (and a reordered weight), so its measured peak lies
between this figure and this figure plus the input batch plus one activation (NiN, batch 32,
96x96: 27.0 MB measured, 19.9 MB estimated).

Core layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .report import format_table
from .shapes import check_input_shape, conv_shapes, layer_params, layer_shapes
from .spec import (
    ConvBlock,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    MaxPool,
    Spec,
    layer_kind,
    make_spec,
)

OPTIMIZER_STATE_COPIES = {"sgd": 0, "momentum": 1, "adam": 2}
DTYPE_BYTES = {"float32": 4, "int64": 8, "bool": 1}
FLOAT32_BYTES = DTYPE_BYTES["float32"]
DEVICES = ("cpu", "cuda")


# ----------------------------------------------------------------------------- formatting


def format_bytes(n: int | float) -> str:
    """Binary units with one decimal: ``format_bytes(7_968_664) == '7.6 MiB'``."""
    value = float(n)
    if abs(round(value)) < 1024:
        return f"{value:.0f} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        # The unit is chosen after rounding: 1,048,575 B is 1.0 MiB, not 1024.0 KiB.
        if abs(round(value, 1)) < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def format_count(n: int | float, unit: str = "") -> str:
    """Decimal prefixes, three significant digits: ``format_count(1_992_166) == '1.99 M'``."""
    value = float(n)
    for prefix in ("", "K", "M", "G", "T"):
        if abs(value) < 999.5 or prefix == "T":
            break
        value /= 1000
    text = f"{value:.3g}" if prefix else f"{value:.0f}"  # rounded, as the prefixed ones are
    return f"{text} {prefix}{unit}".rstrip()


def format_flops(n: int | float) -> str:
    """FLOPs in GFLOPs, as the chapter quotes them: ``format_flops(7.69e8) == '0.769 GFLOPs'``."""
    return f"{n / 1e9:.3g} GFLOPs"


# ----------------------------------------------------------------------------- data classes


@dataclass(frozen=True)
class LayerResources:
    """One top-level layer (named as ``Spec.layer_names()``) for the whole batch."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    weights: int
    biases: int
    macs: int
    flops: int
    activations: int  # output elements for the batch

    @property
    def params(self) -> int:
        return self.weights + self.biases


@dataclass(frozen=True)
class SavedTensor:
    """A tensor the model keeps alive: saved for backward, or live at inference."""

    layer: str  # top-level layer name, or "input" / "loss"
    what: str  # e.g. "relu2 output", "indices", "mask"
    shape: tuple[int, ...]
    dtype: str  # "float32", "int64" or "bool"
    storage: int = 0  # identity of the underlying storage (views share it)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPE_BYTES[self.dtype]


@dataclass(frozen=True)
class MemoryBreakdown:
    """Training memory in bytes: parameters, gradients, optimizer state, saved activations."""

    optimizer: str
    params: int
    grads: int
    optimizer_state: int
    activations: int

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer_state + self.activations

    def items(self) -> list[tuple[str, int]]:
        return [
            ("parameters", self.params),
            ("gradients", self.grads),
            (f"optimizer state ({self.optimizer})", self.optimizer_state),
            ("activations saved for backward", self.activations),
            ("total", self.total),
        ]

    def table(self, markdown: bool = False) -> str:
        return format_table(
            ["component", "bytes", "size"],
            [(name, value, format_bytes(value)) for name, value in self.items()],
            markdown=markdown,
        )

    def __str__(self) -> str:
        return self.table()


@dataclass(frozen=True)
class _Op:
    layer: str
    op: str
    input: SavedTensor
    output: SavedTensor
    saved: tuple[SavedTensor, ...]


@dataclass(frozen=True)
class Resources:
    """Per-layer and total resources of `spec` at one input size, batch size and bias setting."""

    spec: Spec
    input_size: int
    batch_size: int
    bias: bool
    layers: tuple[LayerResources, ...]

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch_size, self.spec.in_channels, self.input_size, self.input_size)

    @property
    def weights(self) -> int:
        return sum(layer.weights for layer in self.layers)

    @property
    def biases(self) -> int:
        return sum(layer.biases for layer in self.layers)

    @property
    def params(self) -> int:
        return self.weights + self.biases

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def flops(self) -> int:
        return sum(layer.flops for layer in self.layers)

    @property
    def activations(self) -> int:
        return sum(layer.activations for layer in self.layers)

    def layer(self, name: str) -> LayerResources:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(
            f"no layer {name!r}; layers are {', '.join(layer.name for layer in self.layers)}"
        )

    # -- memory

    def saved_tensors(self, device: str = "cpu") -> tuple[SavedTensor, ...]:
        """The unique tensors autograd keeps for backward (parameters excluded), in order."""
        _check_choice("device", device, DEVICES)
        unique: dict[int, SavedTensor] = {}
        for op in _trace(self.spec, self.input_shape, training=True, device=device):
            for tensor in op.saved:
                unique.setdefault(tensor.storage, tensor)
        return tuple(unique.values())

    def training_memory(self, optimizer: str = "sgd", *, device: str = "cpu") -> MemoryBreakdown:
        """Parameters + gradients + optimizer state + saved activations, in bytes (float32)."""
        _check_choice("optimizer", optimizer, OPTIMIZER_STATE_COPIES)
        params = self.params * FLOAT32_BYTES
        return MemoryBreakdown(
            optimizer=optimizer,
            params=params,
            grads=params,
            optimizer_state=OPTIMIZER_STATE_COPIES[optimizer] * params,
            activations=sum(tensor.nbytes for tensor in self.saved_tensors(device)),
        )

    def largest_inference_pair(self) -> tuple[str, int]:
        """(op, bytes) of the op whose input plus output is largest at inference."""
        best = ("", 0)
        for op in _trace(self.spec, self.input_shape, training=False, device="cpu"):
            size = op.input.nbytes + op.output.nbytes
            if size > best[1]:
                best = (f"{op.layer}.{op.op}", size)
        return best

    def inference_memory(self) -> int:
        """Parameters + the largest input/output pair of any one op, in bytes (float32)."""
        return self.params * FLOAT32_BYTES + self.largest_inference_pair()[1]

    # -- reporting

    def table(self, markdown: bool = False) -> str:
        """Per-layer rows and a totals row; MACs, FLOPs and memory in human units."""
        headers = [
            "layer",
            "output shape",
            "weights",
            "biases",
            "params",
            "MACs",
            "FLOPs",
            "activations",
            "act. memory",
        ]

        def row(name, shape, weights, biases, macs, flops, activations):
            return [
                name,
                shape,
                weights,
                biases,
                weights + biases,
                format_count(macs) if macs else "-",
                format_flops(flops) if flops else "-",
                activations,
                format_bytes(activations * FLOAT32_BYTES),
            ]

        rows = [
            row(
                layer.name,
                layer.output_shape,
                layer.weights,
                layer.biases,
                layer.macs,
                layer.flops,
                layer.activations,
            )
            for layer in self.layers
        ]
        rows.append(
            row(
                f"total ({format_count(self.params)} params)",
                # The totals have no output shape; what they are totals for is this input.
                f"input {tuple(self.input_shape)}",
                self.weights,
                self.biases,
                self.macs,
                self.flops,
                self.activations,
            )
        )
        return format_table(headers, _right_align(rows, (5, 6, 8)), markdown=markdown)

    def summary(self, optimizer: str = "sgd") -> str:
        """One line: parameters, FLOPs and memory."""
        return (
            f"{self.spec.describe()} at {self.batch_size}x{self.spec.in_channels}x"
            f"{self.input_size}x{self.input_size}: {format_count(self.params)} params, "
            f"{format_flops(self.flops)}, training ({optimizer}) "
            f"{format_bytes(self.training_memory(optimizer).total)}, inference "
            f"{format_bytes(self.inference_memory())}"
        )


# ----------------------------------------------------------------------------- computing


def resources(
    spec: Spec | str | None = None,
    input_size: int | None = None,
    batch_size: int = 1,
    bias: bool = True,
) -> Resources:
    """Resources of `spec` (a Spec, 'nin', 'alexnet' or None for NiN) for square inputs.

    `input_size` defaults to ``spec.input_size``; it is validated like a real batch
    (:func:`common.shapes.check_input_shape`), so a too small image or, for a network with
    a Dense layer, a size other than its own raises ValueError.
    """
    spec = make_spec(spec)
    size = spec.input_size if input_size is None else input_size
    for name, value in (("input_size", size), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    shape = (batch_size, spec.in_channels, size, size)
    check_input_shape(spec, shape)

    layers = []
    current: tuple[int, ...] = shape
    for layer, out, params in zip(
        spec.layers, layer_shapes(spec, shape), layer_params(spec, bias=bias)
    ):
        macs = 0
        if isinstance(layer, ConvBlock):
            channels = current[1]
            for conv, conv_shape in zip(layer.convs, conv_shapes(layer, current)):
                macs += math.prod(conv_shape) * channels * conv.kernel_size**2
                channels = conv.out_channels
        elif isinstance(layer, Dense):
            macs = current[0] * current[1] * layer.units
        layers.append(
            LayerResources(
                out.name,
                layer_kind(layer),
                out.output_shape,
                params.weights,
                params.biases,
                macs,
                2 * macs,
                math.prod(out.output_shape),
            )
        )
        current = out.output_shape
    return Resources(spec, size, batch_size, bias, tuple(layers))


def _trace(spec: Spec, input_shape: tuple[int, ...], *, training: bool, device: str) -> list[_Op]:
    """The ops PyTorch runs for `spec`, with the tensors each allocates and saves."""
    counter = iter(range(1, 1 << 62))

    def new(layer: str, what: str, shape: tuple[int, ...], dtype: str = "float32"):
        return SavedTensor(layer, what, tuple(shape), dtype, next(counter))

    ops: list[_Op] = []
    current = new("input", "input batch", input_shape)
    for name, layer, out in zip(spec.layer_names(), spec.layers, layer_shapes(spec, input_shape)):
        if isinstance(layer, ConvBlock):
            for index, (conv, conv_shape) in enumerate(
                zip(layer.convs, conv_shapes(layer, current.shape)), start=1
            ):
                conv_out = new(name, f"conv{index} output", conv_shape)
                ops.append(_Op(name, f"conv{index}", current, conv_out, (current,)))
                current = conv_out
                if conv.relu:
                    relu_out = new(name, f"relu{index} output", conv_shape)
                    ops.append(_Op(name, f"relu{index}", conv_out, relu_out, (relu_out,)))
                    current = relu_out
        elif isinstance(layer, MaxPool):
            output = new(name, "output", out.output_shape)
            saved = (current, new(name, "indices", out.output_shape, "int64")) if training else ()
            ops.append(_Op(name, "max_pool", current, output, saved))
            current = output
        elif isinstance(layer, Dropout):
            if training and layer.rate > 0:  # otherwise the identity: same tensor, nothing saved
                mask = new(name, "mask", current.shape, "float32" if device == "cpu" else "bool")
                output = new(name, "output", current.shape)
                ops.append(_Op(name, "dropout", current, output, (mask,)))
                current = output
        elif isinstance(layer, GlobalAvgPool):
            output = new(name, "output", out.output_shape)
            ops.append(_Op(name, "mean", current, output, ()))
            current = output
        elif isinstance(layer, Flatten):
            current = replace(current, shape=out.output_shape)  # a view: same storage
        elif isinstance(layer, Dense):
            linear_out = new(name, "linear output", out.output_shape)
            ops.append(_Op(name, "linear", current, linear_out, (current,)))
            current = linear_out
            if layer.relu:
                relu_out = new(name, "relu output", out.output_shape)
                ops.append(_Op(name, "relu", linear_out, relu_out, (relu_out,)))
                current = relu_out
        else:
            raise TypeError(f"unknown layer {layer!r}")
    if training:
        batch = input_shape[0]
        log_probs = new("loss", "log-softmax output", current.shape)
        ops.append(
            _Op(
                "loss",
                "cross_entropy",
                current,
                log_probs,
                (
                    log_probs,
                    new("loss", "targets", (batch,), "int64"),
                    new("loss", "total weight", (), "float32"),
                ),
            )
        )
    return ops


def _right_align(rows: list[list], columns) -> list[list]:
    """Pad the human-unit text columns so that format_table's left alignment looks right-aligned."""
    for column in columns:
        width = max(len(row[column]) for row in rows)
        for row in rows:
            row[column] = row[column].rjust(width)
    return rows


def _check_choice(name: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; choose from {', '.join(allowed)}")


# ----------------------------------------------------------------------------- comparison


def compare_models(
    specs=("nin", "alexnet"),
    input_size: int | None = None,
    batch_size: int = 1,
    *,
    optimizer: str = "sgd",
    bias: bool = True,
    markdown: bool = False,
) -> str:
    """A summary table of several networks (e.g. NiN vs AlexNet) for the report.

    `specs` are Specs or names; `input_size` None uses each spec's own size. Columns: exact
    and human parameter counts, GFLOPs for the batch, activation elements, training memory
    with `optimizer` and inference memory.
    """
    rows = []
    for spec in specs:
        result = resources(spec, input_size, batch_size, bias)
        rows.append(
            [
                result.spec.describe(),
                result.input_shape,
                result.params,
                format_count(result.params),
                format_flops(result.flops),
                result.activations,
                format_bytes(result.training_memory(optimizer).total),
                format_bytes(result.inference_memory()),
            ]
        )
    headers = [
        "model",
        "input (NCHW)",
        "params",
        "params (human)",
        "FLOPs",
        "activations",
        f"training memory ({optimizer})",
        "inference memory",
    ]
    return format_table(headers, _right_align(rows, (3, 4, 6, 7)), markdown=markdown)
