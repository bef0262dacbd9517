"""Each backend's layer shapes and parameter counts beside :mod:`common.shapes`' arithmetic.

Tools layer.
"""

from __future__ import annotations

from .. import shapes
from ..backends import load_backend
from ..spec import Spec


def shape_rows(spec: Spec, input_shape: tuple[int, ...], backends: list[str]) -> list[list]:
    """Rows of layer name, analytic shape and each backend's shape, plus whether all agree."""
    columns = [shapes.layer_shapes(spec, input_shape)]
    for name in backends:
        backend = load_backend(name)
        columns.append(backend.layer_shapes(backend.build_nin(spec), input_shape))
    rows = []
    for index, reference in enumerate(columns[0]):
        values = [
            column[index].output_shape if index < len(column) else "missing" for column in columns
        ]
        names = {column[index].name for column in columns if index < len(column)}
        rows.append([reference.name, *values, len(set(values)) == 1 and len(names) == 1])
    return rows


def param_rows(spec: Spec, backends: list[str]) -> list[list]:
    """Rows of layer name, analytic parameter count and each backend's, plus whether all agree."""
    analytic = shapes.layer_params(spec)
    counts = []
    for name in backends:
        backend = load_backend(name)
        counts.append(backend.params_by_layer(backend.build_nin(spec)))
    rows = []
    for layer in analytic:
        values = [layer.total] + [count.get(layer.name, "missing") for count in counts]
        rows.append([layer.name, *values, len(set(values)) == 1])
    totals = [sum(layer.total for layer in analytic)] + [sum(count.values()) for count in counts]
    rows.append(["total", *totals, len(set(totals)) == 1])
    return rows
