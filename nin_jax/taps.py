"""Taps on a Trainer's own training step, for tests that measure what a step does rather than
what the model's configuration says: every dropout layer's input and output.

Each backend package has this module with the same function; tests reach it through the
registry (``common.backends.load_backend_module(name, "taps")``).

Backend layer.
"""

from __future__ import annotations

import contextlib
import importlib

import jax
import numpy as np
from flax import linen as nn

# The module, not the package's attribute: nin_jax.train is common.api's train function there.
_train = importlib.import_module("nin_jax.train")


@contextlib.contextmanager
def dropout_taps(trainer):
    """While open, each call of a dropout layer in `trainer`'s network (the trainer's steps
    included) appends ``(layer name, input, output)`` as NumPy arrays to the list it yields.

    Flax's method interceptor sees every module call while a step is traced, and a
    ``jax.debug.callback`` there hands the values out of the compiled step as it runs. The
    step's gradient function is compiled once per model and batch shape, so its cache is
    cleared on opening (the step is traced again, with the taps) and on closing (no later step
    runs the callbacks).
    """
    records: list = []

    def record(name, inputs, outputs):
        records.append((name, np.array(inputs), np.array(outputs)))

    def intercept(next_fun, args, kwargs, context):
        outputs = next_fun(*args, **kwargs)
        module = context.module
        if isinstance(module, nn.Dropout) and context.method_name == "__call__":
            name = "/".join(module.path) if module.path else module.name
            jax.debug.callback(lambda x, y, name=name: record(name, x, y), args[0], outputs)
        return outputs

    _train.compiled_gradients.clear_cache()
    try:
        with nn.intercept_methods(intercept):
            yield records
        jax.effects_barrier()  # every callback of the steps taken has run
    finally:
        _train.compiled_gradients.clear_cache()
