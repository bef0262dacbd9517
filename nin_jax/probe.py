"""A reader's JAX model, seen from outside: what ``nin check`` asks of JAX.

JAX itself has no model type: a model is parameters and pure functions, and a Flax module
(the book's JAX models) is a library's, which does not install beside this project's pins and
is not seen. What is seen is this project's own: a :class:`nin_jax.model.Network` (its named
layers and its ``params``), or one bare layer, such as the ``ConvLayers`` that
``nin_jax.nin_block`` returns. A bare layer holds no parameters: the probe makes its own for
the input it is given (Xavier, from a fixed seed) and forgets them afterwards, as the Gluon
probe initialises a lazy block.

Each convolution of a ``ConvLayers`` is run and reported on its own (its ReLU as a step of its
own); the other layers are steps as they are. A layer of another class, or a subclass with its
own ``apply``, is one step of kind "other" whose parameters are not numbered: what an
``apply`` computes inside is not seen, and the numbers decide about it (a Network subclass
with its own ``apply`` is run by it, so its output is what is compared). The layers run NHWC;
everything reported here is NCHW, and a dense layer after a flatten of maps takes and reports
its inputs in the canonical (C, H, W) order.

Backend layer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import weakref
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from common import trace as t
from common.backends import framework_of
from common.weights import from_channels_last, to_channels_last

from .model import (
    ConvLayers,
    DenseLayer,
    DropoutLayer,
    Flattening,
    GlobalAveragePooling,
    Layer,
    MaxPooling,
    Network,
    to_nchw,
    to_nhwc,
)

_INITIAL_SEED = 0  # a bare layer's parameters
_X64 = jax.config.jax_enable_x64  # as this process started, for reset()
_dropout_keys = itertools.count()  # a new dropout mask on every training-mode run


class _ByIdentity:
    """A weak map keyed by identity: two equal frozen layers (two ``nin_block(16, 3, 1, 1)``)
    are two models, which a WeakKeyDictionary (keyed by equality) would make one."""

    def __init__(self):
        self._entries: dict[int, tuple[weakref.ref, object]] = {}

    def get(self, obj, default=None):
        entry = self._entries.get(id(obj))
        return entry[1] if entry is not None and entry[0]() is obj else default

    def set(self, obj, value) -> None:
        key = id(obj)
        self._entries[key] = (
            weakref.ref(obj, lambda _, key=key: self._entries.pop(key, None)),
            value,
        )

    def pop(self, obj) -> None:
        if self.get(obj) is not None:
            del self._entries[id(obj)]


@dataclass(frozen=True)
class _Held:
    """The parameters the probe made for a bare layer, and the NHWC input they fit."""

    input_shape: tuple[int, ...]
    params: list


@dataclass(frozen=True)
class _Slot:
    """A parameterised step: where its kernel and bias are in the parameters (and, like a
    ParamSlot, whether it convolves and what it flattens: what the channels-last layouts of
    :mod:`common.weights` read)."""

    layer: str
    index: int
    is_conv: bool
    flattened_chw: tuple[int, int, int] | None = None  # a dense layer's inputs, as maps


_HELD = _ByIdentity()  # bare layer -> _Held
_SLOTS = _ByIdentity()  # model -> [_Slot], numbered by the last trace


def is_model(obj) -> bool:
    return isinstance(obj, (Network, Layer))


def _is(layer, cls) -> bool:
    """Whether `layer` is a `cls` that computes what `cls` does: a subclass with its own
    ``apply`` is another layer, whatever its parameters look like."""
    return isinstance(layer, cls) and type(layer).apply is cls.apply


def _layers(net) -> dict[str, Layer]:
    return net.layers if isinstance(net, Network) else {"": net}


def _params(net) -> dict[str, list]:
    if isinstance(net, Network):
        return net.params
    held = _HELD.get(net)
    return {"": held.params if held is not None else []}


def _replace_params(net, params: dict[str, list]) -> None:
    """New parameters for `net`: a new pytree, so the one the reader holds is never changed."""
    if isinstance(net, Network):
        net.params = params
    else:
        _HELD.set(net, _Held(_HELD.get(net).input_shape, params[""]))


def parameterised_layers(net) -> int:
    return sum(
        len(layer.convs) if _is(layer, ConvLayers) else _is(layer, DenseLayer)
        for layer in _layers(net).values()
    )


def contains(outer, inner) -> bool:
    return outer is not inner and any(layer is inner for layer in _layers(outer).values())


def _path(*parts) -> str:
    return ".".join(str(part) for part in parts if part != "")


def _pieces(net):
    """(path, layer name, conv index or None, piece): what runs, in order; a ConvLayers
    runs as one piece per convolution, so that each one's input can be seen."""
    for name, layer in _layers(net).items():
        if _is(layer, ConvLayers):
            for index, conv in enumerate(layer.convs):
                yield _path(name, index), name, index, dataclasses.replace(layer, convs=(conv,))
        else:
            yield name, name, None, layer


def _piece_params(params: dict[str, list], name: str, index: int | None):
    return [params[name][index]] if index is not None else params[name]


def _ensure_params(net, nchw_shape: tuple[int, ...]) -> None:
    """A bare layer gets parameters for an NCHW input of `nchw_shape` unless it has some for
    that input already."""
    if isinstance(net, Network):
        return
    batch, channels, height, width = nchw_shape
    shape = (batch, height, width, channels)
    held = _HELD.get(net)
    if held is not None and held.input_shape[-1] == channels:
        return
    seed, numbers = jax.random.PRNGKey(_INITIAL_SEED), itertools.count()
    xavier = jax.nn.initializers.glorot_uniform()

    def initial(path, leaf_shape):
        if getattr(path[-1], "key", None) == "kernel":
            return xavier(jax.random.fold_in(seed, next(numbers)), leaf_shape, jnp.float32)
        return jnp.zeros(leaf_shape, jnp.float32)

    params = jax.tree_util.tree_map_with_path(
        initial, net.param_shapes(shape), is_leaf=lambda node: isinstance(node, tuple)
    )
    _HELD.set(net, _Held(shape, params))


# -- the forward pass ----------------------------------------------------------------------------


def _forward(net, params, x, *, training=False, key=None, on_piece=None):
    """`net` on NHWC `x` with `params`, piece by piece; `on_piece(path, name, index, piece,
    input, output)` after each. Dropout layer i draws from ``fold_in(key, i)``, as
    Network.apply does. A subclass of Network with its own ``apply`` is run by it too, and
    its output is the model's: the pieces then only show each layer's input."""
    images = x
    own_apply = isinstance(net, Network) and type(net).apply is not Network.apply
    if own_apply and on_piece is None:
        return net.apply(params, images, training=training, key=key)
    layer_numbers = {name: number for number, name in enumerate(_layers(net))}
    for path, name, index, piece in _pieces(net):
        layer_key = (
            jax.random.fold_in(key, layer_numbers[name]) if training and key is not None else None
        )
        output = piece.apply(
            _piece_params(params, name, index), x, training=training, key=layer_key
        )
        if on_piece is not None:
            on_piece(path, name, index, piece, x, output)
        x = output
    return net.apply(params, images, training=training, key=key) if own_apply else x


def _pair(value: int) -> tuple[int, int]:
    return (int(value), int(value))


def _describe(piece) -> list[tuple[str, str, dict]]:
    """(kind, detail, config) of the steps a piece is: a convolution with its ReLU is two."""
    if _is(piece, ConvLayers):
        (conv,) = piece.convs
        config = {
            "out_channels": conv.out_channels,
            "kernel": _pair(conv.kernel_size),
            "stride": _pair(conv.stride),
            "padding": (_pair(conv.padding), _pair(conv.padding)),
            "dilation": (1, 1),
            "groups": 1,
            "bias": True,
        }
        relu = conv.relu
        steps = [(t.CONV, "Conv", config)]
    elif _is(piece, DenseLayer):
        relu = piece.relu
        steps = [(t.DENSE, type(piece).__name__, {"units": piece.units, "bias": True})]
    else:
        relu = False
        name = type(piece).__name__
        if _is(piece, MaxPooling):
            window = {"kernel": _pair(piece.kernel_size), "stride": _pair(piece.stride)}
            steps = [(t.MAX_POOL, name, {**window, "padding": ((0, 0), (0, 0))})]
        elif _is(piece, DropoutLayer):
            steps = [(t.DROPOUT, name, {"rate": float(piece.rate)})]
        elif _is(piece, GlobalAveragePooling):
            steps = [(t.GLOBAL_AVG_POOL, name, {})]
        elif _is(piece, Flattening):
            steps = [(t.FLATTEN, name, {})]
        else:
            steps = [(t.OTHER, name, {"name": name})]
    if relu:
        steps.append((t.RELU, f"{steps[0][1]}(relu=True)", {"name": "relu"}))
    return steps


def _nchw(shape) -> tuple[int, ...]:
    shape = tuple(int(size) for size in shape)
    return (shape[0], shape[3], shape[1], shape[2]) if len(shape) == 4 else shape


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0][:300]


def trace(net, input_shape: tuple[int, ...]) -> t.ModelTrace:
    """One forward pass of zeros (NCHW `input_shape`, run NHWC) in inference mode."""
    _ensure_params(net, input_shape)
    params = _params(net)
    steps: list[t.Step] = []
    slots: list[_Slot] = []
    flattened: list = [None]  # the (C, H, W) of the maps the last step made vectors of
    running: list[str] = []

    def on_piece(path, name, index, piece, x, output):
        described = _describe(piece)
        kind = described[0][0]
        param = None
        if kind in t.PARAMETERISED:
            chw = flattened[0] if kind == t.DENSE else None
            slots.append(_Slot(name, index or 0, kind == t.CONV, chw))
            param = len(slots) - 1
            flattened[0] = None
        elif x.ndim == 4 and output.ndim == 2:
            _, height, width, channels = x.shape
            flattened[0] = (channels, height, width) if height * width > 1 else None
        for number, (kind_, detail, config) in enumerate(described):
            steps.append(
                t.Step(
                    path=path,
                    kind=kind_,
                    detail=detail,
                    output_shape=_nchw(output.shape),
                    config=config,
                    param=param if number == 0 else None,
                    input_shape=_nchw(x.shape),
                )
            )
        running.append(path)

    error = error_at = output_shape = None
    paths = [path for path, *_ in _pieces(net)]
    try:
        output = _forward(
            net, params, jnp.zeros(_nhwc_shape(input_shape), jnp.float32), on_piece=on_piece
        )
        output_shape = _nchw(output.shape)
    except Exception as failure:  # the reader's model, at a size it may not take
        error_at = paths[len(running)] if len(running) < len(paths) else None
        error = f"{type(failure).__name__}: {_first_line(failure)}"
    _SLOTS.set(net, slots)
    total = int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params)))
    return t.ModelTrace(
        framework=framework_of(net),
        model_type=f"{type(net).__module__}.{type(net).__name__}",
        steps=steps,
        output_shape=output_shape,
        param_shapes=[_canonical_shapes(params, slot) for slot in slots],
        total_params=total,
        trainable_params=total,  # JAX differentiates whatever it is given: nothing is frozen
        error=error,
        error_at=error_at,
    )


def _nhwc_shape(nchw_shape) -> tuple[int, ...]:
    batch, channels, height, width = nchw_shape
    return (batch, height, width, channels)


def _canonical_shapes(params, slot: _Slot):
    weights = params[slot.layer][slot.index]
    kernel = tuple(int(size) for size in weights["kernel"].shape)
    if slot.is_conv:  # HWIO -> OIHW
        weight = (kernel[3], kernel[2], kernel[0], kernel[1])
    else:
        weight = (kernel[1], kernel[0])
    return weight, tuple(int(size) for size in weights["bias"].shape)


# -- weights, numbers and gradients --------------------------------------------------------------


def set_weights(net, arrays: list[tuple[np.ndarray, np.ndarray | None]]) -> None:
    """Each parameterised step's canonical (weight, bias), by number (after :func:`trace`)."""
    params = jax.tree_util.tree_map(lambda leaf: leaf, _params(net))  # new containers
    for slot, (weight, bias) in zip(_SLOTS.get(net), arrays):
        weights = dict(params[slot.layer][slot.index])
        weights["kernel"] = jnp.asarray(to_channels_last(slot, np.asarray(weight, np.float32)))
        if bias is not None:
            weights["bias"] = jnp.asarray(np.asarray(bias, np.float32))
        params[slot.layer][slot.index] = weights
    _replace_params(net, params)


def run(
    net, images: np.ndarray, *, training: bool = False
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """(output, each parameterised step's input (NCHW)) for NCHW `images`; in training mode
    each run draws new dropout masks."""
    numbers = {(slot.layer, slot.index): number for number, slot in enumerate(_SLOTS.get(net))}
    slots = _SLOTS.get(net)
    inputs: dict[int, np.ndarray] = {}

    def keep(path, name, index, piece, x, output):
        number = numbers.get((name, index or 0))
        if number is not None:
            inputs.setdefault(number, _canonical_input(slots[number], np.asarray(x)))

    key = jax.random.PRNGKey(next(_dropout_keys)) if training else None
    output = _forward(
        net, _params(net), jnp.asarray(to_nhwc(images)), training=training, key=key, on_piece=keep
    )
    return to_nchw(output).copy(), inputs


def _canonical_input(slot: _Slot, x: np.ndarray) -> np.ndarray:
    """A step's input as the reference has it: NCHW maps, or vectors in (C, H, W) order."""
    if slot.flattened_chw and x.ndim == 2:
        channels, height, width = slot.flattened_chw
        return np.ascontiguousarray(
            x.reshape(len(x), height, width, channels).transpose(0, 3, 1, 2).reshape(len(x), -1)
        )
    return to_nchw(x).copy()


def gradients(
    net, images: np.ndarray, labels: np.ndarray
) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
    """The mean cross-entropy's gradient for each parameterised step's (weight, bias), in
    inference mode (dropout off), canonical."""
    x = jnp.asarray(to_nhwc(images))

    def loss(params):
        logits = _forward(net, params, x)
        # (flattened: a model that forgot its flatten still has gradients to compare)
        logits = logits.reshape(len(images), -1)
        picked = jnp.take_along_axis(
            jax.nn.log_softmax(logits), jnp.asarray(labels.astype(np.int32))[:, None], axis=1
        )
        return -jnp.mean(picked)

    found = jax.grad(loss)(_params(net))
    pairs = []
    for slot in _SLOTS.get(net):
        weights = found[slot.layer][slot.index]
        pairs.append(
            (from_channels_last(slot, np.asarray(weights["kernel"])), np.asarray(weights["bias"]))
        )
    return pairs


@contextlib.contextmanager
def preserved(net, input_shape: tuple[int, ...]):
    """Everything the check changes in `net` is put back: a Network's ``params`` (the probe
    only ever replaces the pytree, never changes it), or a bare layer's parameters, made
    here for the NCHW `input_shape` and forgotten afterwards."""
    held = _HELD.get(net)
    params = net.params if isinstance(net, Network) else None
    _ensure_params(net, input_shape)
    try:
        yield []
    finally:
        if isinstance(net, Network):
            net.params = params
        elif held is not None:
            _HELD.set(net, held)
        else:
            _HELD.pop(net)


def reference(spec):
    """The project's own model of `spec` in JAX, for the gradient check."""
    from .model import build_nin

    return build_nin(spec)


def reset() -> None:
    """Undo what a reader's file may have switched on globally: 64-bit floats."""
    jax.config.update("jax_enable_x64", _X64)
