"""Every backend builds the same NiN: shapes, parameter counts and input checks."""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest

from common import shapes
from common.backends import BACKENDS, load_backend_module
from common.spec import make_spec

from .conftest import FRAMEWORK_MODULES, get_backend, run_python

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
    """The same module names in every backend, as Keras 3's; a private module (MXNet's
    _numpy_compat) is one framework's own quirk."""
    packages = [ROOT / info.package for info in BACKENDS.values()]
    modules = [
        sorted(path.name for path in package.glob("*.py") if not path.name.startswith("_"))
        for package in packages
    ]
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


# -- the spec and its arithmetic, without a framework --------------------------------------------
# The backends' tables above are checked against common.shapes; these check common.shapes and
# common.spec themselves against the book and against arithmetic done here by hand.


def _nin_params(widths, num_1x1, classes=10, in_channels=1, bias=True):
    """NiN's parameters by hand: per block a k x k convolution and num_1x1 1x1 convolutions."""
    total, channels = 0, in_channels
    for width, kernel in zip((*widths, classes), (11, 5, 3, 3)):
        total += width * channels * kernel * kernel + num_1x1 * width * width
        total += (1 + num_1x1) * width * bias
        channels = width
    return total


def test_the_arithmetic_gives_the_books_shapes_and_parameters():
    spec = make_spec("nin")
    result = shapes.layer_shapes(spec, (1, 1, 224, 224))
    assert [(layer.name, layer.output_shape) for layer in result] == BOOK_SHAPES_224
    assert _nin_params((96, 256, 384), 2) == shapes.count_params(spec) == 1_992_166
    assert shapes.count_params(spec, bias=False) == _nin_params((96, 256, 384), 2, bias=False)
    assert shapes.count_params(spec, bias=False) == 1_992_166 - 3 * (96 + 256 + 384 + 10)
    per_layer = shapes.layer_params(spec)
    assert [layer.name for layer in per_layer] == [name for name, _ in BOOK_SHAPES_224]
    assert per_layer[0] == shapes.LayerParams("nin_block_1", 96 * 121 + 2 * 96 * 96, 3 * 96)
    assert per_layer[0].total == 96 * 121 + 2 * 96 * 96 + 3 * 96
    assert all(layer.total == 0 for layer in per_layer if not layer.name.startswith("nin_block"))
    # AlexNet (d2l 7.1) at 224: 256 x 5 x 5 = 6400 features reach the first dense layer
    alexnet = make_spec("alexnet")
    assert shapes.layer_shapes(alexnet, (2, 1, 224, 224))[7].output_shape == (2, 256, 5, 5)
    assert shapes.layer_shapes(alexnet, (2, 1, 224, 224))[8].output_shape == (2, 6400)
    dense = {layer.name: layer for layer in shapes.layer_params(alexnet)}
    assert dense["dense_1"] == shapes.LayerParams("dense_1", 6400 * 4096, 4096)
    assert dense["dense_3"] == shapes.LayerParams("dense_3", 4096 * 10, 10)
    assert shapes.count_params(alexnet) == 46_764_746


def test_conv_output_size_is_the_floor_formula():
    assert shapes.conv_output_size(224, 11, 4) == 54  # (224 - 11) // 4 + 1
    assert shapes.conv_output_size(26, 5, 1, 2) == 26  # padding 2 keeps a 5x5's size
    assert shapes.conv_output_size(54, 3, 2) == 26
    assert shapes.conv_output_size(10, 3) == 8


def test_the_smallest_input_is_67_pixels_for_the_books_nin():
    """By hand: the third pool needs >= 3 pixels, so the second >= 7, the first >= 15, and
    the 11x11 stride-4 convolution (s - 11) // 4 + 1 >= 15, i.e. s >= 67."""
    spec = make_spec("nin")
    assert shapes.min_input_size(spec) == 67
    assert shapes.min_input_size(make_spec("nin", num_1x1=0, input_size=96)) == 67
    assert shapes.layer_shapes(spec, (1, 1, 67, 67))[5].output_shape == (1, 384, 1, 1)
    shapes.check_input_shape(spec, (1, 1, 67, 67))
    shapes.check_input_shape(spec, (5, 1, 67, 500))
    for shape in ((1, 1, 66, 66), (1, 1, 66, 500), (1, 1, 500, 66)):
        with pytest.raises(ValueError, match="nin needs images of at least 67x67 pixels"):
            shapes.check_input_shape(spec, shape)


def test_every_convolution_inside_a_block_must_keep_a_pixel():
    """A 5x5 convolution without padding needs 5 pixels, even when the block's next
    convolution pads its output back up."""
    from common.spec import Conv, ConvBlock, Flatten, GlobalAvgPool, MaxPool, Spec

    block = ConvBlock((Conv(2, 5), Conv(2, 1, padding=2)))
    spec = Spec("padded", 1, 2, (block, GlobalAvgPool(), Flatten()), 32)
    assert shapes.conv_shapes(block, (1, 1, 4, 4)) == [(1, 2, 0, 0), (1, 2, 4, 4)]
    assert shapes.min_input_size(spec) == 5
    pooled = Spec("pooled", 1, 2, (ConvBlock((Conv(2, 1),)), MaxPool(4, 4), Flatten()), 32)
    assert shapes.min_input_size(pooled) == 4
    assert shapes.layer_shapes(pooled, (1, 1, 4, 9)) == [
        shapes.LayerShape("nin_block", (1, 2, 4, 9)),
        shapes.LayerShape("max_pool", (1, 2, 1, 2)),
        shapes.LayerShape("flatten", (1, 4)),
    ]


def test_an_input_fits_exactly_when_every_layer_and_convolution_keeps_a_pixel():
    """The predicate min_input_size searches with, asked directly: min_input_size is cached
    (mutmut forks its mutants from a process whose cache is already full), and a predicate
    that never says yes would make its search run forever instead of failing."""
    from common.spec import Conv, ConvBlock, Flatten, GlobalAvgPool, MaxPool, Spec

    nin = make_spec("nin")
    # at 67 the third pool and the class block's convolutions leave exactly 1x1
    assert shapes._fits(nin, 67, 67) and shapes._fits(nin, 67, 500)
    for height, width in ((66, 66), (66, 500), (500, 66), (10, 10)):
        assert not shapes._fits(nin, height, width)
    # a convolution that loses every pixel fails even when the next one pads back up
    padded = Spec("padded", 1, 2, (ConvBlock((Conv(2, 5), Conv(2, 1, padding=2))),), 32)
    assert shapes._fits(padded, 5, 5)
    for height, width in ((4, 4), (4, 9), (9, 4)):
        assert not shapes._fits(padded, height, width)
    # a pool that loses every pixel fails even when nothing after it would notice
    pooled = Spec("pooled", 1, 2, (MaxPool(4, 4), GlobalAvgPool(), Flatten()), 32)
    assert shapes._fits(pooled, 4, 4)
    for height, width in ((3, 3), (3, 9), (9, 3)):
        assert not shapes._fits(pooled, height, width)


def test_a_layer_the_arithmetic_does_not_know_is_a_type_error_that_names_it():
    from common.spec import Conv, Spec

    bare = Spec("bare", 1, 2, (Conv(2, 3),), 8)  # a Conv outside any ConvBlock
    with pytest.raises(
        TypeError, match=r"^unknown layer Conv\(out_channels=2, kernel_size=3, stride=1, "
    ):
        shapes.check_input_shape(bare, (1, 1, 8, 8))


@pytest.mark.parametrize(
    "shape, message",
    [
        ((1, 96, 96), "expected a 4-D NCHW batch [(]N, 1, H, W[)], got a 3-D array"),
        ((1, 1, 1, 96, 96), "got a 5-D array of shape [(]1, 1, 1, 96, 96[)]"),
        ((0, 1, 96, 96), "expected at least one image, got shape [(]0, 1, 96, 96[)]"),
        ((2, 3, 96, 96), "expected 1 input channel[(]s[)] [(]NCHW[)], got 3 in shape"),
        ((2, 0, 96, 96), "got 0 in shape"),
    ],
)
def test_check_input_shape_says_what_is_wrong(shape, message):
    with pytest.raises(ValueError, match=message):
        shapes.check_input_shape(make_spec("nin"), shape)


def test_a_network_with_a_dense_layer_takes_only_its_own_size():
    alexnet = make_spec("alexnet")
    assert alexnet.fixed_input_size and not make_spec("nin").fixed_input_size
    shapes.check_input_shape(alexnet, (3, 1, 224, 224))
    for height, width in ((96, 96), (224, 96), (96, 224), (448, 448)):
        with pytest.raises(ValueError, match=f"exactly 224x224 images, got {height}x{width}"):
            shapes.check_input_shape(alexnet, (1, 1, height, width))
    small = make_spec("alexnet", input_size=100)
    with pytest.raises(ValueError, match="exactly 100x100"):
        shapes.check_input_shape(small, (1, 1, 224, 224))


def test_as_input_batch_takes_numbers_and_gives_contiguous_float32():
    spec = make_spec("nin")
    for dtype in (np.uint8, np.int64, np.float16, np.float64):
        images = np.ones((2, 70, 1, 70), dtype).transpose(0, 2, 1, 3)  # not contiguous
        batch = shapes.as_input_batch(spec, images)
        assert (
            batch.dtype == np.float32 and batch.flags.c_contiguous and batch.shape == (2, 1, 70, 70)
        )
        assert (batch == 1).all()
    for bad in (
        np.ones((1, 1, 70, 70), bool),
        np.full((1, 1, 70, 70), "a"),
        np.ones((1, 1, 70, 70), complex),
    ):
        with pytest.raises(
            ValueError, match=f"expected a numeric image array, got dtype {bad.dtype}"
        ):
            shapes.as_input_batch(spec, bad)
    with pytest.raises(ValueError, match="at least 67x67"):
        shapes.as_input_batch(spec, [[[[0.0] * 10] * 10]])


def test_check_layer_name_lists_the_layers():
    spec = make_spec("nin", num_1x1=1)
    for name in spec.layer_names():
        shapes.check_layer_name(spec, name)
    with pytest.raises(
        ValueError,
        match=r"nin\(num_1x1=1\) has no layer 'conv_1'; its layers are nin_block_1, max_pool_1, "
        r"nin_block_2, .*, global_avg_pool, flatten$",
    ):
        shapes.check_layer_name(spec, "conv_1")


def test_the_books_nin_layer_by_layer():
    from common.spec import Conv, ConvBlock, Dropout, Flatten, GlobalAvgPool, MaxPool

    def block(width, kernel, stride, padding, last_relu=True):
        return ConvBlock(
            (Conv(width, kernel, stride, padding), Conv(width, 1), Conv(width, 1, relu=last_relu))
        )

    pool = MaxPool(3, 2)
    book = (
        block(96, 11, 4, 0), pool, block(256, 5, 1, 2), pool, block(384, 3, 1, 1), pool,
        Dropout(0.5), block(10, 3, 1, 1), GlobalAvgPool(), Flatten(),
    )  # fmt: skip
    spec = make_spec("nin")
    assert spec.layers == book
    assert (spec.name, spec.in_channels, spec.num_classes, spec.input_size) == ("nin", 1, 10, 224)
    linear = make_spec("nin", final_relu=False)
    assert linear.layers == (*book[:7], block(10, 3, 1, 1, last_relu=False), *book[8:])
    wider = make_spec(
        "nin", in_channels=3, num_classes=7, dropout=0.2, head_width=64, input_size=96
    )
    assert [layer.convs[0] for layer in wider.layers if isinstance(layer, ConvBlock)] == [
        Conv(96, 11, 4, 0), Conv(256, 5, 1, 2), Conv(384, 3, 1, 1), Conv(64, 3, 1, 1),
        Conv(7, 3, 1, 1),
    ]  # fmt: skip
    assert wider.layers[6] == Dropout(0.2) and (wider.in_channels, wider.input_size) == (3, 96)
    assert wider.layer_names()[7:9] == ["nin_block_4", "nin_block_5"]
    assert make_spec("nin", num_1x1=0).layers[0] == ConvBlock((Conv(96, 11, 4, 0),))
    assert len(make_spec("nin", num_1x1=3).layers[0].convs) == 4
    assert len(make_spec("nin", num_1x1=15).layers[0].convs) == 16  # the most a block holds
    assert make_spec("nin", widths=[8, 16, 32]).options["widths"] == (8, 16, 32)


def test_a_nin_block_is_a_spatial_convolution_then_two_1x1_unless_told_otherwise():
    from common.spec import Conv, nin_block_convs

    assert nin_block_convs(96, 11, 4, 0) == (Conv(96, 11, 4, 0), Conv(96, 1), Conv(96, 1))
    assert nin_block_convs(8, 3, 1, 1, 1) == (Conv(8, 3, 1, 1), Conv(8, 1))


def test_the_linear_head_unrelus_the_class_blocks_last_convolution_at_any_depth():
    from common.spec import Conv

    def class_block(num_1x1):
        return make_spec("nin", num_1x1=num_1x1, final_relu=False).layers[7].convs

    # with no 1x1 convolutions the last one is the spatial one
    assert class_block(0) == (Conv(10, 3, 1, 1, relu=False),)
    assert class_block(1) == (Conv(10, 3, 1, 1), Conv(10, 1, relu=False))
    assert class_block(3) == (
        Conv(10, 3, 1, 1), Conv(10, 1), Conv(10, 1), Conv(10, 1, relu=False),
    )  # fmt: skip


@pytest.mark.parametrize("num_1x1", [0, 1, 3])
def test_the_gradual_heads_block_is_as_deep_as_the_others(num_1x1):
    from common.spec import ConvBlock, nin_block_convs

    spec = make_spec("nin", num_1x1=num_1x1, head_width=64)
    blocks = [layer for layer in spec.layers if isinstance(layer, ConvBlock)]
    assert [len(block.convs) for block in blocks] == [1 + num_1x1] * 5
    assert blocks[3].convs == nin_block_convs(64, 3, 1, 1, num_1x1)


def test_the_books_alexnet_layer_by_layer():
    """d2l 7.1's Fashion-MNIST AlexNet: five convolutions, three pools, three dense layers."""
    from common.spec import Conv, ConvBlock, Dense, Dropout, Flatten, MaxPool

    def conv(*args):
        return ConvBlock((Conv(*args),), kind="conv")

    pool = MaxPool(3, 2)
    spec = make_spec("alexnet", dropout=0.3, num_classes=4, in_channels=2)
    assert spec.layers == (
        conv(96, 11, 4, 1), pool, conv(256, 5, 1, 2), pool, conv(384, 3, 1, 1),
        conv(384, 3, 1, 1), conv(256, 3, 1, 1), pool, Flatten(), Dense(4096), Dropout(0.3),
        Dense(4096), Dropout(0.3), Dense(4, relu=False),
    )  # fmt: skip
    assert (spec.name, spec.in_channels, spec.num_classes, spec.input_size) == (
        "alexnet",
        2,
        4,
        224,
    )
    assert spec.layer_names() == [
        "conv_1", "max_pool_1", "conv_2", "max_pool_2", "conv_3", "conv_4", "conv_5",
        "max_pool_3", "flatten", "dense_1", "dropout_1", "dense_2", "dropout_2", "dense_3",
    ]  # fmt: skip
    assert make_spec("alexnet").layers[10] == Dropout(0.5)
    assert spec.describe() == "alexnet(in_channels=2, num_classes=4, dropout=0.3)"


@pytest.mark.parametrize(
    "name, widths, num_1x1",
    [("nin-s", (64, 192, 256), 1), ("nin-m", (96, 256, 384), 2), ("nin-l", (128, 384, 512), 3)],
)
def test_the_family_grows_width_and_depth_together(name, widths, num_1x1):
    """Exercise 5: NiN-S/M/L; NiN-M is the book's network under another name."""
    from common.spec import SPECS, ConvBlock

    spec = make_spec(name)
    assert spec.name == name and spec.describe() == name
    blocks = [layer for layer in spec.layers if isinstance(layer, ConvBlock)]
    assert [block.convs[0].out_channels for block in blocks] == [*widths, 10]
    assert {len(block.convs) for block in blocks} == {1 + num_1x1}
    assert shapes.count_params(spec) == _nin_params(widths, num_1x1)
    assert "widths" not in spec.options and "num_1x1" not in spec.options
    assert spec.options == {
        "in_channels": 1, "num_classes": 10, "dropout": 0.5, "final_relu": True,
        "head_width": 0, "input_size": 224,
    }  # fmt: skip
    factory = SPECS[name]
    assert factory.__name__ == name.replace("-", "_") + "_spec"
    assert f"{name.upper()}: NiN with feature blocks of {widths} channels" in factory.__doc__
    assert f"{num_1x1} 1x1 convolution(s) per block" in factory.__doc__
    custom = make_spec(
        name, in_channels=3, num_classes=5, dropout=0.1, final_relu=False, head_width=32,
        input_size=96,
    )  # fmt: skip
    assert (custom.in_channels, custom.num_classes, custom.input_size) == (3, 5, 96)
    assert custom.layers[6].rate == 0.1
    custom_blocks = [layer for layer in custom.layers if isinstance(layer, ConvBlock)]
    assert [block.convs[0].out_channels for block in custom_blocks] == [*widths, 32, 5]
    assert custom_blocks[-1].convs[-1].relu is False and custom_blocks[-2].convs[-1].relu
    assert custom.describe() == (
        f"{name}(in_channels=3, num_classes=5, dropout=0.1, final_relu=False, head_width=32, "
        "input_size=96)"
    )
    assert make_spec(custom) is custom
    assert make_spec(custom, dropout=0.5).describe() == custom.describe().replace(
        "dropout=0.1, ", ""
    )
    with pytest.raises(ValueError, match=f"unknown option[(]s[)] num_1x1 for {name}; allowed: in_"):
        make_spec(name, num_1x1=1)


def test_names_are_unique_and_numbered_only_when_repeated():
    from common.spec import Spec

    spec = make_spec("nin")
    assert spec.layer_names() == [name for name, _ in BOOK_SHAPES_224]
    assert len(set(make_spec("alexnet").layer_names())) == 14
    one = Spec("one", 1, 2, make_spec("nin").layers[-2:], 8)
    assert one.layer_names() == ["global_avg_pool", "flatten"]


def test_describe_names_only_the_options_that_differ():
    from common.spec import Spec

    assert make_spec("nin").describe() == "nin"
    assert (
        make_spec().describe() == "nin"
        and make_spec(None, num_1x1=1).describe() == "nin(num_1x1=1)"
    )
    assert make_spec("nin", num_1x1=2, dropout=0.0).describe() == "nin(dropout=0.0)"
    assert make_spec("nin", widths=(8, 16, 32)).describe() == "nin(widths=(8, 16, 32))"
    custom = Spec("mine", 1, 2, make_spec("nin").layers, options={"widths": (1, 2, 3)})
    assert custom.describe() == "mine(widths=(1, 2, 3))"
    assert Spec("mine", 1, 2, ()).describe() == "mine"


def test_make_spec_rebuilds_a_spec_with_overrides():
    spec = make_spec("nin", num_1x1=1)
    assert make_spec(spec) is spec
    rebuilt = make_spec(spec, num_classes=3)
    assert rebuilt == make_spec("nin", num_1x1=1, num_classes=3)
    assert rebuilt.options["num_1x1"] == 1 and rebuilt.options["num_classes"] == 3
    with pytest.raises(
        ValueError, match="unknown model 'vgg'; choose from nin, alexnet, nin-s, nin-m, nin-l$"
    ):
        make_spec("vgg")
    with pytest.raises(
        ValueError, match=r"unknown option\(s\) a, b for alexnet; allowed: in_channels, "
    ):
        make_spec("alexnet", b=1, a=2)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"in_channels": 0}, "in_channels must be a positive integer, got 0"),
        ({"num_classes": 2.0}, "num_classes must be a positive integer, got 2.0"),
        ({"input_size": -3}, "input_size must be a positive integer"),
        ({"num_1x1": -1}, "num_1x1 must be a whole number from 0 to 15, got -1"),
        # A checkpoint's options are rebuilt through nin_spec: 10**30 must not be tried.
        ({"num_1x1": 16}, "num_1x1 must be a whole number from 0 to 15, got 16"),
        ({"num_1x1": 10**30}, "num_1x1 must be a whole number from 0 to 15"),
        ({"num_1x1": True}, "num_1x1"),
        ({"num_1x1": 1.0}, "num_1x1"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        ({"dropout": -0.01}, "dropout"),
        ({"final_relu": 1}, "final_relu must be True or False, got 1"),
        ({"head_width": -1}, r"head_width must be a whole number >= 0 \(0: none\), got -1"),
        ({"head_width": True}, "head_width"),
        ({"head_width": 2.0}, "head_width"),
        ({"widths": (8, 16)}, r"widths are the three feature blocks' channels, got \(8, 16\)"),
        ({"widths": (8, 16, 32, 64)}, "widths are the three"),
        ({"widths": (8, 0, 32)}, "width 2 must be a positive integer, got 0"),
        ({"widths": (8, 16, 2.5)}, "width 3 must be a positive integer"),
    ],
)
def test_nin_options_are_checked(options, message):
    with pytest.raises(ValueError, match=message):
        make_spec("nin", **options)


def test_the_edges_of_the_nin_options_are_accepted():
    spec = make_spec(
        "nin", in_channels=1, num_classes=1, input_size=1, dropout=0.0, widths=(1, 1, 1)
    )
    assert spec.num_classes == 1 and spec.layers[6].rate == 0.0
    assert make_spec("nin", dropout=0.99).layers[6].rate == 0.99
    with pytest.raises(ValueError, match="in_channels must be a positive integer"):
        make_spec("alexnet", in_channels=0)
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        make_spec("alexnet", num_classes=0)
    with pytest.raises(ValueError, match="input_size must be a positive integer"):
        make_spec("alexnet", input_size=0)


# -- specs read from files ------------------------------------------------------------------------


def test_every_registered_spec_survives_json():
    import json

    from common.spec import SPECS, spec_from_dict

    for name in SPECS:
        for options in ({}, {"num_classes": 3, "dropout": 0.25}):
            spec = make_spec(name, **options)
            again = spec_from_dict(json.loads(json.dumps(spec.to_dict())))
            assert again == spec and again.options == spec.options and again.name == name
            assert again.describe() == spec.describe()
    widths = make_spec("nin", widths=(8, 16, 32))
    assert spec_from_dict(json.loads(json.dumps(widths.to_dict()))).options["widths"] == (8, 16, 32)
    block = make_spec("nin").to_dict()["layers"][0]
    assert block == {
        "type": "ConvBlock",
        "kind": "nin_block",
        "convs": [
            {"out_channels": 96, "kernel_size": 11, "stride": 4, "padding": 0, "relu": True},
            {"out_channels": 96, "kernel_size": 1, "stride": 1, "padding": 0, "relu": True},
            {"out_channels": 96, "kernel_size": 1, "stride": 1, "padding": 0, "relu": True},
        ],
    }
    assert make_spec("nin").to_dict()["layers"][1] == {
        "type": "MaxPool",
        "kernel_size": 3,
        "stride": 2,
    }
    top = make_spec("alexnet").to_dict()
    assert {key: top[key] for key in ("name", "in_channels", "num_classes", "input_size")} == {
        "name": "alexnet", "in_channels": 1, "num_classes": 10, "input_size": 224,
    }  # fmt: skip
    assert top["layers"][-1] == {"type": "Dense", "units": 10, "relu": False}
    assert top["options"] == {
        "in_channels": 1,
        "num_classes": 10,
        "dropout": 0.5,
        "input_size": 224,
    }


def _spec_dict(**changes):
    data = {
        "name": "tiny",
        "in_channels": 1,
        "num_classes": 3,
        "input_size": 8,
        "layers": [
            {"type": "ConvBlock", "convs": [{"out_channels": 3, "kernel_size": 3, "padding": 1}]},
            {"type": "GlobalAvgPool"},
            {"type": "Flatten"},
        ],
    }
    return {**data, **changes}


def test_a_minimal_spec_dict_takes_the_defaults():
    from common.spec import Conv, ConvBlock, Dense, Dropout, Flatten, GlobalAvgPool, spec_from_dict

    spec = spec_from_dict(_spec_dict())
    assert spec.layers == (ConvBlock((Conv(3, 3, 1, 1),), "nin_block"), GlobalAvgPool(), Flatten())
    assert spec.options == {} and spec.input_size == 8
    layers = [
        {"type": "Flatten"},
        {"type": "Dense", "units": 4},
        {"type": "Dropout", "rate": 0},
        {"type": "Dense", "units": 3, "relu": False},
    ]
    spec = spec_from_dict(_spec_dict(layers=layers, options={"sizes": [1, 2], "x": "y"}))
    assert spec.layers == (Flatten(), Dense(4), Dropout(0), Dense(3, relu=False))
    assert spec.options == {"sizes": (1, 2), "x": "y"}


LIMITS = {  # field: (lowest allowed, highest allowed)
    "out_channels": (1, 1 << 16),
    "kernel_size": (1, 64),
    "stride": (1, 64),
    "padding": (0, 64),
    "units": (1, 1 << 16),
    "in_channels": (1, 1 << 10),
    "num_classes": (1, 1 << 16),
    "input_size": (1, 8192),
}


def _with(key, value):
    """A spec dict with `key` (a top-level, convolution or dense field) set to `value`."""
    if key in ("in_channels", "num_classes", "input_size"):
        return _spec_dict(**{key: value})
    if key == "units":
        return _spec_dict(layers=[{"type": "Flatten"}, {"type": "Dense", "units": value}])
    conv = {"out_channels": 3, "kernel_size": 3, key: value}
    return _spec_dict(layers=[{"type": "ConvBlock", "convs": [conv]}])


@pytest.mark.parametrize("key", list(LIMITS))
def test_spec_fields_are_bounded_whole_numbers(key):
    from common.spec import spec_from_dict

    low, high = LIMITS[key]
    for value in (low, high):
        spec_from_dict(_with(key, value))
    for value in (low - 1, high + 1, float(low), True, "1", None):
        if value is True and low == 0:
            value = False
        with pytest.raises(ValueError, match=f"{key} must be a whole number in {low}..{high}"):
            spec_from_dict(_with(key, value))


@pytest.mark.parametrize(
    "data, message",
    [
        ([], "a spec is a dict with a list of layers"),
        ({"name": "x", "layers": {}}, "a spec is a dict with a list of layers"),
        (_spec_dict(name=None), "^a spec needs a name and at most 256 layers$"),
        (_spec_dict(layers=[{"type": "Flatten"}] * 257), "at most 256 layers"),
        (_spec_dict(layers=["Flatten"]), "a layer is a dict, got 'Flatten'"),
        (_spec_dict(layers=[{"type": "Conv2D"}]), "unknown layer type 'Conv2D'"),
        (_spec_dict(layers=[{"units": 3}]), "unknown layer type None"),
        (_spec_dict(layers=[{"type": "ConvBlock", "convs": []}]), "a ConvBlock holds 1 to 16"),
        (_spec_dict(layers=[{"type": "ConvBlock"}]), "a ConvBlock holds 1 to 16"),
        (_spec_dict(layers=[{"type": "ConvBlock", "convs": [[3, 3]]}]), "expected a dict of layer"),
        (_spec_dict(layers=[{"type": "Dropout", "rate": 1}]), r"rate must be in \[0, 1\), got 1"),
        (_spec_dict(layers=[{"type": "Dropout", "rate": -0.5}]), r"rate must be in \[0, 1\)"),
        (_spec_dict(layers=[{"type": "Dropout", "rate": False}]), r"rate must be in \[0, 1\)"),
        (_spec_dict(layers=[{"type": "Dropout", "rate": "0.5"}]), r"rate must be in \[0, 1\)"),
        (
            _spec_dict(layers=[{"type": "Dense", "units": 2, "relu": 1}]),
            "relu must be true or false",
        ),
        (_spec_dict(options=[1]), "^spec options must be a dict$"),
    ],
)
def test_what_is_not_a_sane_spec_is_one_value_error(data, message):
    from common.spec import spec_from_dict

    with pytest.raises(ValueError, match=message):
        spec_from_dict(data)


def test_the_largest_sane_spec_is_accepted():
    from common.spec import spec_from_dict

    convs = [{"out_channels": 2, "kernel_size": 1}] * 16
    spec = spec_from_dict(_spec_dict(layers=[{"type": "ConvBlock", "convs": convs, "kind": "x"}]))
    assert len(spec.layers[0].convs) == 16 and spec.layers[0].kind == "x"
    assert len(spec_from_dict(_spec_dict(layers=[{"type": "Flatten"}] * 256)).layers) == 256
    with pytest.raises(ValueError, match="^a ConvBlock holds 1 to 16 convolutions$"):
        spec_from_dict(_spec_dict(layers=[{"type": "ConvBlock", "convs": [*convs, convs[0]]}]))


def test_the_books_flax_nin_is_build_nins_network():
    """nin_jax opens with the book's NiN in Flax linen (d2l 7.3's JAX tab); given the same
    weights, it computes what build_nin's network computes."""
    backend = get_backend("jax")  # (a skip where JAX is not installed)
    import jax

    from nin_jax.model import NiN

    net = backend.build_nin(seed=0)
    # The book's nn.Sequential numbers its layers, lambdas included: the blocks are 0, 2, 4, 7.
    blocks = ("nin_block_1", "nin_block_2", "nin_block_3", "nin_block_4")
    book = {
        "net": {f"layers_{index}": net.params[name] for index, name in zip((0, 2, 4, 7), blocks)}
    }
    images = np.random.default_rng(0).random((2, 67, 67, 1), dtype=np.float32)
    np.testing.assert_allclose(NiN().apply({"params": book}, images), net(images), rtol=1e-6)
    assert jax.tree_util.tree_structure(
        NiN().init(jax.random.PRNGKey(0), images)["params"]
    ) == jax.tree_util.tree_structure(book)
