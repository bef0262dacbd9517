"""No skip hides a failure: a missing framework is a loud skip, a broken one a failure, and an
error in the project's own code is never taken for a missing framework."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from common import backends
from common.backends import BACKENDS

from .conftest import ROOT, get_backend
from .processes import WHOLE_RUN_STARTUPS, bound

NAME = "mxnet"  # any backend; MXNet's is the framework most likely to break (NumPy >= 1.24)
FRAMEWORK = BACKENDS[NAME].framework
ONE_TEST = f"tests/test_model.py::test_unknown_spec_option_is_a_clear_error[{NAME}]"


def _pytest(tmp_path, *plugin_lines: str, path_first: str | None = None, workers: int = 0):
    """pytest on one test of the `NAME` backend in a fresh process, with a plugin of
    `plugin_lines` loaded first, and NIN_REQUIRE_ALL_BACKENDS unset (as `make test`); on
    `workers` pytest-xdist workers (0: in the one process)."""
    (tmp_path / "harness_plugin.py").write_text("\n".join(plugin_lines) + "\n")
    environment = {
        key: value for key, value in os.environ.items() if key != "NIN_REQUIRE_ALL_BACKENDS"
    }
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [path_first, str(tmp_path), str(ROOT)])
    )
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "harness_plugin",
            "-q",
            "-p",
            "no:cacheprovider",
            "-n",
            str(workers),
            ONE_TEST,
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=bound(None, WHOLE_RUN_STARTUPS),
    )


@pytest.mark.parametrize("workers", [0, 2], ids=["one process", "pytest-xdist"])
def test_a_missing_framework_is_a_skip_with_one_loud_line(tmp_path, workers):
    # sys.modules[name] = None: find_spec says "not installed", and an import fails. With
    # pytest-xdist the skip happens in a worker, and the line is the controller's to print.
    result = _pytest(tmp_path, "import sys", f"sys.modules[{FRAMEWORK!r}] = None", workers=workers)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "1 skipped" in result.stdout
    assert f"NOT EVERY BACKEND WAS TESTED: {NAME} skipped" in result.stdout


def test_an_installed_framework_that_fails_to_import_is_a_failure(tmp_path):
    fake = tmp_path / "broken" / FRAMEWORK
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise AttributeError(\"module 'numpy' has no attribute 'bool'\")\n"
    )
    result = _pytest(tmp_path, "", path_first=str(tmp_path / "broken"))
    assert result.returncode == 1, result.stdout[-2000:]
    assert "fails to import" in result.stdout and "this is a failure" in result.stdout
    assert "NOT EVERY BACKEND WAS TESTED" not in result.stdout


def test_an_error_in_the_backend_package_is_raised_not_skipped(monkeypatch):
    real = backends.importlib.import_module

    def package_with_a_bug(name, *args, **kwargs):
        if name == BACKENDS[NAME].package:
            raise NameError("name 'conv_blok' is not defined")
        return real(name, *args, **kwargs)

    get_backend(NAME)  # installed and importing (else a skip; a failure in CI)
    monkeypatch.setattr(backends.importlib, "import_module", package_with_a_bug)
    with pytest.raises(NameError, match="conv_blok"):  # not BackendUnavailable: not a skip
        backends.load_backend(NAME)
