"""A reader's PyTorch model, seen from outside: what ``nin check`` asks of PyTorch.

Every call of a torch function during a forward pass is recorded with a ``TorchFunctionMode``,
so a functional ``F.relu`` or ``torch.flatten`` inside a subclassed ``forward`` is seen as
well as an ``nn.ReLU``; forward hooks say which module each call ran in. Parameterised steps
are ``conv2d`` and ``linear`` calls, numbered by the weight tensor they use (first use first).

Backend layer.
"""

from __future__ import annotations

import contextlib
import weakref

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from common import trace as t
from common.backends import framework_of

from .model import use_intra_op_threads

# Calls recorded, by kind. F.max_pool2d and F.adaptive_max_pool2d are boolean_dispatch
# wrappers: only their identity tells them apart.
_CONV = {torch.conv2d, F.conv2d}
_LINEAR = {F.linear}
_RELU = {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}
_ACTIVATIONS = {
    F.sigmoid: "sigmoid",
    torch.sigmoid: "sigmoid",
    torch.Tensor.sigmoid: "sigmoid",
    F.tanh: "tanh",
    torch.tanh: "tanh",
    torch.Tensor.tanh: "tanh",
    F.leaky_relu: "leaky_relu",
    F.gelu: "gelu",
    F.elu: "elu",
    F.silu: "silu",
    F.relu6: "relu6",
    F.hardtanh: "hardtanh",
}
_SOFTMAX = {
    F.softmax,
    F.log_softmax,
    torch.softmax,
    torch.log_softmax,
    torch.Tensor.softmax,
    torch.Tensor.log_softmax,
}
_MAX_POOL = {F.max_pool2d}
_AVG_POOL = {F.avg_pool2d}
_ADAPTIVE = {F.adaptive_avg_pool2d: t.GLOBAL_AVG_POOL, F.adaptive_max_pool2d: t.GLOBAL_MAX_POOL}
_MEAN = {torch.mean, torch.Tensor.mean}
_MAX = {torch.amax, torch.Tensor.amax}
_DROPOUT = {F.dropout, F.dropout2d, F.alpha_dropout, F.feature_alpha_dropout}
_FLATTEN = {torch.flatten, torch.Tensor.flatten}
_RESHAPE = {
    torch.reshape,
    torch.Tensor.reshape,
    torch.Tensor.view,
    torch.squeeze,
    torch.Tensor.squeeze,
}
_BATCH_NORM = {F.batch_norm}
_PAD = {F.pad}
# The module classes that are one of the layers above, so the step is named after them.
_LAYER_MODULES = (
    nn.Conv2d,
    nn.Linear,
    nn.ReLU,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Dropout,
    nn.Flatten,
    nn.Unflatten,
    nn.BatchNorm2d,
    nn.Softmax,
    nn.LogSoftmax,
    nn.Sigmoid,
    nn.Tanh,
    nn.LeakyReLU,
    nn.GELU,
    nn.ELU,
    nn.ReLU6,
    nn.ZeroPad2d,
)


def is_model(obj) -> bool:
    return isinstance(obj, nn.Module)


def parameterised_layers(net) -> int:
    """How many convolution and dense modules `net` holds (lazy ones included)."""
    return sum(isinstance(module, (nn.Conv2d, nn.Linear)) for module in net.modules())


def contains(outer, inner) -> bool:
    return outer is not inner and any(module is inner for module in outer.modules())


# -- recording a forward pass --------------------------------------------------------------------


def _argument(args, kwargs, index: int, name: str, default=None):
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


def _pair(value) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return (int(value[0]), int(value[-1]))
    return (int(value), int(value))


def _padding(value):
    if isinstance(value, str):
        return "same" if value == "same" else ((0, 0), (0, 0))
    rows, columns = _pair(value)
    return ((rows, rows), (columns, columns))


def _dims(args, kwargs) -> set[int]:
    dims = _argument(args, kwargs, 1, "dim")
    if dims is None:
        return set()
    dims = dims if isinstance(dims, (tuple, list)) else (dims,)
    return {int(dim) % 4 for dim in dims}


def _describe(func, args, kwargs, result) -> tuple[str, dict] | None:
    """(kind, config) of a recorded call, or None for calls that are not layers."""
    if func in _CONV:
        weight, bias = args[1], _argument(args, kwargs, 2, "bias")
        return t.CONV, {
            "out_channels": int(weight.shape[0]),
            "kernel": tuple(weight.shape[2:]),
            "stride": _pair(_argument(args, kwargs, 3, "stride", 1)),
            "padding": _padding(_argument(args, kwargs, 4, "padding", 0)),
            "dilation": _pair(_argument(args, kwargs, 5, "dilation", 1)),
            "groups": int(_argument(args, kwargs, 6, "groups", 1)),
            "bias": bias is not None,
        }
    if func in _LINEAR:
        return t.DENSE, {
            "units": int(args[1].shape[0]),
            "bias": _argument(args, kwargs, 2, "bias") is not None,
        }
    if func in _RELU:
        return t.RELU, {}
    if func in _ACTIVATIONS:
        return t.ACTIVATION, {"name": _ACTIVATIONS[func]}
    if func in _SOFTMAX:
        return t.SOFTMAX, {}
    if func in _MAX_POOL or func in _AVG_POOL:
        kernel = _pair(_argument(args, kwargs, 1, "kernel_size"))
        stride = _argument(args, kwargs, 2, "stride")
        return (
            t.MAX_POOL if func in _MAX_POOL else t.AVG_POOL,
            {
                "kernel": kernel,
                "stride": _pair(stride) if stride else kernel,
                "padding": _padding(_argument(args, kwargs, 3, "padding", 0)),
            },
        )
    if func in _ADAPTIVE:
        size = _argument(args, kwargs, 1, "output_size")
        if _pair(size) == (1, 1):
            return _ADAPTIVE[func], {}
        return t.OTHER, {"name": f"adaptive pooling to {size}"}
    if func in _MEAN or func in _MAX:
        if _dims(args, kwargs) == {2, 3}:
            return t.GLOBAL_AVG_POOL if func in _MEAN else t.GLOBAL_MAX_POOL, {}
        return None
    if func in _DROPOUT:
        return t.DROPOUT, {"rate": float(_argument(args, kwargs, 1, "p", 0.5))}
    if func in _FLATTEN:
        return t.FLATTEN, {}
    if func in _RESHAPE:
        return t.RESHAPE, {}
    if func in _BATCH_NORM:
        return t.BATCH_NORM, {}
    if func in _PAD:
        return t.PADDING, {}
    if (
        isinstance(result, torch.Tensor)
        and isinstance(args[0], torch.Tensor)
        and result.shape != args[0].shape
        and getattr(func, "__name__", "") != "__getitem__"
    ):
        return t.OTHER, {"name": getattr(func, "__name__", str(func))}
    return None


# boolean_dispatch wrappers are all named "fn"
_NAMES = {F.max_pool2d: "max_pool2d", F.adaptive_max_pool2d: "adaptive_max_pool2d"}


def _function_name(func) -> str:
    """How the reader wrote the call: F.relu, torch.flatten or x.mean."""
    name = _NAMES.get(func) or getattr(func, "__name__", repr(func))
    module = getattr(func, "__module__", None) or ""
    if getattr(func, "__qualname__", "").startswith(("TensorBase.", "Tensor.")):
        return f"x.{name}"
    if func in _NAMES or module.startswith(("torch.nn.functional", "torch._C._nn")):
        return f"F.{name}"
    return f"torch.{name}"


class _Recorder(TorchFunctionMode):
    """Records the layer-like calls on the activations of one forward pass.

    Only calls whose first argument is an activation (the input, or the result of a recorded
    call) count: what lazy modules do to their own weights is not a step.
    """

    def __init__(self, net: nn.Module, on_step=None, on_param_input=None):
        super().__init__()
        self.paths = {module: name for name, module in net.named_modules()}
        self.stack: list[nn.Module] = []
        self.activations: set[int] = set()
        self.steps: list[t.Step] = []
        self.weights: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        self.on_param_input = on_param_input
        self.handles = []
        for module in self.paths:
            self.handles.append(module.register_forward_pre_hook(self._enter))
            self.handles.append(module.register_forward_hook(self._leave))

    def _enter(self, module, inputs):
        self.stack.append(module)

    def _leave(self, module, inputs, output):
        if self.stack and self.stack[-1] is module:
            self.stack.pop()

    def track(self, tensor: torch.Tensor) -> None:
        self.activations.add(id(tensor))

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()

    def where(self) -> str:
        return self.paths[self.stack[-1]] if self.stack else ""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        first = args[0] if args else None
        watched = isinstance(first, torch.Tensor) and id(first) in self.activations
        if watched and func in _CONV | _LINEAR and self.on_param_input is not None:
            self.on_param_input(
                self._param_number(args[1], _argument(args, kwargs, 2, "bias")), first
            )
        try:
            result = func(*args, **kwargs)
        except Exception:
            if watched:  # the step that failed is shown, without an output
                self._record(func, args, kwargs, first, None)
            raise
        if not watched:
            return result
        for tensor in result if isinstance(result, (tuple, list)) else (result,):
            if isinstance(tensor, torch.Tensor):
                self.activations.add(id(tensor))
        if isinstance(result, torch.Tensor):
            self._record(func, args, kwargs, first, result)
        return result

    def _record(self, func, args, kwargs, first, result) -> None:
        described = _describe(func, args, kwargs, result)
        if described is None:
            return
        kind, config = described
        module = self.stack[-1] if self.stack else None
        own_layer = isinstance(module, _LAYER_MODULES)
        param = (
            self._param_number(args[1], _argument(args, kwargs, 2, "bias"))
            if kind in t.PARAMETERISED
            else None
        )
        self.steps.append(
            t.Step(
                path=self.where(),
                kind=kind,
                detail=type(module).__name__ if own_layer else f"{_function_name(func)} in forward",
                output_shape=tuple(result.shape) if result is not None else (),
                config=config,
                param=param,
                input_shape=tuple(first.shape),
            )
        )

    def _param_number(self, weight, bias) -> int:
        for number, (known, _) in enumerate(self.weights):
            if known is weight:
                return number
        self.weights.append((weight, bias))
        return len(self.weights) - 1


_WEIGHTS: weakref.WeakKeyDictionary[nn.Module, list] = weakref.WeakKeyDictionary()


def _forward(net: nn.Module, images: torch.Tensor, **recorder_options):
    recorder = _Recorder(net, **recorder_options)
    recorder.track(images)
    try:
        with recorder:
            return net(images)
    finally:
        recorder.close()


def trace(net: nn.Module, input_shape: tuple[int, ...]) -> t.ModelTrace:
    """One forward pass of zeros (NCHW) in inference mode, every step recorded."""
    use_intra_op_threads()
    net.eval()
    images = torch.zeros(input_shape, device=_device(net))
    recorder = _Recorder(net)
    recorder.track(images)
    error = error_at = output_shape = None
    try:
        with torch.no_grad(), recorder:
            output = net(images)
        if isinstance(output, torch.Tensor):
            output_shape = tuple(output.shape)
        else:
            error = f"the model returned a {type(output).__name__}, not a tensor"
    except Exception as failure:  # the reader's model, at a size it may not take
        error_at = recorder.where()
        error = f"{type(failure).__name__}: {_first_line(failure)}"
    finally:
        recorder.close()
    _WEIGHTS[net] = recorder.weights
    parameters = list(net.parameters())
    return t.ModelTrace(
        framework=framework_of(net),
        model_type=f"{type(net).__module__}.{type(net).__name__}",
        steps=recorder.steps,
        output_shape=output_shape,
        param_shapes=[
            (tuple(weight.shape), tuple(bias.shape) if bias is not None else None)
            for weight, bias in recorder.weights
        ],
        total_params=sum(p.numel() for p in parameters if not _uninitialized(p)),
        trainable_params=sum(
            p.numel() for p in parameters if p.requires_grad and not _uninitialized(p)
        ),
        error=error,
        error_at=error_at,
        frozen=[
            step.path
            for step in recorder.steps
            if step.param is not None and not recorder.weights[step.param][0].requires_grad
        ],
    )


def _uninitialized(parameter) -> bool:
    return isinstance(parameter, nn.parameter.UninitializedParameter)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0][:300]


def _device(net: nn.Module) -> torch.device:
    parameter = next(net.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


# -- weights, numbers and gradients --------------------------------------------------------------


def set_weights(net: nn.Module, arrays: list[tuple[np.ndarray, np.ndarray | None]]) -> None:
    """Each parameterised step's canonical (weight, bias), by number (after :func:`trace`)."""
    with torch.no_grad():
        for (weight, bias), (new_weight, new_bias) in zip(_WEIGHTS[net], arrays):
            weight.copy_(torch.from_numpy(np.asarray(new_weight, np.float32)))
            if bias is not None and new_bias is not None:
                bias.copy_(torch.from_numpy(np.asarray(new_bias, np.float32)))


def run(
    net: nn.Module, images: np.ndarray, *, training: bool = False
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """(output, each parameterised step's input (NCHW)) for NCHW `images`."""
    use_intra_op_threads()
    net.train(training)
    inputs: dict[int, np.ndarray] = {}

    def keep(number, tensor):
        inputs.setdefault(number, tensor.detach().cpu().numpy().copy())

    with torch.no_grad():
        output = _forward(net, torch.from_numpy(images).to(_device(net)), on_param_input=keep)
    return output.detach().cpu().numpy().copy(), inputs


def gradients(
    net: nn.Module, images: np.ndarray, labels: np.ndarray
) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
    """The mean cross-entropy's gradient for each parameterised step's (weight, bias), in
    inference mode (dropout off); None where a parameter gets none (frozen, or cut off)."""
    use_intra_op_threads()
    net.eval()
    pairs = _WEIGHTS[net]
    wanted = [
        tensor for pair in pairs for tensor in pair if tensor is not None and tensor.requires_grad
    ]
    logits = net(torch.from_numpy(images).to(_device(net)))
    # (flattened: a model that forgot its flatten still has gradients to compare)
    loss = F.cross_entropy(
        logits.reshape(len(logits), -1), torch.from_numpy(labels).to(logits.device)
    )
    found = dict(zip(map(id, wanted), torch.autograd.grad(loss, wanted, allow_unused=True)))

    def grad(tensor):
        value = found.get(id(tensor)) if tensor is not None else None
        return None if value is None else value.detach().cpu().numpy().copy()

    return [(grad(weight), grad(bias)) for weight, bias in pairs]


@contextlib.contextmanager
def preserved(net: nn.Module, input_shape: tuple[int, ...]):
    """Everything the check changes in `net` (weights, training mode) is put back. Lazy
    modules are initialised first, with an NCHW `input_shape`, so their own initial weights
    are what is put back."""
    training = net.training
    with torch.no_grad():
        try:
            net.eval()(torch.zeros(input_shape, device=_device(net)))
        except Exception:  # a model that cannot run at this size: the trace reports it
            pass
    saved = {
        name: value.detach().clone()
        for name, value in net.state_dict().items()
        if not _uninitialized(value)
    }
    try:
        yield []
    finally:
        with torch.no_grad():
            net.load_state_dict(saved, strict=False)
        net.train(training)


def reference(spec):
    """The project's own model of `spec` in PyTorch, for the gradient check."""
    from .model import build_nin

    return build_nin(spec)


def reset() -> None:
    """Undo what a reader's file may have switched on globally: nothing in PyTorch that a
    NiN file touches."""
