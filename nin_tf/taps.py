"""Taps on a Trainer's own training step, for tests that measure what a step does rather than
what the model's configuration says: every dropout layer's input and output.

Each backend package has this module with the same function; tests reach it through the
registry (``common.backends.load_backend_module(name, "taps")``).

Backend layer.
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf


def _dropout_layers(layer, prefix: str = "") -> list[tuple[str, keras.layers.Layer]]:
    path = f"{prefix}/{layer.name}" if prefix else layer.name
    if isinstance(layer, keras.layers.Dropout):
        return [(path, layer)]
    children = getattr(layer, "layers", [])
    return [found for child in children for found in _dropout_layers(child, path)]


@contextlib.contextmanager
def dropout_taps(trainer):
    """While open, each call of a dropout layer in `trainer`'s network (the trainer's steps
    included) appends ``(layer name, input, output)`` as NumPy arrays to the list it yields,
    after each step.

    The step is a ``tf.function`` traced at its first call, so the taps must be opened before
    it: each dropout layer's ``call`` is wrapped to assign its input and output to variables
    (of any shape) inside the traced graph, and a wrapper of the trainer's ``train_step``
    reads them after each step. A step traced with the taps keeps assigning to them after
    they are closed (two copies of a small activation per step): tap a trainer made for it.
    """
    if trainer._compiled_step.experimental_get_tracing_count():
        raise ValueError("open the taps before the trainer's first step: it is traced by then")
    records: list = []
    layers = _dropout_layers(trainer.net)
    slots = []
    for name, layer in layers:
        seen = [tf.Variable(0, trainable=False)]  # calls since the last read
        stored = [
            tf.Variable(tf.zeros([0]), shape=tf.TensorShape(None), trainable=False)
            for _ in ("input", "output")
        ]

        def call(inputs, *args, _original=layer.call, _stored=stored, _seen=seen, **kwargs):
            outputs = _original(inputs, *args, **kwargs)
            _stored[0].assign(inputs)
            _stored[1].assign(outputs)
            _seen[0].assign_add(1)
            return outputs

        # Past Keras's attribute tracking, as nin_tf.probe wraps layers.
        object.__setattr__(layer, "call", call)
        slots.append((name, seen[0], stored))
    step = trainer.train_step

    def train_step(images, labels):
        result = step(images, labels)
        for name, seen, (inputs, outputs) in slots:
            if int(seen.numpy()):
                records.append((name, inputs.numpy(), outputs.numpy()))
                seen.assign(0)
        return result

    trainer.train_step = train_step
    try:
        yield records
    finally:
        del trainer.train_step
        for _, layer in layers:
            if "call" in vars(layer):
                object.__delattr__(layer, "call")
