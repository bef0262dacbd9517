"""A reader's JAX model, seen from outside: what ``nin check`` asks of JAX.

JAX's models are Flax modules, and three kinds are seen:

- a ``flax.linen.Module`` (an ``nn.Sequential``, a subclass with ``setup()`` or
  ``@nn.compact``, the book's ``d2l.Classifier``). Linen is lazy: an unbound module holds no
  parameters, so the probe makes its own for the input it is given (their shapes from an
  abstract ``init``, the values drawn from a fixed seed) and forgets them afterwards, as the
  Gluon probe initialises a lazy block; a bound module's own variables are used;
- a ``flax.nnx.Module``, whose parameters live on it (``nnx.state``, ``nnx.split``);
- a :class:`nin_jax.model.Network`: its linen ``module`` with its ``params``.

How a pass is seen: linen module calls through ``nn.intercept_methods``, NNX module calls
through their class's ``__call__`` wrapped for the pass; an ``nn.Sequential`` is run layer by
layer, so that a function in it (``nn.relu``, the book's ``lambda x: nn.max_pool(...)``) is a
step of its own. A function is named by its numbers: what it made of its input is compared
with a ReLU, a softmax, max or average pooling of every window that gives its output's shape,
global pooling and a flatten, and the first that agrees is the step (else it is "other"). So
the trace runs on random images, not zeros, and a 5x5 average pool over a 5x5 map is global
average pooling, which it is at that size. Code between two modules (``x = nn.relu(x)`` in a
compact ``__call__``) is named the same way, as a step of the module it runs in.

Mode: inference and training are told to the model as Flax models take them: a ``training``
(``train``, ``is_training``) or ``deterministic`` field or ``__call__`` argument, and a
``Dropout`` or ``BatchNorm`` without its own setting gets ``deterministic`` /
``use_running_average`` from the mode (as ``model.eval()`` would set them in NNX). Flax
computes NHWC with HWIO and ``(in, out)`` kernels; everything reported here is NCHW and
canonical (:mod:`common.weights`), a dense layer after a flatten of maps included.

Backend layer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import itertools
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen, nnx

from common import trace as t
from common.backends import framework_of
from common.weights import from_channels_last, to_channels_last

from .model import Network

_SEED = 0  # the parameters the probe makes for an unbound linen module
_X64 = jax.config.jax_enable_x64  # as this process started, for reset()
_dropout_keys = itertools.count(1)  # a new dropout key on every run
_TRAINING = ("training", "train", "is_training")
_DETERMINISTIC = ("deterministic",)
_COUNT_SHAPE = (1, 224, 224, 1)  # the book's input: what a linen module is counted at
_LARGEST_WINDOW = 12  # the pooling windows a function is compared with (NiN's are 3)


class _ByIdentity:
    """A weak map keyed by identity: two equal linen modules (two ``nin_block(96, ...)``) are
    two models, which a WeakKeyDictionary (keyed by equality) would make one."""

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
    """The variables the probe made for a linen module, and the NHWC input they fit (None
    when the module could not be initialised for it: `error` says why)."""

    input_shape: tuple[int, ...]
    variables: dict | None
    error: BaseException | None = None


@dataclass(frozen=True)
class _Slot:
    """A parameterised step: where its kernel and bias are (a linen module's path in the
    params, or the NNX module) and, like a ParamSlot, whether it convolves and what it
    flattens: what the channels-last layouts of :mod:`common.weights` read."""

    location: object
    is_conv: bool
    flattened_chw: tuple[int, int, int] | None = None  # a dense layer's inputs, as maps


_HELD = _ByIdentity()  # linen module -> _Held
_SLOTS = _ByIdentity()  # model -> [_Slot], numbered by the last trace
_COUNTS = _ByIdentity()  # linen module -> its convolutions and dense layers


def is_model(obj) -> bool:
    return isinstance(obj, (linen.Module, nnx.Module, Network))


def _own_call(module, base) -> bool:
    """Whether `module` is a `base` that computes what `base` does: a subclass with its own
    ``__call__`` is another layer, whatever its parameters look like."""
    if not isinstance(module, base):
        return False
    mro = type(module).__mro__
    return not any("__call__" in cls.__dict__ for cls in mro[: mro.index(base)])


_LINEN_LAYERS = (
    (linen.Conv, t.CONV),
    (linen.Dense, t.DENSE),
    (linen.Dropout, t.DROPOUT),
    (linen.BatchNorm, t.BATCH_NORM),
)
_NNX_LAYERS = (
    (nnx.Conv, t.CONV),
    (nnx.Linear, t.DENSE),
    (nnx.Dropout, t.DROPOUT),
    (nnx.BatchNorm, t.BATCH_NORM),
)


def _layer_kind(module) -> str | None:
    layers = _NNX_LAYERS if isinstance(module, nnx.Module) else _LINEN_LAYERS
    return next((kind for base, kind in layers if _own_call(module, base)), None)


def _is_sequential(module) -> bool:
    return _own_call(module, linen.Sequential) or _own_call(module, nnx.Sequential)


def _module(net):
    """The linen module a linen model or a Network computes with (unbound)."""
    module = net.module if isinstance(net, Network) else net
    return module.unbind()[0] if module.scope is not None else module


def parameterised_layers(net) -> int:
    """How many convolutions and dense layers `net` holds; a linen module's are counted in
    an abstract ``init`` at the book's input (its layers exist only once it runs)."""
    if isinstance(net, nnx.Module):
        return sum(
            _layer_kind(node) in t.PARAMETERISED
            for _, node in nnx.iter_graph(net)
            if isinstance(node, nnx.Module)
        )
    module = _module(net)
    count = _COUNTS.get(module)
    if count is None:
        recorder = _Recorder(numbers=False)
        try:
            _abstract_init(module, _COUNT_SHAPE, recorder)
            count = len(recorder.slots)
        except Exception:  # a module that cannot be set up is still one: the check says why
            count = max(len(recorder.slots), 1)
        _COUNTS.set(module, count)
    return count


def _fields(module):
    """The modules a linen module holds in its fields (lists, tuples and dicts included)."""
    values = [
        getattr(module, field.name, None)
        for field in dataclasses.fields(module)
        if field.name not in ("parent", "name")
    ]
    while values:
        value = values.pop()
        if isinstance(value, linen.Module):
            yield value
            yield from _fields(value)
        elif isinstance(value, (list, tuple)):
            values += list(value)
        elif isinstance(value, Mapping):
            values += list(value.values())


def contains(outer, inner) -> bool:
    if outer is inner:
        return False
    if isinstance(outer, nnx.Module):
        return any(node is inner for _, node in nnx.iter_graph(outer))
    if isinstance(outer, Network):
        return inner is outer.module or any(module is inner for module in _fields(outer.module))
    return any(module is inner for module in _fields(outer))


# -- steps, named by their numbers -------------------------------------------------------------


def _close(found, wanted) -> bool:
    if found.shape != wanted.shape:
        return False
    scale = max(1.0, float(np.abs(wanted).max())) if wanted.size else 1.0
    return bool(np.allclose(found, wanted, rtol=1e-4, atol=1e-5 * scale))


def _softmax(x, axis=-1):
    shifted = x - x.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def _windows(x, y):
    """(kind, config) of the max or average poolings of NHWC `x` that give `y`: every square
    window and stride that makes y's shape, VALID or SAME padded, checked by its numbers."""
    height, width = x.shape[1:3]
    rows, columns = y.shape[1:3]
    for kernel in range(1, min(max(height, width), _LARGEST_WINDOW) + 1):
        for stride in range(1, kernel + 1):
            for padding in ("VALID", "SAME"):
                if padding == "VALID":
                    shape = ((height - kernel) // stride + 1, (width - kernel) // stride + 1)
                    pads = ((0, 0), (0, 0))
                else:
                    shape = (-(-height // stride), -(-width // stride))
                    pads = tuple(
                        (total // 2, total - total // 2)
                        for total in (
                            max((shape[0] - 1) * stride + kernel - height, 0),
                            max((shape[1] - 1) * stride + kernel - width, 0),
                        )
                    )
                if shape != (rows, columns):
                    continue
                config = {"kernel": (kernel, kernel), "stride": (stride, stride), "padding": pads}
                window, strides = (kernel, kernel), (stride, stride)
                if _close(np.asarray(linen.max_pool(x, window, strides, padding)), y):
                    yield t.MAX_POOL, config
                if _close(np.asarray(linen.avg_pool(x, window, strides, padding)), y):
                    yield t.AVG_POOL, config


def _reduction(x: np.ndarray, y: np.ndarray):
    """(kind, what, config) of a step that changes the shape of `x` into `y`, or None."""
    if x.ndim == 4 and y.size == x.size and y.shape[0] == x.shape[0] and y.shape != x.shape:
        if y.ndim == 2 and _close(x.reshape(len(x), -1), y):
            return t.FLATTEN, "flatten", {}
        return t.RESHAPE, "reshape", {}
    if x.ndim != 4 or y.shape[0] != x.shape[0] or y.shape[-1] != x.shape[-1]:
        return None
    if y.ndim == 2 or (y.ndim == 4 and y.shape[1:3] == (1, 1)):
        keep = y.ndim == 4
        if _close(x.mean(axis=(1, 2), keepdims=keep), y):
            return t.GLOBAL_AVG_POOL, "global average pooling", {}
        if _close(x.max(axis=(1, 2), keepdims=keep), y):
            return t.GLOBAL_MAX_POOL, "global max pooling", {}
    if y.ndim == 4:
        for kind, config in _windows(x, y):
            (kernel, _), (stride, _) = config["kernel"], config["stride"]
            what = "max" if kind == t.MAX_POOL else "average"
            return kind, f"{kernel}x{kernel} {what} pooling, stride {stride}", config
    return None


def _classify(x, y) -> list[tuple[str, str, dict]]:
    """(kind, what, config) of the steps that make `y` of `x`, found by their numbers: none
    for the identity, a ReLU, a softmax, pooling, a flatten, or ReLU then one of these."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    relu = [(t.RELU, "ReLU", {"name": "relu"})]
    if x.shape == y.shape:
        if _close(x, y):
            return []
        if _close(np.maximum(x, 0), y):
            return relu
        if x.ndim >= 1 and (
            _close(_softmax(x), y) or _close(np.log(np.maximum(_softmax(x), 1e-300)), y)
        ):
            return [(t.SOFTMAX, "softmax", {})]
    found = _reduction(x, y) if x.shape != y.shape or x.ndim == 4 else None
    if found is not None:
        return [found]
    if x.size and x.min() < 0:
        found = _reduction(np.maximum(x, 0), y)
        if found is not None:
            return [*relu, found]
    return [(t.OTHER, "something else", {"name": "other"})]


_KNOWN_FUNCTIONS = {
    jax.nn.relu: (t.RELU, {"name": "relu"}),
    jax.nn.softmax: (t.SOFTMAX, {}),
    jax.nn.log_softmax: (t.SOFTMAX, {}),
    jax.nn.sigmoid: (t.ACTIVATION, {"name": "sigmoid"}),
    jnp.tanh: (t.ACTIVATION, {"name": "tanh"}),
    jax.nn.gelu: (t.ACTIVATION, {"name": "gelu"}),
}


def _function_name(function) -> str:
    while isinstance(function, functools.partial):
        function = function.func
    name = getattr(function, "__name__", type(function).__name__)
    return "lambda" if name == "<lambda>" else name


def _nchw(shape) -> tuple[int, ...]:
    shape = tuple(int(size) for size in shape)
    return (shape[0], shape[3], shape[1], shape[2]) if len(shape) == 4 else shape


def _pair(value, default=1) -> tuple[int, int]:
    if value is None:
        return (default, default)
    if isinstance(value, int):
        return (value, value)
    value = tuple(int(item) for item in value)
    return (value[0], value[-1]) if value else (default, default)


def _conv_padding(padding, kernel):
    if isinstance(padding, str):
        if padding.upper() == "VALID":
            return ((0, 0), (0, 0))
        return "same"  # SAME, and CIRCULAR or CAUSAL: sized by the kernel, not fixed
    pads = linen.linear.canonicalize_padding(padding, len(kernel))
    return tuple((int(low), int(high)) for low, high in pads[:2])


def _describe(module, kind, x) -> tuple[str, dict]:
    """(detail, config) of a layer module of `kind` that took NHWC `x`."""
    name = type(module).__name__
    nnx_layer = isinstance(module, nnx.Module)
    if kind == t.CONV:
        kernel = _pair(module.kernel_size)
        return name, {
            "out_channels": int(module.out_features if nnx_layer else module.features),
            "kernel": kernel,
            "stride": _pair(module.strides),
            "padding": _conv_padding(module.padding, kernel),
            "dilation": _pair(module.kernel_dilation),
            "groups": int(module.feature_group_count),
            "bias": bool(module.use_bias),
        }
    if kind == t.DENSE:
        units = module.out_features if nnx_layer else module.features
        return name, {"units": int(units), "bias": bool(module.use_bias)}
    if kind == t.DROPOUT:
        return name, {"rate": float(module.rate)}
    return name, {}


class _Recorder:
    """The steps of one forward pass, in order: the layer modules as they run, and what
    happens between them, named by its numbers (only when `numbers`: an abstract pass has
    none, and a run that only wants the parameterised steps' inputs skips the naming)."""

    def __init__(self, x=None, *, numbers=True, steps=True, slots=None, paths=None):
        self.last = x
        self.numbers, self.record = numbers, steps
        self.steps: list[t.Step] = []
        self.slots: list[_Slot] = []
        self.param_shapes: list = []
        self.known = list(slots or [])  # the trace's, whose inputs a run wants
        self.wanted = {slot.location: number for number, slot in enumerate(self.known)}
        self.inputs: dict[int, np.ndarray] = {}
        self.where: list[tuple[str, str]] = [("", "")]  # (path, name) of what runs
        self.paths = paths  # NNX: id(module) -> path
        self.flattened: tuple[int, int, int] | None = None

    # where things run
    def path(self, module) -> str:
        if self.paths is not None:
            return self.paths.get(id(module), "?")
        return ".".join(str(part) for part in module.path)

    def location(self, module):
        return module if self.paths is not None else tuple(module.path)

    @property
    def running(self) -> str | None:
        return self.where[-1][0] if len(self.where) > 1 else None

    def settle(self, value, path: str, name: str) -> None:
        """`value` is what the data is now: what made it of the last value is steps."""
        last, self.last = self.last, value
        if not self.record or last is None or value is last or not hasattr(value, "shape"):
            return
        if not self.numbers or isinstance(value, jax.core.Tracer):
            if tuple(value.shape) != tuple(last.shape):
                self._add(path, t.OTHER, name, {"name": name}, last, value)
            return
        for kind, what, config in _classify(last, value):
            self._add(path, kind, f"{name}: {what}", config, last, value)
            if kind in (t.FLATTEN, t.RESHAPE) and last.ndim == 4 and value.ndim == 2:
                _, height, width, channels = last.shape
                self.flattened = (channels, height, width) if height * width > 1 else None

    def _add(self, path, kind, detail, config, x, y, param=None) -> None:
        self.steps.append(
            t.Step(
                path=path,
                kind=kind,
                detail=detail,
                output_shape=_nchw(y.shape),
                config=config,
                param=param,
                input_shape=_nchw(x.shape),
            )
        )

    # what runs
    def layer(self, module, kind, call, x):
        path = self.path(module)
        self.settle(x, *self.where[-1])
        number = None
        if kind in t.PARAMETERISED:
            location = self.location(module)
            known = [slot.location for slot in self.slots]
            if location in known:
                number = known.index(location)
            else:
                chw = self.flattened if kind == t.DENSE and x.ndim == 2 else None
                self.slots.append(_Slot(location, kind == t.CONV, chw))
                number = len(self.slots) - 1
                self.param_shapes.append(None)
            self.flattened = None
            wanted = self.wanted.get(location)
            if wanted is not None and wanted not in self.inputs:
                self.inputs[wanted] = _canonical_input(self.known[wanted], np.asarray(x))
        self.where.append((path, type(module).__name__))
        y = _not_empty(call(), x)
        self.where.pop()
        if number is not None and self.param_shapes[number] is None:
            self.param_shapes[number] = _kernel_shapes(module, kind)
        if self.record:
            detail, config = _describe(module, kind, x)
            self._add(path, kind, detail, config, x, y, number)
        self.last = y
        return y

    def container(self, module, call):
        path, name = self.path(module), f"{type(module).__name__}.__call__"
        self.where.append((path, name))
        y = _not_empty(call(), self.last)
        self.where.pop()
        self.settle(y, path, name)
        return y

    def function(self, path: str, function, args, kwargs):
        """A function in a Sequential: a step of its own, known or named by its numbers."""
        if len(args) == 1 and not kwargs:
            self.settle(args[0], *self.where[-1])
        name = _function_name(function)
        self.where.append((path, name))
        y = _not_empty(function(*args, **kwargs), args[0] if args else None)
        self.where.pop()
        known = _KNOWN_FUNCTIONS.get(function)
        if known and self.record and hasattr(y, "shape") and self.last is not None:
            kind, config = known
            self._add(path, kind, name, config, self.last, y)
            self.last = y
        else:
            self.settle(y, path, name)
        return y

    def sequential(self, module, args, kwargs, path_of_layer):
        """The Sequential's own loop (Flax's, linen's and NNX's alike), each layer seen."""
        path = self.path(module)
        self.where.append((path, f"{type(module).__name__}.__call__"))
        outputs = None
        for index, layer in enumerate(module.layers):
            if index:  # as Sequential passes a tuple or a dict on
                if isinstance(outputs, tuple):
                    args, kwargs = outputs, {}
                elif isinstance(outputs, dict):
                    args, kwargs = (), outputs
                else:
                    args, kwargs = (outputs,), {}
            if isinstance(layer, (linen.Module, nnx.Module)):
                outputs = layer(*args, **kwargs)
            else:
                outputs = self.function(path_of_layer(path, index), layer, args, kwargs)
        self.where.pop()
        return outputs


def _not_empty(y, x):
    """`y`, unless it is empty where `x` was not: Flax pools a window larger than the map
    into an empty array without a word, and the pass would go on with nothing."""
    if getattr(y, "size", 1) == 0 and getattr(x, "size", 0) > 0:
        raise ValueError(
            f"its output is empty, {_nchw(y.shape)} of {_nchw(x.shape)}: a pooling window "
            "larger than the map?"
        )
    return y


def _kernel_shapes(module, kind):
    """Canonical (weight, bias) shapes of a convolution or dense module, from its kernel."""
    if isinstance(module, nnx.Module):
        kernel = tuple(module.kernel.get_value().shape)
        bias = module.bias.get_value().shape if module.bias is not None else None
    else:
        params = module.variables.get("params", {})
        kernel = tuple(params["kernel"].shape)
        bias = params["bias"].shape if "bias" in params else None
    if kind == t.CONV:  # HWIO -> OIHW
        weight = (kernel[-1], kernel[-2], *kernel[:-2])
    else:
        weight = (kernel[1], kernel[0])
    return tuple(int(size) for size in weight), None if bias is None else tuple(map(int, bias))


def _canonical_input(slot: _Slot, x: np.ndarray) -> np.ndarray:
    """A step's input as the reference has it: NCHW maps, or vectors in (C, H, W) order."""
    if slot.flattened_chw and x.ndim == 2:
        channels, height, width = slot.flattened_chw
        return np.ascontiguousarray(
            x.reshape(len(x), height, width, channels).transpose(0, 3, 1, 2).reshape(len(x), -1)
        )
    return _to_nchw(x)


def _to_nchw(x) -> np.ndarray:
    x = np.asarray(x)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x.copy()


def _to_nhwc(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(images).transpose(0, 2, 3, 1))


# -- running a model in a mode -----------------------------------------------------------------


def _mode_arguments(names, training: bool) -> dict:
    """The mode as arguments, for the parameters or fields among `names`."""
    given = {name: training for name in _TRAINING if name in names}
    given.update({name: not training for name in _DETERMINISTIC if name in names})
    return given


def _call_arguments(function, training: bool) -> dict:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return {}
    return _mode_arguments(parameters, training)


def _layer_arguments(module, kind, kwargs: dict, training: bool, key) -> dict:
    """A Dropout or BatchNorm told the mode, unless it or its caller says it."""
    if kind == t.DROPOUT and "deterministic" not in kwargs:
        if isinstance(module, nnx.Module) or module.deterministic is None:
            kwargs = {**kwargs, "deterministic": not training}
        if isinstance(module, nnx.Module) and training and kwargs.get("rngs") is None:
            kwargs["rngs"] = jax.random.fold_in(key, next(_dropout_keys))
    if kind == t.BATCH_NORM and "use_running_average" not in kwargs:
        if isinstance(module, nnx.Module) or module.use_running_average is None:
            kwargs = {**kwargs, "use_running_average": not training}
    return kwargs


def _linen_interceptor(recorder: _Recorder | None, training: bool, key):
    def intercept(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        kind = _layer_kind(module)
        kwargs = _layer_arguments(module, kind, kwargs, training, key)
        if recorder is None:
            return next_fun(*args, **kwargs)
        if kind is not None and args:
            return recorder.layer(module, kind, lambda: next_fun(*args, **kwargs), args[0])
        if _is_sequential(module):
            return recorder.sequential(
                module, args, kwargs, lambda path, index: _path(path, f"layers_{index}")
            )
        return recorder.container(module, lambda: next_fun(*args, **kwargs))

    return intercept


def _path(*parts) -> str:
    return ".".join(str(part) for part in parts if part != "")


def _linen_mode(module, training: bool):
    """`module` with its mode fields (``training``, ``deterministic``) set to the mode."""
    names = {field.name for field in dataclasses.fields(module)}
    fields = _mode_arguments(names, training)
    return module.clone(**fields) if fields else module


def _linen_forward(module, variables, x, *, training=False, key=None, recorder=None):
    module = _linen_mode(module, training)
    key = key if key is not None else jax.random.PRNGKey(0)
    mutable = [name for name in variables if name not in ("params", "intermediates")]
    with linen.intercept_methods(_linen_interceptor(recorder, training, key)):
        output = module.apply(
            variables,
            x,
            rngs={"dropout": key},
            mutable=mutable or False,
            **_call_arguments(type(module).__call__, training),
        )
    return output[0] if mutable else output


def _abstract_init(module, nhwc_shape, recorder: _Recorder | None = None):
    """The shapes of `module`'s variables for an NHWC input of `nhwc_shape`, from an abstract
    ``init`` (nothing is computed)."""
    module = _linen_mode(module, False)
    rngs = {"params": jax.random.PRNGKey(_SEED), "dropout": jax.random.PRNGKey(_SEED)}

    def init(x):
        with linen.intercept_methods(_linen_interceptor(recorder, False, jax.random.PRNGKey(0))):
            return module.init(rngs, x, **_call_arguments(type(module).__call__, False))

    return jax.eval_shape(init, jax.ShapeDtypeStruct(nhwc_shape, jnp.float32))


def _initial_variables(module, nhwc_shape) -> dict:
    """Variables for `module` at an NHWC input of `nhwc_shape`, drawn from a fixed seed:
    kernels LeCun-normal (Flax's default), scales and variances 1, the rest 0. (Not Flax's own
    ``init``: run for real, it compiles each initializer for each shape, seconds per model.)"""
    shapes = _abstract_init(module, nhwc_shape)
    rng = np.random.default_rng(_SEED)

    def draw(path, leaf):
        name = getattr(path[-1], "key", "")
        shape = tuple(leaf.shape)
        if name in ("kernel", "embedding") and len(shape) >= 2:
            fan_in = int(np.prod(shape[:-1]))
            value = rng.standard_normal(shape) / np.sqrt(max(fan_in, 1))
        elif name in ("scale", "var"):
            value = np.ones(shape)
        else:
            value = np.zeros(shape)
        return jnp.asarray(value, leaf.dtype)

    variables = jax.tree_util.tree_map_with_path(draw, shapes)
    return {name: value for name, value in variables.items() if name != "intermediates"}


def _variables(net) -> dict | None:
    """A linen model's variables: a Network's own, else what the probe holds for it."""
    if isinstance(net, Network):
        params = net.params
        return dict(params) if "params" in params else {"params": params}
    held = _HELD.get(net)
    return held.variables if held is not None else None


def _store(net, variables: dict) -> None:
    """New variables for a linen model: a new pytree, the one the reader holds unchanged."""
    if isinstance(net, Network):
        net.params = variables if "params" in net.params else variables["params"]
    else:
        _HELD.set(net, dataclasses.replace(_HELD.get(net), variables=variables))


def _ensure_variables(net, nchw_shape) -> None:
    """A linen module gets variables for an NCHW input of `nchw_shape` unless it has some for
    its channels already (a bound module: its own)."""
    if isinstance(net, (Network, nnx.Module)):
        return
    batch, channels, height, width = nchw_shape
    shape = (batch, height, width, channels)
    held = _HELD.get(net)
    if held is not None and held.input_shape[-1] == channels:
        return
    if net.scope is not None:
        variables = dict(net.unbind()[1])
        _HELD.set(net, _Held(shape, variables))
        return
    try:
        _HELD.set(net, _Held(shape, _initial_variables(net, shape)))
    except Exception as error:  # the reader's model, at a size it may not take
        _HELD.set(net, _Held(shape, None, error))


@contextlib.contextmanager
def _nnx_mode(net, recorder: _Recorder | None, training: bool, key):
    """Each NNX module class in `net` calls through the recorder (and its Dropout and
    BatchNorm told the mode) while the block runs: NNX has no method interceptors."""
    owners = {}
    for _, node in nnx.iter_graph(net):
        if isinstance(node, nnx.Module):
            cls = next((c for c in type(node).__mro__ if "__call__" in c.__dict__), None)
            if cls is not None and cls is not object:  # (nnx.List has no __call__)
                owners.setdefault(cls, cls.__dict__["__call__"])

    def wrapped(original):
        @functools.wraps(original)
        def call(module, *args, **kwargs):
            kind = _layer_kind(module)
            kwargs = _layer_arguments(module, kind, kwargs, training, key)
            if recorder is None or id(module) not in recorder.paths:
                return original(module, *args, **kwargs)
            if kind is not None and args:
                return recorder.layer(
                    module, kind, lambda: original(module, *args, **kwargs), args[0]
                )
            if _is_sequential(module):
                return recorder.sequential(
                    module, args, kwargs, lambda path, index: _path(path, "layers", index)
                )
            return recorder.container(module, lambda: original(module, *args, **kwargs))

        return call

    for cls, original in owners.items():
        cls.__call__ = wrapped(original)
    try:
        yield
    finally:
        for cls, original in owners.items():
            cls.__call__ = original


def _nnx_paths(net) -> dict[int, str]:
    return {
        id(node): _path(*path) for path, node in nnx.iter_graph(net) if isinstance(node, nnx.Module)
    }


def _forward(net, x, *, training=False, key=None, recorder=None):
    """`net` on NHWC `x` in the mode; every call seen by `recorder` when one is given."""
    key = key if key is not None else jax.random.PRNGKey(0)
    if isinstance(net, nnx.Module):
        with _nnx_mode(net, recorder, training, key):
            return net(x, **_call_arguments(type(net).__call__, training))
    variables = _variables(net)
    if variables is None:
        raise _HELD.get(net).error
    return _linen_forward(_module(net), variables, x, training=training, key=key, recorder=recorder)


# -- the trace -----------------------------------------------------------------------------------


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0][:300]


def _count(tree) -> int:
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree)))


def _new_recorder(net, x, **options) -> _Recorder:
    paths = _nnx_paths(net) if isinstance(net, nnx.Module) else None
    return _Recorder(x, paths=paths, **options)


def trace(net, input_shape: tuple[int, ...]) -> t.ModelTrace:
    """One forward pass (NCHW `input_shape`, run NHWC) in inference mode, of random images:
    what a function does is named by its numbers."""
    _ensure_variables(net, input_shape)
    batch, channels, height, width = input_shape
    x = jax.random.normal(jax.random.PRNGKey(_SEED), (batch, height, width, channels))
    recorder = _new_recorder(net, x)
    error = output_shape = None
    held = _HELD.get(net)
    try:
        if held is not None and held.variables is None:  # it cannot even be initialised
            recorder.numbers = False
            _abstract_init(_module(net), tuple(x.shape), recorder)
            raise held.error
        output = _forward(net, x, recorder=recorder)
        if hasattr(output, "shape"):
            output_shape = _nchw(output.shape)
        else:
            error = f"the model returned a {type(output).__name__}, not an array"
    except Exception as failure:  # the reader's model, at a size it may not take
        error = f"{type(failure).__name__}: {_first_line(failure)}"
    _SLOTS.set(net, recorder.slots)
    if isinstance(net, nnx.Module):
        total = _count(nnx.state(net, nnx.Param))
    elif _variables(net) is not None:
        total = _count(_variables(net).get("params", {}))
    else:
        total = sum(
            int(np.prod(weight)) + (int(np.prod(bias)) if bias else 0)
            for weight, bias in filter(None, recorder.param_shapes)
        )
    return t.ModelTrace(
        framework=framework_of(net),
        model_type=f"{type(net).__module__}.{type(net).__name__}",
        steps=recorder.steps,
        output_shape=output_shape,
        param_shapes=[shapes or ((0,), None) for shapes in recorder.param_shapes],
        total_params=total,
        trainable_params=total,  # JAX differentiates whatever it is given: nothing is frozen
        error=error,
        error_at=recorder.running if error else None,
    )


# -- weights, numbers and gradients --------------------------------------------------------------


def _at(tree, path):
    for part in path:
        tree = tree[part]
    return tree


def _replaced(tree, path, value):
    """`tree` with the subtree at `path` replaced, new containers along the path only."""
    if not path:
        return value
    copy = dict(tree)
    copy[path[0]] = _replaced(tree[path[0]], path[1:], value)
    return copy


def set_weights(net, arrays: list[tuple[np.ndarray, np.ndarray | None]]) -> None:
    """Each parameterised step's canonical (weight, bias), by number (after :func:`trace`)."""
    slots = _SLOTS.get(net)
    if isinstance(net, nnx.Module):
        for slot, (weight, bias) in zip(slots, arrays):
            module = slot.location
            module.kernel.set_value(jnp.asarray(to_channels_last(slot, np.float32(weight))))
            if bias is not None and module.bias is not None:
                module.bias.set_value(jnp.asarray(np.float32(bias)))
        return
    params = _variables(net)["params"]
    for slot, (weight, bias) in zip(slots, arrays):
        layer = dict(_at(params, slot.location))
        layer["kernel"] = jnp.asarray(to_channels_last(slot, np.asarray(weight, np.float32)))
        if bias is not None and "bias" in layer:
            layer["bias"] = jnp.asarray(np.asarray(bias, np.float32))
        params = _replaced(params, slot.location, layer)
    _store(net, {**_variables(net), "params": params})


def run(
    net, images: np.ndarray, *, training: bool = False
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """(output, each parameterised step's input (NCHW)) for NCHW `images`; each run draws new
    dropout masks (none in inference mode, unless a dropout ignores it)."""
    x = jnp.asarray(_to_nhwc(images))
    recorder = _new_recorder(net, x, steps=False, slots=_SLOTS.get(net))
    # A new key on every run, inference included: a dropout that ignores the mode shows.
    key = jax.random.PRNGKey(next(_dropout_keys))
    output = _forward(net, x, training=training, key=key, recorder=recorder)
    return _to_nchw(output), recorder.inputs


def _cross_entropy(logits, labels):
    # (flattened: a model that forgot its flatten still has gradients to compare)
    logits = logits.reshape(len(labels), -1)
    picked = jnp.take_along_axis(
        jax.nn.log_softmax(logits), jnp.asarray(labels.astype(np.int32))[:, None], axis=1
    )
    return -jnp.mean(picked)


def gradients(
    net, images: np.ndarray, labels: np.ndarray
) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
    """The mean cross-entropy's gradient for each parameterised step's (weight, bias), in
    inference mode (dropout off), canonical."""
    x = jnp.asarray(_to_nhwc(images))
    slots = _SLOTS.get(net)
    if isinstance(net, nnx.Module):
        graph, params, rest = nnx.split(net, nnx.Param, ...)

        def nnx_loss(params):
            model = nnx.merge(graph, params, rest)
            with _nnx_mode(model, None, False, None):
                return _cross_entropy(
                    model(x, **_call_arguments(type(model).__call__, False)), labels
                )

        found = nnx.to_pure_dict(jax.grad(nnx_loss)(params))
        paths = {id(slot.location): path for path, slot in _nnx_slot_paths(net, slots)}
        grads = [_at(found, paths[id(slot.location)]) for slot in slots]
    else:
        variables, module = _variables(net), _module(net)

        def loss(params):
            logits = _linen_forward(module, {**variables, "params": params}, x)
            return _cross_entropy(logits, labels)

        found = jax.grad(loss)(variables["params"])
        grads = [_at(found, slot.location) for slot in slots]
    return [
        (
            from_channels_last(slot, np.asarray(grad["kernel"])),
            np.asarray(grad["bias"]) if "bias" in grad else None,
        )
        for slot, grad in zip(slots, grads)
    ]


def _nnx_slot_paths(net, slots):
    nodes = {id(node): path for path, node in nnx.iter_graph(net)}
    return [(nodes[id(slot.location)], slot) for slot in slots]


@contextlib.contextmanager
def preserved(net, input_shape: tuple[int, ...]):
    """Everything the check changes in `net` is put back: an NNX module's state (weights and
    its dropout's RNG), a Network's ``params`` (the probe only ever replaces the pytree), or
    the variables made here for a linen module, forgotten afterwards."""
    notes = []
    if isinstance(net, nnx.Module):
        saved = jax.tree.map(lambda leaf: leaf, nnx.state(net))  # new Variables
    elif isinstance(net, Network):
        saved = net.params
    else:
        saved = _HELD.get(net)
        _ensure_variables(net, input_shape)
        if net.scope is None and saved is None:
            notes.append(
                "an unbound Flax module holds no parameters: the probe made its own for the "
                "input (LeCun-normal kernels from a fixed seed) and forgot them afterwards"
            )
    try:
        yield notes
    finally:
        if isinstance(net, nnx.Module):
            nnx.update(net, saved)
        elif isinstance(net, Network):
            net.params = saved
        elif saved is not None:
            _HELD.set(net, saved)
        else:
            _HELD.pop(net)


def reference(spec):
    """The project's own model of `spec` in JAX, for the gradient check."""
    from .model import build_nin

    return build_nin(spec)


def reset() -> None:
    """Undo what a reader's file may have switched on globally: 64-bit floats."""
    jax.config.update("jax_enable_x64", _X64)
