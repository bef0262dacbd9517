"""docs/nin.ipynb, the tour for a student, runs from top to bottom in every backend (with tiny
limits), so it can never rot."""

from __future__ import annotations

from pathlib import Path

from common.backends import BACKENDS

from .conftest import get_backend
from .processes import WHOLE_RUN_STARTUPS, bound

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "nin.ipynb"
TINY = f"""BACKENDS = {list(BACKENDS)!r}
SIZE = 67
TRAIN_LIMIT = 256
TEST_LIMIT = 128
EPOCHS = 1"""


def test_notebook_runs_from_top_to_bottom(fashion_mnist, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    for name in BACKENDS:
        get_backend(name)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    parameters = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1
    parameters[0].source = TINY
    NotebookClient(
        notebook,
        timeout=int(bound(None, WHOLE_RUN_STARTUPS)),  # per cell, whole seconds
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    text = "\n".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )
    assert f"parameters: { {name: 1992166 for name in BACKENDS} }" in text
    assert text.count("test accuracy") == 2 * len(BACKENDS)  # each trained, each scored by another
    assert "it differs from the book's NiN: my_net.8, AdaptiveMaxPool2d: global max pooling" in text
    assert "max |spatial mean - logit|" in text  # the class maps' cell
    assert text.count("largest difference from") == len(BACKENDS)
    images = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]
    assert images, "the training curves should be shown"
    assert list(tmp_path.iterdir()) == [], "the notebook must not write into its folder"
