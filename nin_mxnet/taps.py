"""Taps on a Trainer's own training step, for tests that measure what a step does rather than
what the model's configuration says: every dropout layer's input and output.

Each backend package has this module with the same function; tests reach it through the
registry (``common.backends.load_backend_module(name, "taps")``).

Backend layer.
"""

from __future__ import annotations

import contextlib
import warnings

import mxnet as mx
from mxnet.base import NDArrayHandle
from mxnet.gluon import HybridBlock, nn

# The flags of a hybridized block that plan its graph's memory once.
_STATIC = ("static_alloc", "static_shape")


def _blocks(block, prefix: str = "") -> list[tuple[str, object]]:
    """(path, block) for `block` and every block under it, depth first."""
    found = [(prefix, block)]
    for name, child in block._children.items():
        found += _blocks(child, f"{prefix}.{name}" if prefix else name)
    return found


@contextlib.contextmanager
def dropout_taps(trainer):
    """While open, each call of a dropout layer in `trainer`'s network (the trainer's steps
    included) appends ``(layer name, input, output)`` as NumPy arrays to the list it yields.

    A hybridized net runs its layers inside one cached graph, where Gluon's forward hooks never
    fire; the graph's op hook sees each operator's inputs and outputs there instead. That hook
    misses most operators of a graph planned with ``static_alloc`` (measured: MXNet 1.9.1 saw
    the first convolution and the flatten only, and it warns that the hook "may not work
    correctly" there), so while the taps are open the graph is rebuilt without the static
    plan: the same operators, dropout's among them, in the same order. An un-hybridized net
    (the book's path) gets forward hooks.
    """
    net, records = trainer.net, []
    hybrid = [block for _, block in _blocks(net) if isinstance(block, HybridBlock)]
    flags = [(block, list(block._flags)) for block in hybrid]
    handles = []
    if net._active:
        inputs = {}

        def op_hook(name, operator, handle):
            # Names are bytes: "<layer>_fwd_data" is an operator's input, "<layer>_fwd_output"
            # its output ("<layer>_fwd_mask" dropout's mask, not recorded).
            if operator.decode() != "Dropout":
                return
            layer, _, role = name.decode().rpartition("_")
            array = mx.nd.NDArray(NDArrayHandle(handle), writable=False).asnumpy().copy()
            if role == "data":
                inputs[layer] = array
            elif role == "output":
                records.append((layer.removesuffix("_fwd"), inputs.pop(layer), array))

        for block in hybrid:
            block._flags = [(key, False if key in _STATIC else on) for key, on in block._flags]
            block._clear_cached_op()
        net.register_op_hook(op_hook, monitor_all=True)
    else:
        for name, block in _blocks(net):
            if isinstance(block, nn.Dropout):
                handles.append(
                    block.register_forward_hook(
                        lambda block, inputs, output, name=name: records.append(
                            (name, inputs[0].asnumpy().copy(), output.asnumpy().copy())
                        )
                    )
                )
    try:
        with warnings.catch_warnings():
            # Gluon warns that the hook is "experimental when static_alloc=True" whenever a
            # block has flags at all: it tests the (name, value) pairs, not the values.
            warnings.filterwarnings("ignore", "register_op_hook is experimental")
            yield records
    finally:
        for handle in handles:
            handle.detach()
        for block, original in flags:
            block._callback, block._monitor_all = None, False
            block._flags = original
            block._clear_cached_op()  # the next step plans its graph as before, without the hook
