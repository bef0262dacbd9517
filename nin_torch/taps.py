"""Taps on a Trainer's own training step, for tests that measure what a step does rather than
what the model's configuration says: every dropout layer's input and output.

Each backend package has this module with the same function; tests reach it through the
registry (``common.backends.load_backend_module(name, "taps")``).

Backend layer.
"""

from __future__ import annotations

import contextlib

from torch import nn


@contextlib.contextmanager
def dropout_taps(trainer):
    """While open, each call of a dropout layer in `trainer`'s network (the trainer's steps
    included) appends ``(layer name, input, output)`` as NumPy arrays to the list it yields.

    PyTorch's forward hooks fire inside the step's own forward pass, so nothing else changes.
    """
    records: list = []

    def record(name):
        def hook(module, inputs, output):
            # Copies: on the CPU .numpy() shares the tensor's memory, which a later in-place
            # operation could change.
            pair = [tensor.detach().cpu().numpy().copy() for tensor in (inputs[0], output)]
            records.append((name, *pair))

        return hook

    handles = [
        module.register_forward_hook(record(name))
        for name, module in trainer.net.named_modules()
        if isinstance(module, nn.Dropout)
    ]
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()
