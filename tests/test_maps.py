"""NiN's class maps (`nin maps`, common.tools.maps): the same in every framework and equal to
NumPy's float64 reference, each map's spatial mean its class's logit (both heads), the
localisation measure on hand-made cases, the pictures, and one-line errors with exit 2."""

from __future__ import annotations

import numpy as np
import pytest

from common import reference
from common.backends import BACKENDS
from common.cli import main
from common.data import to_model_input
from common.spec import make_spec
from common.tools.maps import (
    NoClassMaps,
    above_minimum,
    cell_centres,
    chance_share,
    class_map_layer,
    class_maps,
    class_scores,
    localisation,
    map_size,
    object_at_cells,
    object_masks,
    placement,
    share_on_object,
    upsample,
)
from common.weights import probe_weights, save_weights

from .conftest import get_backend
from .test_cli import A_FILE, READ_ONLY, is_png
from .test_parity import LOGIT_ATOL, LOGIT_RTOL

# 3x3 class maps; at 67, NiN's smallest input, they are 1x1 and a map's mean is its only value.
SIZE = 131
COUNT = 6  # real test images
HEADS = {"linear": False, "book": True}


class Shared:
    """Per head: one spec, He-scaled weights (logits of order 1, which Xavier's are not) saved
    as an interchange file, the images and the float64 reference's class maps."""

    def __init__(self, directory, data):
        self.images = to_model_input(data.test_images[:COUNT], SIZE, standardize=True)
        self.specs, self.arrays, self.paths, self.expected = {}, {}, {}, {}
        for head, final_relu in HEADS.items():
            spec = make_spec("nin", final_relu=final_relu)
            arrays = probe_weights(spec, seed=7)
            self.specs[head], self.arrays[head] = spec, arrays
            self.paths[head] = save_weights(directory / f"{head}.npz", spec, arrays)
            captured = reference.forward(spec, arrays, self.images, capture=True)
            self.expected[head] = captured.layer_outputs[class_map_layer(spec)]

    def net(self, backend, head: str):
        net = backend.build_nin(self.specs[head], seed=1)  # other weights, until the import
        backend.import_weights(net, self.paths[head])
        return net


@pytest.fixture(scope="session")
def shared(tmp_path_factory, fashion_mnist):
    return Shared(tmp_path_factory.mktemp("maps"), fashion_mnist)


# -- the maps ----------------------------------------------------------------------------------


@pytest.mark.parametrize("head", list(HEADS))
def test_maps_equal_the_float64_reference(backend, shared, head):
    maps = class_maps(shared.net(backend, head), shared.images)
    expected = shared.expected[head]
    assert maps.shape == (COUNT, 10, *map_size(shared.specs[head], SIZE)) == (COUNT, 10, 3, 3)
    # informative at this tolerance: the maps vary from place to place far beyond it
    assert float(expected.std(axis=(2, 3)).max()) > 100 * LOGIT_ATOL
    np.testing.assert_allclose(maps, expected, rtol=LOGIT_RTOL, atol=LOGIT_ATOL)


def test_maps_from_the_same_weights_agree_across_frameworks(shared):
    maps = {
        name: class_maps(shared.net(get_backend(name), "linear"), shared.images)
        for name in BACKENDS
    }
    first, *others = maps
    assert float(maps[first].std(axis=(2, 3)).max()) > 100 * LOGIT_ATOL
    for name in others:
        np.testing.assert_allclose(
            maps[name], maps[first], rtol=LOGIT_RTOL, atol=LOGIT_ATOL, err_msg=name
        )


@pytest.mark.parametrize("head", list(HEADS))
def test_a_maps_spatial_mean_is_its_class_logit(backend, shared, head):
    net = shared.net(backend, head)
    maps = class_maps(net, shared.images)
    logits = backend.predict_logits(net, shared.images)  # the fast path: another computation
    np.testing.assert_allclose(class_scores(maps), logits, rtol=LOGIT_RTOL, atol=LOGIT_ATOL)
    # not any summary of a map would pass: its largest value does not
    assert not np.allclose(maps.max(axis=(2, 3)), logits, rtol=LOGIT_RTOL, atol=LOGIT_ATOL)
    if HEADS[head]:  # the book's ReLU: every value >= 0, and some maps are silent (all zero)
        assert (
            maps.min() >= 0 and 0 < int((maps.max(axis=(2, 3)) == 0).sum()) < maps[:, :, 0, 0].size
        )


def test_the_class_map_layer_is_found_from_the_spec():
    assert class_map_layer(make_spec("nin")) == "nin_block_4"
    assert class_map_layer(make_spec("nin", head_width=96)) == "nin_block_5"
    assert class_map_layer(make_spec("nin", num_1x1=0)) == "nin_block_4"
    assert class_map_layer(make_spec("nin-l", num_classes=3)) == "nin_block_4"
    with pytest.raises(NoClassMaps, match="alexnet has no class maps"):
        class_map_layer(make_spec("alexnet"))
    assert map_size(make_spec("nin"), 67) == (1, 1) and map_size(make_spec("nin"), 224) == (5, 5)


# -- upsampling and localisation, by hand --------------------------------------------------


def test_share_on_object_by_hand():
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    on, off, half, negative = (np.zeros((4, 4)) for _ in range(4))
    on[1:3, 1:3] = 2.0
    on[0, 0] = -5.0  # negative values are not mass
    off[0, :] = 1.0
    half[1, 1] = half[0, 0] = 3.0
    negative[:] = -1.0
    shares = share_on_object(np.stack([on, off, half, negative]), mask)
    np.testing.assert_array_equal(shares[:3], [1.0, 0.0, 0.5])
    assert np.isnan(shares[3])
    assert chance_share(mask) == 0.25
    offset = 10.0 + 2.0 * mask  # evidence on the object, over a large common offset
    assert share_on_object(offset, mask) == pytest.approx(48 / 168)
    assert share_on_object(above_minimum(offset), mask) == 1.0


def test_the_cells_sit_at_the_centres_of_their_receptive_fields():
    # By hand, at 131 px: the 11x11 stride-4 convolution's first output is centred on pixel 5,
    # its outputs 4 apart; each 3x3 stride-2 pool moves the first centre one spacing on and
    # doubles the spacing (5 -> 9, 8 -> 17, 16 -> 33, 32); padded convolutions move nothing.
    np.testing.assert_array_equal(cell_centres(make_spec("nin"), 131), [33, 65, 97])
    np.testing.assert_array_equal(cell_centres(make_spec("nin"), 67), [33])  # the middle
    # at 224 each pool drops the last row: the five cells lean to the top left of 0-223
    np.testing.assert_array_equal(cell_centres(make_spec("nin"), 224), [33, 65, 97, 129, 161])
    # the same geometry whatever the widths, 1x1 convolutions and gradual head
    np.testing.assert_array_equal(
        cell_centres(make_spec("nin-l", head_width=64), 131), [33, 65, 97]
    )


def test_placement_is_exact_at_the_centres_linear_between_and_flat_beyond():
    weights = placement(np.array([2.0, 6.0]), 9)
    np.testing.assert_allclose(weights @ [1.0, 5.0], [1, 1, 1, 2, 3, 4, 5, 5, 5])
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)  # an even map stays even
    spec = make_spec("nin")
    cells = np.arange(9, dtype=np.float32).reshape(3, 3)
    laid = upsample(cells, spec, 131)
    np.testing.assert_array_equal(laid[[33, 65, 97]][:, [33, 65, 97]], cells)
    assert laid[0, 0] == cells[0, 0] and laid[130, 130] == cells[2, 2]
    with pytest.raises(ValueError, match="3x3 class maps at 131x131, got maps of 5x5"):
        upsample(np.zeros((5, 5)), spec, 131)


def test_the_object_at_the_cells_resolution():
    mask = np.zeros((1, 8, 8), bool)
    mask[0, :3, :] = True  # 3 of the 4 rows nearest to the top cells' centre (1.5)
    mask[0, 4, 0] = True  # 1 of the 4 x 4 pixels nearest to the bottom-left cell's (5.5, 1.5)
    expected = [[[0.75, 0.75], [1 / 16, 0.0]]]
    np.testing.assert_allclose(object_at_cells(mask, np.array([1.5, 5.5])), expected)
    np.testing.assert_allclose(object_at_cells(mask, np.array([3.5])), [[[25 / 64]]])


def test_an_even_map_puts_the_chance_level_on_the_object(fashion_mnist):
    images = fashion_mnist.test_images[:4]
    masks = object_masks(images, 67)
    even = upsample(np.full((4, 1, 1), 3.0, np.float32), make_spec("nin"), 67)  # a 1x1 map
    np.testing.assert_allclose(share_on_object(even, masks), chance_share(masks), rtol=1e-6)
    assert 0.2 < chance_share(masks).min() and chance_share(masks).max() < 0.9


def test_localisation_over_images(shared, fashion_mnist):
    net = shared.net(get_backend(next(iter(BACKENDS))), "book")
    images, labels = fashion_mnist.test_images[:COUNT], fashion_mnist.test_labels[:COUNT]
    flat = localisation(net, images, labels, size=67, standardize=True)
    assert flat.map_size == (1, 1)  # one number per map: no map can beat the chance level
    for blind in (flat.on_object, flat.mean_object, flat.own_object):
        assert blind == pytest.approx(flat.chance, abs=1e-6)
    assert flat.above_chance == 0 and np.isnan(flat.relative_on_object)  # nothing above it
    measured = localisation(net, images, labels, size=SIZE, standardize=True)
    silent_maps = shared.expected["book"].max(axis=(2, 3)) <= 0  # the same images
    silent = silent_maps.sum(axis=1)
    assert measured.silent_maps == tuple(np.bincount(silent, minlength=11))
    assert measured.silent_by_class == tuple(silent_maps.sum(axis=0))
    predicted = shared.expected["book"].mean(axis=(2, 3)).argmax(axis=1)
    assert [count for count, _, _ in measured.by_class] == list(
        np.bincount(predicted, minlength=10)
    )
    assert measured.mean_silent_maps == pytest.approx(silent.mean()) and silent.mean() > 0
    assert measured.own_object > measured.chance  # a map that draws the object beats an even one


def test_the_object_is_the_non_zero_pixels_resized_as_the_input_is(fashion_mnist):
    images = fashion_mnist.test_images[:100]
    masks = object_masks(images, 131)
    binary = to_model_input(np.where(images > 0, 255, 0).astype(np.uint8), 131)[:, 0]
    np.testing.assert_array_equal(masks, binary >= 0.5)
    assert masks[:, 65, 65].mean() > 0.8 and masks[:, 0, 0].mean() < 0.05  # objects are centred
    # the share of the image the object covers is kept (a threshold at 0 would grow it)
    np.testing.assert_allclose(masks.mean(axis=(1, 2)), (images > 0).mean(axis=(1, 2)), atol=0.03)
    assert not np.allclose(
        (binary > 0).mean(axis=(1, 2)), (images > 0).mean(axis=(1, 2)), atol=0.03
    )


# -- the command -------------------------------------------------------------------------------


def test_maps_writes_a_png(backend, shared, tmp_path, capsys):
    out = tmp_path / "maps.png"
    argv = ["maps", "--backend", backend.BACKEND, "--weights", str(shared.paths["linear"])]
    assert main([*argv, "--n", "3", "--size", str(SIZE), "--out", str(out)]) == 0
    assert is_png(out)
    assert f"of 3 right ({backend.BACKEND}); class maps: {out}" in capsys.readouterr().out
    assert main([*argv, "--n", "3", "--out", str(out)]) == 2  # nothing replaced without --force
    assert "exists; pass --force" in capsys.readouterr().err


def test_maps_of_every_framework_side_by_side(shared, tmp_path, capsys):
    out = tmp_path / "all.png"
    argv = ["maps", "--backend", "all", "--weights", str(shared.paths["book"]), "--book-head"]
    assert (
        main([*argv, "--n", "2", "--classes", "all", "--size", str(SIZE), "--out", str(out)]) == 0
    )
    assert is_png(out)
    printed = capsys.readouterr().out
    difference = float(printed.split("maps and ")[1].split(": ")[1].split()[0])
    assert 0 <= difference < LOGIT_ATOL * 100


def test_localisation_prints_its_figures(shared, capsys):
    argv = ["maps", "--backend", next(iter(BACKENDS)), "--weights", str(shared.paths["book"])]
    assert main([*argv, "--localisation", "--test-limit", "16", "--size", str(SIZE)]) == 0
    printed = capsys.readouterr().out
    assert "16 test images" in printed and "on object" in printed and "mean object" in printed
    assert main([*argv, "--localisation", "--test-limit", "16", "--untrained", "--size", "67"]) == 0
    printed = capsys.readouterr().out
    assert "1x1 class maps, untrained" in printed and "each class map is one number" in printed


def test_predict_draws_each_predictions_map(backend, shared, tmp_path, capsys):
    out = tmp_path / "grid.png"
    argv = ["predict", "--backend", backend.BACKEND, "--weights", str(shared.paths["linear"])]
    assert main([*argv, "--maps", "--n", "4", "--size", str(SIZE), "--out", str(out)]) == 0
    assert is_png(out) and "of 4 right" in capsys.readouterr().out


# -- bad input: one line, exit 2, before any work ---------------------------------------------


@pytest.fixture(scope="module")
def bad_weights(tmp_path_factory):
    """Weights `nin maps` must refuse: AlexNet's (as a header: refused before the arrays are
    read) and a NiN of 100 classes; and a NiN's, for bad flags."""
    import json

    from common.weights import FORMAT_VERSION, init_weights

    directory = tmp_path_factory.mktemp("bad-weights")
    alexnet = directory / "alexnet.npz"
    header = {"format_version": FORMAT_VERSION, "spec": make_spec("alexnet").to_dict()}
    with open(alexnet, "wb") as file:
        np.savez(file, __header__=np.array(json.dumps(header)))
    save_weights(directory / "nin.npz", make_spec("nin"), init_weights(make_spec("nin"), 0))
    cifar = make_spec("nin", num_classes=100)
    save_weights(directory / "cifar100.npz", cifar, init_weights(cifar, 0))
    (directory / "model.pt").write_bytes(b"")
    return directory


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--weights", "{alexnet.npz}"], "alexnet has no class maps"),
        (["--weights", "{model.pt}", "--model", "alexnet"], "alexnet has no class maps"),
        (["--weights", "{cifar100.npz}"], "does not take Fashion-MNIST"),
        (["--weights", "{cifar100.npz}", "--n", "0"], "--n: must be between 1 and 32"),
        (["--weights", "{nin.npz}", "--size", "40"], "at least 67x67"),
        (["--weights", "/nonexistent.npz", "--out", "{x.png}"], "does not exist"),
        (["--weights", "{alexnet.npz}", "--out", f"{A_FILE}/maps.png"], "is a file, not a folder"),
        (["--weights", "{alexnet.npz}", "--out", f"{READ_ONLY}/maps.png"], "is not writable"),
        (["--weights", "{alexnet.npz}", "--localisation", "--out", "x.png"], "--out does not go"),
        (["--weights", "{alexnet.npz}", "--classes", "some"], "invalid choice: 'some'"),
        (["--weights", "{alexnet.npz}", "--backend", "caffe"], "invalid choice: 'caffe'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(bad_weights, argv, message, capsys):
    argv = [
        str(bad_weights / part[1:-1]) if part.startswith("{") and part.endswith("}") else part
        for part in argv
    ]
    backend = [] if "--backend" in argv else ["--backend", next(iter(BACKENDS))]
    assert main(["maps", *backend, *argv]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1 and "Traceback" not in error


def test_predict_maps_is_not_for_onnx_and_not_for_alexnet(bad_weights, capsys):
    assert main(["predict", "--onnx", "nin.onnx", "--maps"]) == 2
    assert "--maps needs a framework's model" in capsys.readouterr().err
    alexnet = str(bad_weights / "alexnet.npz")
    assert main(["predict", "--backend", next(iter(BACKENDS)), "--weights", alexnet, "--maps"]) == 2
    error = capsys.readouterr().err
    assert "alexnet has no class maps" in error and error.count("\n") == 1
