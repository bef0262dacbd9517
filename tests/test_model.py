"""Every backend builds the same NiN: shapes, parameter counts and input checks."""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest

from common import shapes
from common.backends import BACKENDS, load_backend_module
from common.spec import make_spec

from .conftest import FRAMEWORK_MODULES, run_python

ROOT = pathlib.Path(__file__).resolve().parents[1]

BOOK_SHAPES_224 = [
    ("nin_block_1", (1, 96, 54, 54)),
    ("max_pool_1", (1, 96, 26, 26)),
    ("nin_block_2", (1, 256, 26, 26)),
    ("max_pool_2", (1, 256, 12, 12)),
    ("nin_block_3", (1, 384, 12, 12)),
    ("max_pool_3", (1, 384, 5, 5)),
    ("dropout", (1, 384, 5, 5)),
    ("nin_block_4", (1, 10, 5, 5)),
    ("global_avg_pool", (1, 10, 1, 1)),
    ("flatten", (1, 10)),
]

VARIANTS = [{}, {"in_channels": 3}, {"num_1x1": 1}, {"num_classes": 100}, {"num_1x1": 0}]


@pytest.fixture(scope="module")
def default_net(backend):
    return backend.build_nin()


def test_shapes_at_224_match_the_book(backend, default_net):
    result = backend.layer_shapes(default_net, (1, 1, 224, 224))
    assert [(layer.name, layer.output_shape) for layer in result] == BOOK_SHAPES_224


@pytest.mark.parametrize(
    "input_shape",
    [(1, 1, 67, 67), (1, 1, 96, 96), (2, 1, 227, 227), (3, 1, 80, 123), (4, 1, 101, 68)],
)
def test_shapes_match_common_arithmetic(backend, default_net, input_shape):
    expected = shapes.layer_shapes(default_net.spec, input_shape)
    assert backend.layer_shapes(default_net, input_shape) == expected


@pytest.mark.parametrize(
    "options", VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default"
)
def test_parameter_counts_match_analytic_total_and_per_layer(backend, options):
    net = backend.build_nin(**options)
    spec = make_spec("nin", **options)
    assert backend.count_params(net) == shapes.count_params(spec)
    assert backend.params_by_layer(net) == {
        layer.name: layer.total for layer in shapes.layer_params(spec)
    }
    odd = (2, spec.in_channels, 75, 91)
    assert backend.layer_shapes(net, odd) == shapes.layer_shapes(spec, odd)


def test_default_parameter_count_is_1992166(backend, default_net):
    assert backend.count_params(default_net) == 1_992_166


def test_alexnet_builds_with_the_analytic_counts(backend):
    net = backend.build_nin("alexnet")
    assert backend.count_params(net) == 46_764_746
    assert backend.params_by_layer(net) == {
        layer.name: layer.total for layer in shapes.layer_params(net.spec)
    }
    assert backend.layer_shapes(net, (1, 1, 224, 224)) == shapes.layer_shapes(
        net.spec, (1, 1, 224, 224)
    )


def test_nin_block_infers_input_channels(backend):
    block = backend.nin_block(16, 3, 1, 1)
    for channels in (1, 5):
        # nin check's probe runs any model of its framework on an NCHW input (initializing
        # what Gluon leaves to the user)
        probe = load_backend_module(backend.BACKEND, "probe")
        with probe.preserved(block, (1, channels, 8, 8)):
            trace = probe.trace(block, (1, channels, 8, 8))
        assert trace.error is None, trace.error
        assert trace.output_shape == (1, 16, 8, 8)
        assert trace.param_shapes[0] == ((16, channels, 3, 3), (16,))
        block = backend.nin_block(16, 3, 1, 1)  # a fresh block infers again


def test_predict_logits_returns_numpy_logits(backend, default_net):
    images = np.random.default_rng(0).random((3, 1, 70, 70), dtype=np.float32)
    logits = backend.predict_logits(default_net, images)
    assert isinstance(logits, np.ndarray) and logits.shape == (3, 10) and logits.dtype == np.float32
    # inference mode: dropout is off, so predictions are repeatable
    np.testing.assert_array_equal(logits, backend.predict_logits(default_net, images))


def test_same_seed_same_function_across_backends(backend, default_net):
    """Initial weights are drawn once, in common, so seed s is one function everywhere."""
    from common.weights import init_weights

    arrays = backend.get_weights(default_net)
    for key, value in init_weights(default_net.spec, seed=0).items():
        np.testing.assert_array_equal(arrays[key], value)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((1, 1, 66, 66), "at least 67x67"),
        ((1, 1, 66, 200), "at least 67x67"),
        ((1, 3, 96, 96), "1 input channel"),
        ((1, 96, 96), "4-D"),
        ((96, 96), "4-D"),
        ((0, 1, 96, 96), "at least one image"),
    ],
)
def test_bad_input_fails_clearly_before_the_framework(backend, default_net, shape, message):
    with pytest.raises(ValueError, match=message):
        backend.predict_logits(default_net, np.zeros(shape, np.float32))
    if len(shape) == 4:
        with pytest.raises(ValueError, match=message):
            backend.layer_shapes(default_net, shape)


def test_alexnet_takes_only_its_input_size(backend):
    net = backend.build_nin("alexnet")
    with pytest.raises(ValueError, match="exactly 224x224"):
        backend.predict_logits(net, np.zeros((1, 1, 96, 96), np.float32))


def test_unknown_spec_option_is_a_clear_error(backend):
    with pytest.raises(ValueError, match="unknown option"):
        backend.build_nin(num_blocks=3)


def test_backends_export_the_same_public_names():
    packages = [ROOT / info.package for info in BACKENDS.values()]
    modules = [sorted(path.name for path in package.glob("*.py")) for package in packages]
    assert all(names == modules[0] for names in modules), modules
    for package in packages:  # read, not imported: no framework needed
        tree = ast.parse((package / "__init__.py").read_text())
        exported = next(
            node.value
            for node in tree.body
            if isinstance(node, ast.Assign) and node.targets[0].id == "__all__"
        )
        assert ast.unparse(exported) == "api.PUBLIC_API", package  # one list, in common.api


FRAMEWORKS = FRAMEWORK_MODULES


def _imported_modules(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_common_imports_no_framework():
    paths = list((ROOT / "common").rglob("*.py"))
    assert ROOT / "common" / "cli" / "training.py" in paths  # subpackages are searched too
    for path in paths:
        assert not _imported_modules(path) & FRAMEWORKS, path
    code = (
        "import sys, importlib, pkgutil, common\n"
        "for m in pkgutil.walk_packages(common.__path__, 'common.'):\n"
        "    m.name.endswith('__main__') or importlib.import_module(m.name)\n"
        f"print(sorted(set({sorted(FRAMEWORKS)!r}) & set(sys.modules)))"
    )
    assert run_python(code).strip() == "[]"


def test_backend_packages_never_import_each_other():
    packages = {info.package for info in BACKENDS.values()}
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            assert not _imported_modules(path) & (packages - {package}), path
