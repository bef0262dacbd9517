"""A reader's Keras model, seen from outside: what ``nin check`` asks of Keras.

Keras has no forward hooks, so for one pass each layer's ``call`` is replaced on the instance
by a wrapper that records what went in and came out (and put back afterwards). Only layers are
seen: a ``tf.nn.relu`` written inside a subclassed ``call`` is not, and the numbers decide
about it. Keras runs NHWC; everything reported here is NCHW. A ``ZeroPadding2D`` right before a
convolution is reported as that convolution's padding.

Backend layer.
"""

from __future__ import annotations

import contextlib
import re
import weakref

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from common import trace as t
from common.backends import framework_of

_KINDS = [
    (layers.Conv2D, t.CONV),
    (layers.Dense, t.DENSE),
    (layers.ReLU, t.RELU),
    (layers.Softmax, t.SOFTMAX),
    (layers.MaxPooling2D, t.MAX_POOL),
    (layers.AveragePooling2D, t.AVG_POOL),
    (layers.GlobalAveragePooling2D, t.GLOBAL_AVG_POOL),
    (layers.GlobalMaxPooling2D, t.GLOBAL_MAX_POOL),
    (layers.Dropout, t.DROPOUT),
    (layers.Flatten, t.FLATTEN),
    (layers.Reshape, t.RESHAPE),
    (layers.ZeroPadding2D, t.PADDING),
    (layers.BatchNormalization, t.BATCH_NORM),
]


def is_model(obj) -> bool:
    return isinstance(obj, keras.layers.Layer) and not isinstance(obj, keras.layers.InputLayer)


def _leaves(net) -> list:
    found = [
        layer
        for layer in net._flatten_layers(include_self=False, recursive=True)
        if not list(layer._flatten_layers(include_self=False, recursive=False))
    ]
    if not found and not list(net._flatten_layers(include_self=False, recursive=False)):
        found = [net]  # a single layer
    return [layer for layer in found if not isinstance(layer, layers.InputLayer)]


def parameterised_layers(net) -> int:
    return sum(isinstance(layer, (layers.Conv2D, layers.Dense)) for layer in _leaves(net))


def contains(outer, inner) -> bool:
    return outer is not inner and any(
        layer is inner for layer in outer._flatten_layers(include_self=False, recursive=True)
    )


def _paths(net) -> dict[int, str]:
    """Each layer's path: the names of the layers that hold it, from the model down."""
    paths: dict[int, str] = {}

    def walk(layer, prefix):
        for child in layer._flatten_layers(include_self=False, recursive=False):
            path = f"{prefix}.{child.name}" if prefix else child.name
            paths.setdefault(id(child), path)
            walk(child, path)

    walk(net, "")
    return paths


def _nchw(shape) -> tuple[int, ...]:
    shape = tuple(1 if size is None else int(size) for size in shape)  # (symbolic batch: 1)
    return (shape[0], shape[3], shape[1], shape[2]) if len(shape) == 4 else shape


def _to_nchw(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array.transpose(0, 3, 1, 2)) if array.ndim == 4 else array


def _pair(value) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return (int(value[0]), int(value[-1]))
    return (int(value), int(value))


def _activation(layer) -> str | None:
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", None)
    return None if name in (None, "linear") else name


def _describe(layer) -> list[tuple[str, str, dict]]:
    """(kind, detail, config) of the steps a layer is: a Conv2D with activation='relu' is a
    convolution and a ReLU."""
    name = type(layer).__name__
    kind = next((kind for cls, kind in _KINDS if isinstance(layer, cls)), None)
    if isinstance(layer, layers.Activation):
        activation = _activation(layer)
        return [
            (
                t.RELU
                if activation == "relu"
                else t.SOFTMAX
                if activation == "softmax"
                else t.ACTIVATION,
                name,
                {"name": activation},
            )
        ]
    if kind is None:
        return [(t.OTHER, name, {"name": name})]
    config: dict = {}
    if kind == t.CONV:
        config = {
            "out_channels": int(layer.filters),
            "kernel": _pair(layer.kernel_size),
            "stride": _pair(layer.strides),
            "padding": "same" if layer.padding == "same" else ((0, 0), (0, 0)),
            "dilation": _pair(layer.dilation_rate),
            "groups": int(layer.groups),
            "bias": bool(layer.use_bias),
        }
    elif kind == t.DENSE:
        config = {"units": int(layer.units), "bias": bool(layer.use_bias)}
    elif kind in (t.MAX_POOL, t.AVG_POOL):
        config = {
            "kernel": _pair(layer.pool_size),
            "stride": _pair(layer.strides),
            "padding": "same" if layer.padding == "same" else ((0, 0), (0, 0)),
        }
    elif kind == t.DROPOUT:
        config = {"rate": float(layer.rate)}
    elif kind == t.PADDING:
        (top, bottom), (left, right) = layer.padding
        config = {"padding": ((int(top), int(bottom)), (int(left), int(right)))}
    steps = [(kind, name, config)]
    activation = _activation(layer) if kind in (t.CONV, t.DENSE) else None
    if activation:
        steps.append(
            (
                t.RELU
                if activation == "relu"
                else t.SOFTMAX
                if activation == "softmax"
                else t.ACTIVATION,
                f"{name}(activation={activation!r})",
                {"name": activation},
            )
        )
    return steps


@contextlib.contextmanager
def _recording(net, on_call, running: list | None = None):
    """Every leaf layer's call reported to `on_call(layer, inputs, output)` while open; the
    layers called and not returned from yet are in `running`."""
    leaves = _leaves(net)
    running = [] if running is None else running
    for layer in leaves:
        original = layer.call

        def call(*args, _layer=layer, _original=original, **kwargs):
            running.append(_layer)
            output = _original(*args, **kwargs)
            running.pop()
            on_call(_layer, args[0] if args else next(iter(kwargs.values())), output)
            return output

        object.__setattr__(layer, "call", call)
    try:
        yield []
    finally:
        for layer in leaves:
            if "call" in vars(layer):
                object.__delattr__(layer, "call")


def _build(net, channels: int, size: int) -> None:
    if not net.built:
        net(np.zeros((1, size, size, channels), np.float32), training=False)


_WEIGHTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _Numbering:
    """Parameterised layers numbered in the order they run."""

    def __init__(self):
        self.layers: list = []

    def number(self, layer) -> int:
        for index, known in enumerate(self.layers):
            if known is layer:
                return index
        self.layers.append(layer)
        return len(self.layers) - 1


def trace(net, input_shape: tuple[int, ...]) -> t.ModelTrace:
    """One forward pass of zeros (NCHW `input_shape`, run NHWC) in inference mode."""
    batch, channels, height, width = input_shape
    paths = _paths(net)
    real: list[t.Step] = []
    symbolic: list[t.Step] = []
    numbering = _Numbering()
    padding: dict = {}

    def on_call(layer, inputs, output):
        # Building runs a symbolic pass first; its steps count only if the real one never ran.
        steps = symbolic if isinstance(output, keras.KerasTensor) else real
        described = _describe(layer)
        kind, detail, config = described[0]
        if kind == t.PADDING:
            padding[id(output)] = (config["padding"], inputs)
        if kind == t.CONV and id(inputs) in padding:
            config = {**config, "padding": padding[id(inputs)][0]}
            inputs = padding[id(inputs)][1]
            if steps and steps[-1].kind == t.PADDING:
                steps.pop()
        param = numbering.number(layer) if kind in t.PARAMETERISED else None
        path = paths.get(id(layer), layer.name)
        for index, (kind, detail, config_) in enumerate(described):
            steps.append(
                t.Step(
                    path=path,
                    kind=kind,
                    detail=detail,
                    output_shape=_nchw(output.shape),
                    config=config if index == 0 else config_,
                    param=param if index == 0 else None,
                    input_shape=_nchw(inputs.shape),
                )
            )

    images = np.zeros((batch, height, width, channels), np.float32)
    error = error_at = output_shape = None
    running: list = []
    try:
        with _recording(net, on_call, running):
            output = net(images, training=False)
        output_shape = _nchw(output.shape)
    except Exception as failure:  # the reader's model, at a size it may not take
        error_at = paths.get(id(running[-1]), running[-1].name) if running else None
        error = f"{type(failure).__name__}: {_first_line(failure)}"
    steps = real or symbolic
    _WEIGHTS[net] = numbering.layers
    variables = list(net.weights) if net.built else []
    return t.ModelTrace(
        framework=framework_of(net),
        model_type=f"{type(net).__module__}.{type(net).__name__}",
        steps=steps,
        output_shape=output_shape,
        param_shapes=[
            (
                _canonical_shape(layer),
                (int(layer.bias.shape[0]),) if getattr(layer, "use_bias", False) else None,
            )
            for layer in numbering.layers
        ],
        total_params=int(sum(np.prod(variable.shape) for variable in variables)),
        trainable_params=int(sum(np.prod(variable.shape) for variable in net.trainable_weights))
        if net.built
        else 0,
        error=error,
        error_at=error_at,
        frozen=[
            paths.get(id(layer), layer.name) for layer in numbering.layers if not layer.trainable
        ],
    )


def _first_line(error: BaseException) -> str:
    """The line of a Keras error that says what went wrong: not its "Exception encountered
    when calling ..." preamble, nor TensorFlow's {{function_node ...}} prefix."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    lines = [
        line
        for line in lines
        if not line.startswith(("Exception encountered", "Arguments received"))
    ] or lines
    line = re.sub(r"\x1b\[[0-9;]*m", "", lines[0] if lines else "")  # Keras's bold text
    return re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", line)[:300]


def _canonical_shape(layer) -> tuple[int, ...]:
    shape = tuple(int(size) for size in layer.kernel.shape)
    if len(shape) == 4:  # HWIO -> OIHW
        return (shape[3], shape[2], shape[0], shape[1])
    return (shape[1], shape[0])


# -- weights, numbers and gradients --------------------------------------------------------------


def set_weights(net, arrays: list[tuple[np.ndarray, np.ndarray | None]]) -> None:
    """Each parameterised step's canonical (weight, bias), by number (after :func:`trace`)."""
    for layer, (weight, bias) in zip(_WEIGHTS[net], arrays):
        weight = np.asarray(weight, np.float32)
        layer.kernel.assign(weight.transpose(2, 3, 1, 0) if weight.ndim == 4 else weight.T)
        if layer.use_bias and bias is not None:
            layer.bias.assign(np.asarray(bias, np.float32))


def run(
    net, images: np.ndarray, *, training: bool = False
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """(output, each parameterised step's input (NCHW)) for NCHW `images`."""
    numbers = {id(layer): index for index, layer in enumerate(_WEIGHTS[net])}
    inputs: dict[int, np.ndarray] = {}
    padded: dict = {}

    def on_call(layer, given, output):
        if isinstance(layer, layers.ZeroPadding2D):
            padded[id(output)] = given
        if id(layer) in numbers:
            given = padded.get(id(given), given)
            inputs.setdefault(numbers[id(layer)], _to_nchw(keras.ops.convert_to_numpy(given)))

    with _recording(net, on_call):
        output = net(np.ascontiguousarray(images.transpose(0, 2, 3, 1)), training=training)
    return _to_nchw(keras.ops.convert_to_numpy(output)).copy(), inputs


def gradients(
    net, images: np.ndarray, labels: np.ndarray
) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
    """The mean cross-entropy's gradient for each parameterised step's (weight, bias), in
    inference mode (dropout off), canonical; None where a parameter gets none."""
    pairs = [(layer.kernel, layer.bias if layer.use_bias else None) for layer in _WEIGHTS[net]]
    trainable = {id(variable) for variable in net.trainable_variables}
    wanted = [
        variable
        for pair in pairs
        for variable in pair
        if variable is not None and id(variable) in trainable
    ]
    loss_function = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        logits = net(np.ascontiguousarray(images.transpose(0, 2, 3, 1)), training=False)
        loss = loss_function(labels, tf.reshape(logits, (len(images), -1)))
    found = dict(zip(map(id, wanted), tape.gradient(loss, wanted)))

    def grad(variable, canonical):
        value = found.get(id(variable)) if variable is not None else None
        return None if value is None else canonical(value.numpy())

    def kernel(value):
        return value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T

    return [(grad(weight, kernel), grad(bias, lambda value: value)) for weight, bias in pairs]


@contextlib.contextmanager
def preserved(net, input_shape: tuple[int, ...]):
    """Everything the check changes in `net` (its variables) is put back. A model that was
    not built yet is built first, with NCHW `input_shape`, so its own initial weights are what
    is put back."""
    try:
        _build(net, input_shape[1], input_shape[2])
    except Exception:  # a model that cannot run at this size: the trace reports it
        pass
    saved = (
        [(variable, keras.ops.convert_to_numpy(variable)) for variable in net.weights]
        if net.built
        else []
    )
    try:
        yield []
    finally:
        for variable, value in saved:
            variable.assign(value)


def reference(spec):
    """The project's own model of `spec` in Keras, for the gradient check."""
    from .model import build_nin

    return build_nin(spec)


def reset() -> None:
    """Undo what a reader's file may have switched on globally: Keras's global state (layer
    name counters, the default graph)."""
    keras.backend.clear_session()
