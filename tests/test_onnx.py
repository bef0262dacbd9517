"""ONNX export from every backend, with onnxruntime as a fourth implementation.

* Parity: the same weights exported from each backend give, in onnxruntime, the logits the
  framework itself gives on real Fashion-MNIST test images, at batch sizes (and, NiN taking any
  size, image sizes) other than the ones the converter traced; the three files agree with
  each other.
* The file: the opset asked for (MXNet's converter stamps its own unless pinned), the named
  NCHW input and logits output with a dynamic batch, the input treatment in the metadata.
* The command: ``nin export`` from a run folder; ``nin predict --onnx`` in a fresh process that
  imports no framework; bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import itertools
import pathlib
from importlib.util import find_spec

import numpy as np
import pytest

from common.backends import BACKENDS
from common.cli import main
from common.data import to_model_input
from common.onnx import INPUT_NAME, OPSETS, OUTPUT_NAME, OnnxModel, exporting
from common.spec import make_spec
from common.weights import probe_weights, save_weights

from .conftest import FRAMEWORK_MODULES, get_backend, run_python, skip_or_fail

ROOT = pathlib.Path(__file__).resolve().parents[1]
NAMES = list(BACKENDS)
FRAMEWORKS = FRAMEWORK_MODULES | {
    module
    for info in BACKENDS.values()
    for module in info.onnx_needs
    if module not in ("onnx", "onnxruntime")
}
TOLERANCE = 1e-5  # measured: 4e-6 at most (tf), on these logits of up to 2.3
TRAINED_AT = (67, True)  # the input treatment the exports record: 67 px, standardized


@pytest.fixture(scope="module", autouse=True)
def onnx_installed():
    """The onnx extra, like a framework: a skip locally, a failure in CI."""
    missing = [name for name in ("onnx", "onnxruntime", "tf2onnx") if find_spec(name) is None]
    if missing:
        skip_or_fail(f"{', '.join(missing)} not installed (the 'onnx' extra; `make setup`)")


class Exports:
    """One net per backend holding the same perturbed weights, and its export per opset."""

    def __init__(self, directory: pathlib.Path):
        self.directory = directory
        self.weights = probe_weights(make_spec("nin"), seed=12)
        self._nets, self._paths = {}, {}

    def net(self, name: str):
        if name not in self._nets:
            backend = get_backend(name)
            net = backend.build_nin()
            backend.set_weights(net, self.weights)
            self._nets[name] = net
        return self._nets[name]

    def path(self, name: str, opset: int = 17) -> pathlib.Path:
        if (name, opset) not in self._paths:
            self._paths[name, opset] = get_backend(name).export_onnx(
                self.net(name),
                self.directory / f"{name}-{opset}.onnx",
                opset=opset,
                input_treatment=TRAINED_AT,
            )
        return self._paths[name, opset]


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    return Exports(tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="session")
def batches(fashion_mnist):
    """Real test images: 37 at the trained 67 px, and 5 at a non-square 83x101 crop."""
    images = fashion_mnist.test_images
    square = to_model_input(images[100:105], 101, standardize=True)
    return {
        "37 at 67x67": to_model_input(images[:37], 67, standardize=True),
        "5 at 83x101": np.ascontiguousarray(square[:, :, 9:92, :]),
    }


def assert_informative(logits: np.ndarray) -> None:
    """Logits that could tell a wrong export from a right one: not mostly zero (the book's
    head ends in a ReLU), and varying from image to image."""
    assert (logits > 0).mean() > 0.2 and logits.std(axis=0).max() > 0.01, logits


def test_onnxruntime_gives_the_frameworks_logits(backend, exports, batches):
    net = exports.net(backend.BACKEND)
    model = OnnxModel(exports.path(backend.BACKEND))
    for description, images in batches.items():
        expected = backend.predict_logits(net, images)
        assert_informative(expected)
        np.testing.assert_allclose(
            model.predict_logits(images),
            expected,
            rtol=TOLERANCE,
            atol=TOLERANCE,
            err_msg=description,
        )


def test_the_three_exports_agree(exports, batches):
    logits = {
        name: OnnxModel(exports.path(name)).predict_logits(batches["37 at 67x67"]) for name in NAMES
    }
    for first, second in itertools.combinations(NAMES, 2):
        np.testing.assert_allclose(
            logits[first],
            logits[second],
            rtol=TOLERANCE,
            atol=TOLERANCE,
            err_msg=f"{first} vs {second}",
        )


@pytest.mark.parametrize("opset", OPSETS)
def test_the_exported_interface(backend, exports, batches, opset):
    import onnx

    path = exports.path(backend.BACKEND, opset)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert {entry.domain: entry.version for entry in model.opset_import}[""] == opset

    def dims(value):
        return [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]

    assert [(value.name, dims(value)) for value in model.graph.input] == [
        (INPUT_NAME, ["batch", 1, "height", "width"])
    ]  # no weights among the inputs
    assert [(value.name, dims(value)) for value in model.graph.output] == [
        (OUTPUT_NAME, ["batch", 10])
    ]
    assert "NCHW" in model.graph.input[0].doc_string

    runtime = OnnxModel(path)
    assert runtime.spec == make_spec("nin") and runtime.input_treatment == TRAINED_AT
    assert runtime.metadata["framework"] == backend.BACKEND
    images = batches["5 at 83x101"]
    np.testing.assert_allclose(
        runtime.predict_logits(images),
        backend.predict_logits(exports.net(backend.BACKEND), images),
        rtol=TOLERANCE,
        atol=TOLERANCE,
    )


def test_a_trained_size_the_network_cannot_take_is_refused(tmp_path):
    with pytest.raises(ValueError, match="exactly 224x224"):
        with exporting(
            tmp_path / "alexnet.onnx",
            make_spec("alexnet"),
            opset=17,
            framework="none",
            framework_version="0",
            input_treatment=(67, False),
        ):
            pass
    assert not (tmp_path / "alexnet.onnx").exists()


# -- the command -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def run_folder(tmp_path_factory):
    """What `nin train` leaves for export: weights.npz with the input it was trained on."""
    run = tmp_path_factory.mktemp("run") / "run"
    spec = make_spec("nin")
    save_weights(
        run / "weights.npz",
        spec,
        probe_weights(spec, seed=5),
        framework="torch",
        input={"size": TRAINED_AT[0], "standardize": TRAINED_AT[1]},
    )
    return run


def test_export_from_a_run_folder(backend, run_folder, tmp_path, capsys):
    out = tmp_path / "new folder" / "nin.onnx"
    argv = [
        "export",
        "--backend",
        backend.BACKEND,
        "--weights",
        str(run_folder),
        "--onnx",
        str(out),
        "--opset",
        "13",
    ]
    assert main(argv) == 0
    assert f"onnxruntime agrees with {backend.BACKEND}" in capsys.readouterr().out
    model = OnnxModel(out)
    assert model.input_treatment == TRAINED_AT and model.metadata["framework"] == backend.BACKEND
    assert main(argv) == 2  # nothing is replaced without --force
    assert main([*argv, "--force"]) == 0


def test_predict_on_onnxruntime_imports_no_framework(run_folder, fashion_mnist, tmp_path, capsys):
    model = tmp_path / "nin.onnx"
    assert (
        main(["export", "--backend", "torch", "--weights", str(run_folder), "--onnx", str(model)])
        == 0
    )
    assert (
        main(
            [
                "predict",
                "--backend",
                "torch",
                "--weights",
                str(run_folder / "weights.npz"),
                "--n",
                "24",
                "--out",
                str(tmp_path / "torch.png"),
            ]
        )
        == 0
    )
    in_torch = capsys.readouterr().out.splitlines()[-1].split(";")[0]  # "k of 24 right"
    code = (
        "import sys\n"
        "from common.cli import main\n"
        f"status = main(['predict', '--onnx', {str(model)!r}, '--n', '24', "
        f"'--out', {str(tmp_path / 'onnx.png')!r}])\n"
        f"print(sorted(name for name in sys.modules if name.split('.')[0] in {FRAMEWORKS!r}))\n"
        "sys.exit(status)\n"
    )
    lines = run_python(code).splitlines()
    assert lines[-1] == "[]", lines[-1]
    assert lines[-2].split(";")[0] == in_torch  # the same predictions as in PyTorch
    assert (tmp_path / "onnx.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _bad_input(tmp_path: pathlib.Path, run_folder: pathlib.Path) -> dict[str, tuple[list, str]]:
    exists = tmp_path / "exists.onnx"
    exists.write_bytes(b"")
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(b"not a zip")
    empty_folder = tmp_path / "empty"
    empty_folder.mkdir()
    out = str(tmp_path / "out.onnx")
    weights = str(run_folder)

    def export(*argv):
        return ["export", "--backend", "torch", *argv]

    return {
        "missing weights": (
            export("--weights", "/nonexistent.npz", "--onnx", out),
            "/nonexistent.npz does not exist",
        ),
        "bad opset": (
            export("--weights", weights, "--onnx", out, "--opset", "12"),
            "invalid choice: 12",
        ),
        "output exists": (
            export("--weights", weights, "--onnx", str(exists)),
            "exists; pass --force",
        ),
        "output under a file": (
            export("--weights", weights, "--onnx", str(a_file / "x.onnx")),
            "is a file, not a folder",
        ),
        "not .onnx": (
            export("--weights", weights, "--onnx", str(tmp_path / "x.npz")),
            "ends in .onnx",
        ),
        "folder without weights": (
            export("--weights", str(empty_folder), "--onnx", out),
            "without weights.npz",
        ),
        "damaged weights": (
            export("--weights", str(damaged), "--onnx", out),
            "not a NiN weights file",
        ),
        "predict: --onnx and --backend": (
            ["predict", "--onnx", out, "--backend", "torch"],
            "--backend does not go with --onnx",
        ),
        "predict: not an ONNX file": (["predict", "--onnx", str(damaged)], "is not an ONNX model"),
        "predict: no model": (
            ["predict", "--backend", "torch"],
            "one of the arguments --weights --onnx is required",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing weights",
        "bad opset",
        "output exists",
        "output under a file",
        "not .onnx",
        "folder without weights",
        "damaged weights",
        "predict: --onnx and --backend",
        "predict: not an ONNX file",
        "predict: no model",
    ],
)
def test_bad_input_is_one_line_and_exit_2(case, run_folder, tmp_path, capsys):
    argv, message = _bad_input(tmp_path, run_folder)[case]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1 and "Traceback" not in error, error
    assert not (tmp_path / "out.onnx").exists()
