"""A reader's Gluon model, seen from outside: what ``nin check`` asks of MXNet.

Gluon's forward hooks see blocks, so the model is run un-hybridized while it is probed (a
hybridized block runs its children inside one cached graph, where their hooks never fire) and
put back as it was afterwards. A ``Conv2D(activation='relu')`` runs its ReLU as a child block,
so it reports a convolution and a ReLU, in that order. Models written for MXNet's NumPy
interface (``npx.set_np()``) get ``mx.np`` arrays, the others ``mx.nd`` ones: each model is
run in the interface its parameters were made in.

Backend layer.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.gluon import nn

from common import trace as t
from common.backends import framework_of

from .model import _context

# Layer blocks that are one step (or two, with their activation) even though Conv2D and Dense
# hold their activation as a child block.
_LAYERS = (
    nn.Conv2D,
    nn.Dense,
    nn.Activation,
    nn.MaxPool2D,
    nn.AvgPool2D,
    nn.GlobalAvgPool2D,
    nn.GlobalMaxPool2D,
    nn.Dropout,
    nn.Flatten,
    nn.BatchNorm,
)


def is_model(obj) -> bool:
    return isinstance(obj, gluon.Block)


def _blocks(net) -> list[tuple[str, gluon.Block]]:
    """(path, block) for every block under `net`, depth first."""
    found = []

    def walk(block, prefix):
        for name, child in block._children.items():
            path = f"{prefix}.{name}" if prefix else name
            found.append((path, child))
            walk(child, path)

    walk(net, "")
    return found


def parameterised_layers(net) -> int:
    own = isinstance(net, (nn.Conv2D, nn.Dense))
    return own + sum(isinstance(block, (nn.Conv2D, nn.Dense)) for _, block in _blocks(net))


def contains(outer, inner) -> bool:
    return outer is not inner and any(block is inner for _, block in _blocks(outer))


def _layers(net) -> list[tuple[str, gluon.Block]]:
    """The layer blocks (and unknown blocks without children) a step is recorded for."""
    found = [("", net)] if isinstance(net, _LAYERS) or not net._children else []
    return found + [
        (path, block)
        for path, block in _blocks(net)
        if isinstance(block, _LAYERS) or not block._children
    ]


def _numpy_interface(net) -> bool:
    """Whether `net`'s parameters were made under ``npx.set_np()`` (mx.np arrays)."""
    for parameter in net.collect_params().values():
        data = parameter._data
        if data:
            return isinstance(data[0], mx.np.ndarray)
    return mx.util.is_np_array()


@contextlib.contextmanager
def _interface(net):
    """Run `net` in the array interface its parameters were made in."""
    with _numpy(_numpy_interface(net)) as array:
        yield array


@contextlib.contextmanager
def _numpy(active: bool):
    # NumPy array semantics need NumPy shape semantics: on in that order, off in the other.
    first, second = (
        (mx.util.np_shape, mx.util.np_array) if active else (mx.util.np_array, mx.util.np_shape)
    )
    with first(active), second(active):
        yield mx.np.array if active else mx.nd.array


def _pair(value) -> tuple[int, int]:
    return (
        (int(value[0]), int(value[-1]))
        if isinstance(value, (tuple, list))
        else (int(value), int(value))
    )


def _describe(block) -> list[tuple[str, str, dict]]:
    name = type(block).__name__
    if isinstance(block, nn.Conv2D):
        kwargs = block._kwargs
        pad = _pair(kwargs["pad"])
        return [
            (
                t.CONV,
                name,
                {
                    "out_channels": int(kwargs["num_filter"]),
                    "kernel": _pair(kwargs["kernel"]),
                    "stride": _pair(kwargs["stride"]),
                    "padding": ((pad[0], pad[0]), (pad[1], pad[1])),
                    "dilation": _pair(kwargs["dilate"]),
                    "groups": int(kwargs["num_group"]),
                    "bias": not kwargs["no_bias"],
                },
            )
        ]
    if isinstance(block, nn.Dense):
        return [(t.DENSE, name, {"units": int(block._units), "bias": block.bias is not None})]
    if isinstance(block, nn.Activation):
        kind = block._act_type
        return [
            (
                t.RELU if kind == "relu" else t.SOFTMAX if kind == "softmax" else t.ACTIVATION,
                f"Activation({kind!r})",
                {"name": kind},
            )
        ]
    if isinstance(block, (nn.MaxPool2D, nn.AvgPool2D, nn.GlobalAvgPool2D, nn.GlobalMaxPool2D)):
        kwargs = block._kwargs
        average = kwargs["pool_type"] == "avg"
        if kwargs["global_pool"]:
            return [(t.GLOBAL_AVG_POOL if average else t.GLOBAL_MAX_POOL, name, {})]
        pad = _pair(kwargs["pad"])
        return [
            (
                t.AVG_POOL if average else t.MAX_POOL,
                name,
                {
                    "kernel": _pair(kwargs["kernel"]),
                    "stride": _pair(kwargs["stride"]),
                    "padding": ((pad[0], pad[0]), (pad[1], pad[1])),
                },
            )
        ]
    if isinstance(block, nn.Dropout):
        return [(t.DROPOUT, name, {"rate": float(block._rate)})]
    if isinstance(block, nn.Flatten):
        return [(t.FLATTEN, name, {})]
    if isinstance(block, nn.BatchNorm):
        return [(t.BATCH_NORM, name, {})]
    return [(t.OTHER, name, {"name": name})]


@contextlib.contextmanager
def _hooked(net, on_enter, on_leave=None):
    """`on_enter(path, block, inputs)` before and `on_leave(path, block, output)` after each
    layer block runs, with `net` un-hybridized (hooks do not fire inside a cached graph)."""
    hybrid = [
        block for _, block in [("", net), *_blocks(net)] if isinstance(block, gluon.HybridBlock)
    ]
    active = [(block, block._active) for block in hybrid]
    for block in hybrid:
        block._active = False
        block._clear_cached_op()
    handles = []
    for path, block in _layers(net):
        handles.append(
            block.register_forward_pre_hook(
                lambda block, inputs, path=path: on_enter(path, block, inputs[0])
            )
        )
        if on_leave is not None:
            handles.append(
                block.register_forward_hook(
                    lambda block, inputs, output, path=path: on_leave(path, block, output)
                )
            )
    try:
        yield
    finally:
        for handle in handles:
            handle.detach()
        for block, was_active in active:
            block._active = was_active
            block._clear_cached_op()


_WEIGHTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def trace(net, input_shape: tuple[int, ...]) -> t.ModelTrace:
    """One forward pass of zeros (NCHW) in inference mode, every layer block recorded."""
    steps: list[t.Step] = []
    pending: dict[int, list[t.Step]] = {}
    numbered: list = []
    running: list[str] = []

    def enter(path, block, inputs):
        running.append(path)
        made = []
        for index, (kind, detail, config) in enumerate(_describe(block)):
            param = None
            if index == 0 and kind in t.PARAMETERISED:
                if not any(known is block for known in numbered):
                    numbered.append(block)
                param = next(number for number, known in enumerate(numbered) if known is block)
            made.append(
                t.Step(
                    path=path,
                    kind=kind,
                    detail=detail,
                    output_shape=(),
                    config=config,
                    param=param,
                    input_shape=tuple(inputs.shape),
                )
            )
        steps.extend(made)
        pending[id(block)] = made

    def leave(path, block, output):
        running.pop()
        for step in pending.pop(id(block), []):
            step.output_shape = tuple(output.shape)

    error = error_at = output_shape = None
    with _interface(net) as array, _hooked(net, enter, leave):
        try:
            with autograd.predict_mode():
                output = net(array(np.zeros(input_shape, np.float32), ctx=_context(net)))
            output_shape = tuple(output.shape)
        except Exception as failure:  # the reader's model, at a size it may not take
            error_at = running[-1] if running else None
            error = f"{type(failure).__name__}: {_first_line(failure)}"
    _WEIGHTS[net] = numbered
    parameters = [
        parameter
        for parameter in net.collect_params().values()
        if parameter.shape and all(parameter.shape)
    ]
    return t.ModelTrace(
        framework=framework_of(net),
        model_type=f"{type(net).__module__}.{type(net).__name__}",
        steps=steps,
        output_shape=output_shape,
        param_shapes=[
            (tuple(block.weight.shape), tuple(block.bias.shape) if block.bias is not None else None)
            for block in numbered
        ],
        total_params=int(sum(np.prod(parameter.shape) for parameter in parameters)),
        trainable_params=int(
            sum(
                np.prod(parameter.shape) for parameter in parameters if parameter.grad_req != "null"
            )
        ),
        error=error,
        error_at=error_at,
        frozen=[
            step.path
            for step in steps
            if step.param is not None and numbered[step.param].weight.grad_req == "null"
        ],
    )


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    # MXNet's C++ errors start with a location line and a stack trace; the message follows.
    message = next(
        (line for line in lines if "Check failed" in line or "Error" in line),
        lines[0] if lines else "",
    )
    return message[:300]


# -- weights, numbers and gradients --------------------------------------------------------------


def set_weights(net, arrays: list[tuple[np.ndarray, np.ndarray | None]]) -> None:
    """Each parameterised step's canonical (weight, bias), by number (after :func:`trace`)."""
    with _interface(net) as array:
        for block, (weight, bias) in zip(_WEIGHTS[net], arrays):
            block.weight.set_data(array(np.asarray(weight, np.float32)))
            if block.bias is not None and bias is not None:
                block.bias.set_data(array(np.asarray(bias, np.float32)))


def run(
    net, images: np.ndarray, *, training: bool = False
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """(output, each parameterised step's input (NCHW)) for NCHW `images`."""
    numbers = {id(block): index for index, block in enumerate(_WEIGHTS[net])}
    inputs: dict[int, np.ndarray] = {}

    def enter(path, block, given):
        if id(block) in numbers:
            inputs.setdefault(numbers[id(block)], given.asnumpy())

    mode = autograd.train_mode() if training else autograd.predict_mode()
    with _interface(net) as array, _hooked(net, enter), mode:
        output = net(array(images, ctx=_context(net)))
    return output.asnumpy(), inputs


def gradients(
    net, images: np.ndarray, labels: np.ndarray
) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
    """The mean cross-entropy's gradient for each parameterised step's (weight, bias), with
    dropout off; None where a parameter gets none (``grad_req='null'``).

    In training mode with every Dropout block's rate set to 0, not in inference mode: after a
    forward pass in inference mode (``autograd.record(train_mode=False)``) MXNet 1.9's oneDNN
    max pooling back-propagates to the wrong inputs (a 3x3/2 pool over a 7x7 map passes back a
    gradient summing to 6 or 10 instead of 18; right with MXNET_MKLDNN_ENABLED=0).
    """
    loss_function = gluon.loss.SoftmaxCrossEntropyLoss()
    with _interface(net) as array, _without_dropout(net):
        ctx = _context(net)
        with autograd.record(train_mode=True):
            logits = net(array(images, ctx=ctx))
            loss = loss_function(
                logits.reshape((len(images), -1)), array(labels.astype(np.float32), ctx=ctx)
            ).mean()
        loss.backward()

        def grad(parameter):
            if parameter is None or parameter.grad_req == "null":
                return None
            return parameter.grad(ctx).asnumpy()

        return [(grad(block.weight), grad(block.bias)) for block in _WEIGHTS[net]]


@contextlib.contextmanager
def _without_dropout(net):
    dropouts = [block for _, block in [("", net), *_blocks(net)] if isinstance(block, nn.Dropout)]
    rates = [block._rate for block in dropouts]
    for block in dropouts:
        block._rate = 0.0
    try:
        yield
    finally:
        for block, rate in zip(dropouts, rates):
            block._rate = rate


@contextlib.contextmanager
def preserved(net, input_shape: tuple[int, ...]):
    """Everything the check changes in `net` (parameters, gradients, hybridization) is put
    back. Parameters never initialized are initialized first (Gluon's default initializer),
    so that the model can run at all."""
    with _interface(net) as array:
        parameters = list(net.collect_params().values())
        uninitialized = [
            parameter
            for parameter in parameters
            if parameter._data is None and not parameter._deferred_init
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for parameter in uninitialized:
                parameter.initialize(ctx=mx.cpu())
        try:  # deferred initialization: one pass gives every parameter its shape
            with autograd.predict_mode():
                net(array(np.zeros(input_shape, np.float32), ctx=_context(net)))
        except Exception:  # a model that cannot run at this size: the trace reports it
            pass
        saved = []
        for parameter in parameters:
            try:
                data = parameter.data().asnumpy()
            except Exception:  # still without a shape
                continue
            grad = parameter.grad().asnumpy() if parameter.grad_req != "null" else None
            saved.append((parameter, data, grad))
    notes = (
        [
            f"{len(uninitialized)} parameter(s) had not been initialized "
            "(net.initialize() was never called): Gluon's default initializer was used"
        ]
        if uninitialized
        else []
    )
    try:
        yield notes
    finally:
        with _interface(net) as array:
            for parameter, data, grad in saved:
                parameter.set_data(array(data))
                if grad is not None:
                    parameter.grad()[:] = array(grad)


def reference(spec):
    """The project's own model of `spec` in Gluon, for the gradient check (in the classic
    NDArray interface, whatever the reader's file switched on)."""
    from .model import build_nin

    with _numpy(False):
        return build_nin(spec)


def reset() -> None:
    """Undo what a reader's file may have switched on globally: MXNet's NumPy interface
    (``npx.set_np()``)."""
    mx.npx.reset_np()
