"""common.weights, framework-free: the canonical parameter slots, the two initialisations, the
NCHW/NHWC reordering of a dense kernel and the .npz format (written, read back, refused)."""

from __future__ import annotations

import io
import json
import math
import re
import zipfile

import numpy as np
import pytest

from common.spec import Conv, ConvBlock, Dense, Flatten, GlobalAvgPool, Spec, make_spec
from common.weights import (
    FORMAT_VERSION,
    MAX_HEADER_BYTES,
    NpzReader,
    WeightsError,
    as_float32,
    canonical_shapes,
    check_arrays,
    dense_to_nchw,
    dense_to_nhwc,
    init_weights,
    load_weights,
    param_slots,
    parameter_names,
    probe_weights,
    save_weights,
    slot_of,
)

from .archives import npy_bytes, write_members

NIN = make_spec("nin")
ALEXNET = make_spec("alexnet")
SMALL = make_spec("nin", widths=(4, 6, 8), num_1x1=1, num_classes=3)


# -- slots and names ---------------------------------------------------------------------------


def test_nin_slots_are_the_books_twelve_convolutions():
    slots = param_slots(NIN)
    assert [(slot.name, slot.weight_shape) for slot in slots] == [
        ("nin_block_1.0", (96, 1, 11, 11)),
        ("nin_block_1.1", (96, 96, 1, 1)),
        ("nin_block_1.2", (96, 96, 1, 1)),
        ("nin_block_2.0", (256, 96, 5, 5)),
        ("nin_block_2.1", (256, 256, 1, 1)),
        ("nin_block_2.2", (256, 256, 1, 1)),
        ("nin_block_3.0", (384, 256, 3, 3)),
        ("nin_block_3.1", (384, 384, 1, 1)),
        ("nin_block_3.2", (384, 384, 1, 1)),
        ("nin_block_4.0", (10, 384, 3, 3)),
        ("nin_block_4.1", (10, 10, 1, 1)),
        ("nin_block_4.2", (10, 10, 1, 1)),
    ]
    assert all(slot.is_conv and slot.flattened_chw is None for slot in slots)
    total = sum(math.prod(shape) for shape in canonical_shapes(NIN).values())
    assert total == 1_992_166  # d2l 7.3's count


def test_alexnet_slots_record_what_the_first_dense_layer_flattens():
    """AlexNet at 224: 256 channels of 5x5 reach Flatten, so dense_1 takes 6,400 inputs in
    NCHW order; the later dense layers take vectors and need no reordering."""
    dense = [slot for slot in param_slots(ALEXNET) if not slot.is_conv]
    assert [(slot.name, slot.weight_shape, slot.flattened_chw) for slot in dense] == [
        ("dense_1", (4096, 6400), (256, 5, 5)),
        ("dense_2", (4096, 4096), None),
        ("dense_3", (10, 4096), None),
    ]
    assert [slot.name for slot in param_slots(ALEXNET) if slot.is_conv] == [
        f"conv_{index}.0" for index in range(1, 6)
    ]


def test_a_dense_layer_after_global_pooling_needs_no_reordering():
    spec = Spec(
        "pooled",
        2,
        5,
        (ConvBlock((Conv(3, 3),)), GlobalAvgPool(), Flatten(), Dense(7), Dense(5, relu=False)),
        9,
    )
    assert [(slot.name, slot.weight_shape, slot.flattened_chw) for slot in param_slots(spec)] == [
        ("nin_block.0", (3, 2, 3, 3), None),
        ("dense_1", (7, 3), None),
        ("dense_2", (5, 7), None),
    ]


def test_names_are_weight_then_bias_per_layer_in_creation_order():
    names = parameter_names(SMALL)
    assert names == [
        "nin_block_1.0.weight",
        "nin_block_1.0.bias",
        "nin_block_1.1.weight",
        "nin_block_1.1.bias",
        "nin_block_2.0.weight",
        "nin_block_2.0.bias",
        "nin_block_2.1.weight",
        "nin_block_2.1.bias",
        "nin_block_3.0.weight",
        "nin_block_3.0.bias",
        "nin_block_3.1.weight",
        "nin_block_3.1.bias",
        "nin_block_4.0.weight",
        "nin_block_4.0.bias",
        "nin_block_4.1.weight",
        "nin_block_4.1.bias",
    ]
    assert list(canonical_shapes(SMALL)) == names
    assert canonical_shapes(SMALL)["nin_block_2.0.weight"] == (6, 4, 5, 5)
    assert canonical_shapes(SMALL)["nin_block_2.0.bias"] == (6,)
    slots = slot_of(SMALL)
    assert list(slots) == names
    assert slots["nin_block_3.1.bias"] is slots["nin_block_3.1.weight"]
    assert slots["nin_block_3.1.bias"].weight_shape == (8, 8, 1, 1)


# -- initialisation ----------------------------------------------------------------------------


def test_init_weights_is_xavier_uniform_with_zero_biases():
    arrays = init_weights(NIN, seed=0)
    assert list(arrays) == parameter_names(NIN)
    for name, shape in canonical_shapes(NIN).items():
        array = arrays[name]
        assert array.shape == shape and array.dtype == np.float32, name
        if name.endswith(".bias"):
            assert not array.any(), name
            continue
        out_channels, in_channels, height, width = shape
        bound = math.sqrt(6 / ((in_channels + out_channels) * height * width))
        assert np.abs(array).max() <= bound, name
        if array.size >= 2000:  # enough draws to reach the bound and show the spread
            assert np.abs(array).max() > 0.99 * bound, name
            assert array.std() == pytest.approx(bound / math.sqrt(3), rel=0.05), name
            assert abs(array.mean()) < 0.05 * bound, name
    # dense kernels have no receptive field: bound sqrt(6 / (in + out))
    dense = init_weights(ALEXNET, seed=0)["dense_3.weight"]
    assert np.abs(dense).max() == pytest.approx(math.sqrt(6 / (4096 + 10)), rel=0.01)


def test_init_weights_is_a_function_of_the_seed():
    first, again, other = (init_weights(SMALL, seed) for seed in (3, 3, 4))
    assert all(np.array_equal(first[name], again[name]) for name in first)
    assert not np.array_equal(first["nin_block_1.0.weight"], other["nin_block_1.0.weight"])
    assert not np.array_equal(
        init_weights(SMALL)["nin_block_1.0.weight"], first["nin_block_1.0.weight"]
    )


def test_both_initialisations_default_to_seed_0():
    for initialise in (init_weights, probe_weights):
        default, zero = initialise(SMALL), initialise(SMALL, seed=0)
        assert all(np.array_equal(default[name], zero[name]) for name in zero), initialise


def test_probe_weights_are_he_normal_with_small_nonzero_biases():
    arrays = probe_weights(NIN, seed=1)
    assert list(arrays) == parameter_names(NIN)
    for name, shape in canonical_shapes(NIN).items():
        array = arrays[name]
        assert array.shape == shape and array.dtype == np.float32, name
        if name.endswith(".weight"):
            fan_in = math.prod(shape[1:])
            assert array.std() == pytest.approx(math.sqrt(2 / fan_in), rel=0.1), name
        elif array.size >= 96:
            assert array.std() == pytest.approx(0.1, rel=0.25), name
            assert np.all(array != 0), name
    assert not np.array_equal(
        probe_weights(NIN, seed=2)["nin_block_1.0.weight"], arrays["nin_block_1.0.weight"]
    )


def test_as_float32_copies_to_contiguous_float32():
    source = {"a": np.arange(6, dtype=np.float64).reshape(2, 3).T}
    converted = as_float32(source)
    assert converted["a"].dtype == np.float32 and converted["a"].flags.c_contiguous
    np.testing.assert_array_equal(converted["a"], source["a"])


# -- NCHW <-> NHWC -----------------------------------------------------------------------------


def test_dense_reordering_keeps_what_the_layer_computes():
    """A dense layer after Flatten must give the same outputs whether the feature map is
    flattened in NCHW order (canonical) or NHWC order (Keras), once its kernel is reordered."""
    channels, height, width = 3, 2, 5  # all different, so any swapped axis shows
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((4, channels * height * width))
    features = rng.standard_normal((channels, height, width))
    nchw_output = weight @ features.reshape(-1)
    nhwc_weight = dense_to_nhwc(weight, (channels, height, width))
    assert nhwc_weight.shape == weight.shape
    np.testing.assert_allclose(nhwc_weight @ features.transpose(1, 2, 0).reshape(-1), nchw_output)
    np.testing.assert_array_equal(dense_to_nchw(nhwc_weight, (channels, height, width)), weight)
    # by hand: C=2, H=1, W=2; NCHW inputs (c0w0, c0w1, c1w0, c1w1), NHWC (c0w0, c1w0, c0w1, c1w1)
    np.testing.assert_array_equal(
        dense_to_nhwc(np.array([[0, 1, 2, 3]]), (2, 1, 2)), [[0, 2, 1, 3]]
    )
    np.testing.assert_array_equal(
        dense_to_nchw(np.array([[0, 2, 1, 3]]), (2, 1, 2)), [[0, 1, 2, 3]]
    )


def test_channels_last_layouts_compute_what_the_canonical_ones_do():
    """Every slot of AlexNet (convolutions, the dense layer after Flatten, the dense layers
    after it) in a channels-last framework's layout computes the canonical layer's function,
    and the layouts convert back exactly."""
    from common.reference import conv2d
    from common.spec import make_spec
    from common.weights import from_channels_last, param_slots, to_channels_last

    rng = np.random.default_rng(1)
    slots = param_slots(make_spec("alexnet"))
    for slot in slots:
        weight = rng.standard_normal(slot.weight_shape)
        kernel = to_channels_last(slot, weight)
        np.testing.assert_array_equal(from_channels_last(slot, kernel), weight)
        if slot.is_conv:
            out_channels, in_channels, size, _ = weight.shape
            assert kernel.shape == (size, size, in_channels, out_channels)  # HWIO
            x = rng.standard_normal((1, in_channels, size + 2, size + 1))
            expected = conv2d(x, weight, np.zeros(out_channels))[0]  # (O, H, W)
            windows = np.lib.stride_tricks.sliding_window_view(
                x[0].transpose(1, 2, 0), (size, size), axis=(0, 1)
            )  # (H, W, I, kh, kw)
            got = np.einsum("hwiyx,yxio->ohw", windows, kernel)
            np.testing.assert_allclose(got, expected, atol=1e-9)
        else:
            assert kernel.shape == weight.shape[::-1]  # (in, out)
            chw = slot.flattened_chw
            if chw:
                features = rng.standard_normal(chw)
                np.testing.assert_allclose(
                    features.transpose(1, 2, 0).reshape(-1) @ kernel,
                    weight @ features.reshape(-1),
                )
    assert sum(bool(slot.flattened_chw) for slot in slots) == 1


# -- the file format ---------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path):
    arrays = probe_weights(SMALL, seed=5)
    path = tmp_path / "deeper" / "still" / "w.weights"
    assert save_weights(path, SMALL, arrays, framework="x", epochs=2) == path
    assert path.is_file()  # no ".npz" appended
    loaded = load_weights(path, SMALL)
    assert loaded.spec == SMALL and loaded.spec.options == SMALL.options
    assert loaded.metadata == {"framework": "x", "epochs": 2}
    assert list(loaded.arrays) == parameter_names(SMALL)
    for name, array in arrays.items():
        assert loaded.arrays[name].dtype == np.float32
        np.testing.assert_array_equal(loaded.arrays[name], array)
        assert loaded.arrays[name].flags.writeable and loaded.arrays[name].flags.c_contiguous
    with zipfile.ZipFile(path) as archive:
        header = json.loads(str(np.load(io.BytesIO(archive.read("__header__.npy")))))
    assert header == {
        "format_version": FORMAT_VERSION,
        "spec": json.loads(json.dumps(SMALL.to_dict())),
        "metadata": {"framework": "x", "epochs": 2},
    }
    assert FORMAT_VERSION == 1


def test_weights_are_stored_as_float32_whatever_they_are_given_as(tmp_path):
    arrays = {key: value.astype(np.float64) for key, value in probe_weights(SMALL).items()}
    loaded = load_weights(save_weights(tmp_path / "w.npz", SMALL, arrays), SMALL)
    for key, value in arrays.items():
        assert loaded.arrays[key].dtype == np.float32
        np.testing.assert_array_equal(loaded.arrays[key], value.astype(np.float32))


def test_weights_load_into_a_model_that_differs_only_in_what_has_no_parameters(tmp_path):
    path = save_weights(tmp_path / "w.npz", NIN, init_weights(NIN))
    for other in (make_spec("nin", dropout=0.0), make_spec("nin", input_size=96)):
        assert load_weights(path, other).spec == NIN
    for other, said in (
        (make_spec("nin", num_classes=5), "nin(num_classes=5)"),
        (make_spec("nin", num_1x1=1), "nin(num_1x1=1)"),
        (make_spec("nin-m"), "nin-m"),  # the same arrays, but another model's name
    ):
        message = f"holds weights for nin, but the model is {said}"
        with pytest.raises(WeightsError, match=re.escape(message)):
            load_weights(path, other)


def test_check_arrays_names_what_is_missing_extra_or_misshapen():
    arrays = init_weights(SMALL)
    check_arrays(SMALL, arrays)
    del arrays["nin_block_1.0.bias"]
    arrays["stray.weight"] = np.zeros(1, np.float32)
    with pytest.raises(
        WeightsError,
        match=r"weights do not fit nin\(.*\): missing \['nin_block_1.0.bias'\], "
        r"unexpected \['stray.weight'\]",
    ):
        check_arrays(SMALL, arrays)
    arrays["nin_block_1.0.bias"] = np.zeros(4, np.float32)
    with pytest.raises(WeightsError, match=r": missing nothing, unexpected \['stray.weight'\]$"):
        check_arrays(SMALL, arrays)
    del arrays["stray.weight"], arrays["nin_block_1.0.bias"]
    with pytest.raises(
        WeightsError, match=r": missing \['nin_block_1.0.bias'\], unexpected nothing$"
    ):
        check_arrays(SMALL, arrays)
    arrays = init_weights(SMALL)
    arrays["nin_block_2.0.weight"] = np.zeros((6, 4, 3, 3), np.float32)
    with pytest.raises(WeightsError, match=r"mine: nin_block_2.0.weight has shape \(6, 4, 3, 3\)"):
        check_arrays(SMALL, arrays, source="mine")
    with pytest.raises(WeightsError, match="needs"):
        save_weights("unused.npz", SMALL, arrays)


def _write_npz(path, header, arrays):
    with open(path, "wb") as file:
        np.savez(file, __header__=np.array(json.dumps(header)), **arrays)
    return path


def _good(spec=SMALL):
    return {"format_version": 1, "spec": spec.to_dict(), "metadata": {}}


def test_files_that_are_not_ours_are_refused_in_one_line(tmp_path):
    arrays = init_weights(SMALL)

    def refused(path, message):
        with pytest.raises(WeightsError, match=message) as info:
            load_weights(path)
        assert "\n" not in str(info.value)

    refused(tmp_path / "nowhere.npz", "does not exist")
    (tmp_path / "folder.npz").mkdir()
    refused(tmp_path / "folder.npz", "does not exist")
    (tmp_path / "text.npz").write_text("hello")
    refused(tmp_path / "text.npz", "is not a NiN weights file")
    with zipfile.ZipFile(tmp_path / "zip.npz", "w") as archive:
        archive.writestr("notes.txt", "not an array")
    refused(tmp_path / "zip.npz", r"not an .npz of arrays")
    np.savez(tmp_path / "headless.npz", **arrays)
    refused(tmp_path / "headless.npz", "it has no header")
    with open(tmp_path / "list.npz", "wb") as file:
        np.savez(file, __header__=np.array(json.dumps([1, 2])), **arrays)
    refused(tmp_path / "list.npz", "its header is not an object")
    with open(tmp_path / "json.npz", "wb") as file:
        np.savez(file, __header__=np.array("{not json"), **arrays)
    refused(tmp_path / "json.npz", "damaged header")
    with open(tmp_path / "number.npz", "wb") as file:
        np.savez(file, __header__=np.array(3.0), **arrays)
    refused(tmp_path / "number.npz", "expected text")
    refused(_write_npz(tmp_path / "nospec.npz", {"format_version": 1}, arrays), "bad spec")
    bad_spec = {**_good(), "spec": {**SMALL.to_dict(), "in_channels": 0}}
    refused(_write_npz(tmp_path / "badspec.npz", bad_spec, arrays), r"bad spec \(in_channels")
    # what a problem says is cut short: a bad spec's to 200 characters, a damaged member's to 120
    long_type = {**_good(), "spec": {**SMALL.to_dict(), "layers": [{"type": "x" * 500}]}}
    refused(_write_npz(tmp_path / "long.npz", long_type, arrays), r"unknown layer type 'x{180}\)$")
    with open(tmp_path / "dims.npz", "wb") as file:
        np.savez(file, __header__=np.zeros((1,) * 31), **arrays)
    refused(tmp_path / "dims.npz", r"\(__header__: __header__ is float64 \(1(, 1){30}\), exp\)$")


def test_arrays_that_do_not_fit_are_refused(tmp_path):
    arrays = init_weights(SMALL)
    missing = {key: value for key, value in arrays.items() if key != "nin_block_4.1.weight"}
    path = _write_npz(tmp_path / "missing.npz", _good(), missing)
    with pytest.raises(
        WeightsError, match=r"missing \['nin_block_4.1.weight'\], unexpected nothing"
    ):
        load_weights(path)
    extra = {**arrays, "extra.bias": np.zeros(3, np.float32)}
    path = _write_npz(tmp_path / "extra.npz", _good(), extra)
    with pytest.raises(WeightsError, match=r"missing nothing, unexpected \['extra.bias'\]"):
        load_weights(path)
    doubles = {**arrays, "nin_block_1.0.bias": np.zeros(4, np.float64)}
    path = _write_npz(tmp_path / "float64.npz", _good(), doubles)
    with pytest.raises(
        WeightsError, match=r"nin_block_1.0.bias is float64 \(4,\), expected float32"
    ):
        load_weights(path)
    wrong = {**arrays, "nin_block_1.0.bias": np.zeros(5, np.float32)}
    path = _write_npz(tmp_path / "shape.npz", _good(), wrong)
    with pytest.raises(WeightsError, match=r"is float32 \(5,\), expected float32 \(4,\)"):
        load_weights(path)
    for bad in (np.nan, -np.inf):
        poisoned = {**arrays, "nin_block_3.0.weight": arrays["nin_block_3.0.weight"].copy()}
        poisoned["nin_block_3.0.weight"][0, 0, 0, 0] = bad
        path = _write_npz(tmp_path / "nan.npz", _good(), poisoned)
        with pytest.raises(
            WeightsError, match=r"nin_block_3.0.weight holds NaN or infinite values \(1 array"
        ):
            load_weights(path)


def test_fortran_ordered_arrays_and_odd_metadata_are_read_faithfully(tmp_path):
    arrays = probe_weights(SMALL)
    fortran = {key: np.asfortranarray(value) for key, value in arrays.items()}
    path = _write_npz(tmp_path / "f.npz", {**_good(), "metadata": ["not", "a", "dict"]}, fortran)
    loaded = load_weights(path)
    assert loaded.metadata == {}
    for key, value in arrays.items():
        np.testing.assert_array_equal(loaded.arrays[key], value)
        # C order whatever the file held: the backends hand these buffers to their frameworks
        assert loaded.arrays[key].flags.c_contiguous and loaded.arrays[key].flags.writeable
    path = _write_npz(tmp_path / "none.npz", {"format_version": 1, "spec": SMALL.to_dict()}, arrays)
    assert load_weights(path).metadata == {}


def test_the_reader_refuses_before_reading_what_a_header_oversizes(tmp_path):
    arrays = init_weights(SMALL)
    path = _write_npz(
        tmp_path / "huge.npz", {**_good(), "metadata": {"x": "y" * MAX_HEADER_BYTES}}, arrays
    )
    with pytest.raises(
        WeightsError, match=r"__header__ declares [\d,]+ bytes, more than it can hold"
    ):
        load_weights(path)
    with NpzReader(path, WeightsError, "a test file") as archive:
        assert archive.names == {"__header__", *parameter_names(SMALL)}
        with pytest.raises(WeightsError, match="has no array missing.weight"):
            archive.array("missing.weight", (1,))
        # the data of an array holds exactly its shape's bytes
        np.testing.assert_array_equal(
            archive.array("nin_block_1.0.bias", (4,)), arrays["nin_block_1.0.bias"]
        )
        with pytest.raises(WeightsError, match="expected float32 \\(2, 2\\)"):
            archive.array("nin_block_1.0.bias", (2, 2))


def test_the_readers_one_line_is_at_most_400_characters(tmp_path):
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(WeightsError, match="is not a file a file") as info:
        NpzReader(tmp_path / "text.npz", WeightsError, "a file " * 100)
    assert len(str(info.value)) == 400


def test_an_archive_of_more_than_100_000_members_is_refused_unread(tmp_path, monkeypatch):
    path = save_weights(tmp_path / "w.npz", SMALL, init_weights(SMALL))
    listed = zipfile.ZipFile.namelist

    def listing(count):
        # so many real members take seconds to write and read; their names are all that counts
        def namelist(archive):
            names = listed(archive)
            return names + [f"padding_{index}.npy" for index in range(count - len(names))]

        return namelist

    monkeypatch.setattr(zipfile.ZipFile, "namelist", listing(100_000))
    with NpzReader(path, WeightsError, "a test file") as archive:
        assert len(archive.names) == 100_000
    monkeypatch.setattr(zipfile.ZipFile, "namelist", listing(100_001))
    with pytest.raises(WeightsError, match=r"is not a test file \(not an .npz of arrays\)"):
        NpzReader(path, WeightsError, "a test file")


def _header_padded_to(npy: bytes, size: int) -> bytes:
    """An .npy 1.0 file whose header (magic and length included) is padded to `size` bytes,
    with spaces as NumPy pads it."""
    length = int.from_bytes(npy[8:10], "little")
    header, data = npy[10 : 10 + length], npy[10 + length :]
    header = header[:-1] + b" " * (size - 10 - length) + b"\n"
    return npy[:8] + len(header).to_bytes(2, "little") + header + data


def _write_members(path, members: dict[str, bytes]):
    return write_members(path, {f"{name}.npy": data for name, data in members.items()})


def test_a_member_may_declare_its_data_and_4_kib_of_npy_header_and_no_more(tmp_path):
    """Checked before a byte is read; like np.load, the reader then takes the data its shape
    needs, so whatever follows it is ignored."""
    array = np.arange(10, dtype=np.float32)
    members = {
        "padded": _header_padded_to(npy_bytes(array, (1, 0)), 4096),
        "overlong": _header_padded_to(npy_bytes(array, (1, 0)), 4097),
        "trailing": npy_bytes(array) + bytes(100),
    }
    with NpzReader(_write_members(tmp_path / "m.npz", members), WeightsError, "a test") as archive:
        np.testing.assert_array_equal(archive.array("padded", (10,)), array)
        np.testing.assert_array_equal(archive.array("trailing", (10,)), array)
        with pytest.raises(WeightsError, match="overlong declares 4,137 bytes, more than it can"):
            archive.array("overlong", (10,))


def test_npy_versions_1_and_2_are_read_and_what_the_reader_does_not_know_is_refused(tmp_path):
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    members = {f"v{major}": npy_bytes(array, (major, 0)) for major in (1, 2, 3)}
    members["objects"] = npy_bytes(np.array([1, "a"], dtype=object))
    with NpzReader(_write_members(tmp_path / "m.npz", members), WeightsError, "a test") as archive:
        for key in ("v1", "v2"):
            np.testing.assert_array_equal(archive.array(key, (2, 3)), array)
        with pytest.raises(
            WeightsError, match=r"damaged \(v3: unsupported .npy version \(3, 0\)\)$"
        ):
            archive.array("v3", (2, 3))
        # reading one would unpickle it
        with pytest.raises(WeightsError, match=r"damaged \(objects: object arrays are not read\)$"):
            archive.array("objects", (2,))
