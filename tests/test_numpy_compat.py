"""MXNet 1.9.1 under NumPy 2 (nin_mxnet/_numpy_compat.py): the names NumPy removed are put
back before ``import mxnet``, only those, and nothing NumPy has is replaced.

Each check runs in a fresh process, where nothing has imported MXNet or the compatibility
module yet.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.backends import is_installed

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.skipif(not is_installed("mxnet"), reason="mxnet is not installed")


def _fresh(code: str) -> dict:
    """Run `code` in a fresh interpreter at the project root; it prints one JSON line."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_pinned_numpy_is_numpy_2():
    """The point of the compatibility module: the environment's NumPy is 2.x."""
    assert int(np.__version__.split(".")[0]) >= 2


def test_a_fresh_process_imports_nin_mxnet_and_trains_a_step():
    found = _fresh(
        "import json, numpy as np, nin_mxnet as nin\n"
        "net = nin.build_nin(seed=0)\n"
        "trainer = nin.Trainer(net)\n"
        "images = np.random.default_rng(0).standard_normal((4, 1, 67, 67)).astype('float32')\n"
        "loss, _ = trainer.train_step(images, np.arange(4))\n"
        "import mxnet\n"
        "print(json.dumps({'numpy': np.__version__, 'mxnet': mxnet.__version__,"
        " 'loss': float(loss)}))"
    )
    assert found["numpy"] == np.__version__ and found["mxnet"] == "1.9.1"
    assert np.isfinite(found["loss"])


def test_restored_names_are_exactly_the_missing_ones_and_nothing_else_changes():
    found = _fresh(
        "import json, types, warnings, numpy as np\n"
        "warnings.simplefilter('ignore')\n"
        "before = dict(vars(np))\n"
        # The module's file alone: importing it from the package would run nin_mxnet first.
        "import importlib.util as u\n"
        "spec = u.spec_from_file_location('compat', 'nin_mxnet/_numpy_compat.py')\n"
        "compat = u.module_from_spec(spec); spec.loader.exec_module(compat)\n"
        "missing = [n for n in compat.REMOVED if not hasattr(np, n)]\n"
        "import nin_mxnet\n"
        "after = vars(np)\n"
        "print(json.dumps({\n"
        "  'missing': missing,\n"
        # (less NumPy's submodules, which importing MXNet loads: numpy.random, ...)
        "  'added': sorted(n for n in set(after) - set(before)\n"
        "                  if not isinstance(after[n], types.ModuleType)),\n"
        "  'replaced': sorted(n for n in before if after.get(n) is not before[n]),\n"
        "  'again': compat.missing_names(),\n"
        "}))"
    )
    # Checked against NumPy itself: what the module adds is what this NumPy lacks, no more.
    assert found["missing"], "NumPy 2 lacks MXNet's names: nothing would be tested"
    assert found["added"] == sorted(found["missing"])
    assert found["replaced"] == []  # every name NumPy had is the object it was
    assert found["again"] == []  # idempotent


def test_names_numpy_still_has_are_never_set(monkeypatch):
    """A name this NumPy has (np.bool is back in NumPy 2, as numpy.bool_) keeps NumPy's
    object even though MXNet's NumPy 1.x meant the builtin by it."""
    from nin_mxnet import _numpy_compat as compat

    assert hasattr(np, "bool") and "bool" not in compat.missing_names()
    assert np.bool is np.bool_
    monkeypatch.delattr(np, "bool")  # undone after the test
    assert "bool" in compat.missing_names()


def test_restored_names_mean_what_numpy_1_meant():
    from nin_mxnet import _numpy_compat as compat

    meant = {name: make() for name, make in compat.REMOVED.items()}
    assert meant["int"] is int and meant["float_"] is np.float64
    assert meant["NINF"] == -np.inf and np.signbit(meant["NZERO"]) and meant["PZERO"] == 0
    assert meant["product"] is np.prod and meant["alltrue"] is np.all
    np.testing.assert_array_equal(meant["msort"](np.array([[3, 1], [1, 2]])), [[1, 1], [3, 2]])
    with pytest.raises(RuntimeError, match="numpy_financial"):
        meant["npv"](0.1, [1, 2])


def test_the_readme_states_the_pinned_versions():
    """README, "The versions": each version it names is constraints.txt's pin."""
    pins = dict(
        line.split("==")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### The versions") :]
    section = section[: section.index("\n#")]
    # (distribution, the name the README gives it)
    stated = [
        ("numpy", "NumPy"),
        ("torch", "PyTorch"),
        ("tensorflow-cpu", "TensorFlow"),
        ("keras", "Keras"),
        ("jax", "JAX"),
        ("flax", "Flax"),
        ("optax", "optax"),
        ("onnx", "onnx"),
        ("onnxruntime", "onnxruntime"),
        ("tf2onnx", "tf2onnx"),
        ("mxnet", "MXNet"),
    ]
    for package, name in stated:
        assert f"{name} {pins[package]}" in " ".join(section.split()), (package, pins[package])


def test_make_setup_installs_the_registrys_no_deps_packages():
    """The Makefile's `--no-deps` install names exactly the registry's `no_deps` packages, the
    ones whose metadata forbids today's NumPy (the "not installed" message names the same)."""
    from common.backends import BACKENDS

    wanted = sorted(package for info in BACKENDS.values() for package in info.no_deps)
    lines = [line for line in (ROOT / "Makefile").read_text().splitlines() if "pip install" in line]
    no_deps = [line for line in lines if "--no-deps" in line]
    assert len(no_deps) == 1, no_deps
    assert sorted(no_deps[0].split("constraints.txt", 1)[1].split()) == wanted
