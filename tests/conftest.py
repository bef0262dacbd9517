"""One `backend` fixture for the whole suite, as POT's conftest does.

A backend whose framework is missing is skipped with a reason, except when
NIN_REQUIRE_ALL_BACKENDS is set (CI sets it in .ci/run): then the skip is a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.backends import BACKENDS, BackendUnavailable, is_installed, load_backend
from common.platform.launcher import thread_environment

from .processes import WHOLE_RUN_STARTUPS, bound

REQUIRE_ALL = bool(os.environ.get("NIN_REQUIRE_ALL_BACKENDS"))
# Every module a backend's framework is: what framework-free code must never import.
FRAMEWORK_MODULES = frozenset(
    module for info in BACKENDS.values() for module in (info.framework, *info.model_modules)
)
ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, *argv: str, startups: float = WHOLE_RUN_STARTUPS) -> str:
    """The standard output of `code` run by a fresh Python in the project root, which must
    exit 0 (its stderr's end is the failure message otherwise): for what only a new process
    shows, such as which modules an import pulls in or settings made at start-up. It may take
    `startups` times a measured framework start-up."""
    result = subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=bound(None, startups),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def skip_or_fail(reason: str):
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (NIN_REQUIRE_ALL_BACKENDS is set, so this is a failure)")
    pytest.skip(reason)


def get_backend(name: str):
    """The backend package; a skip (a failure in CI) when its framework is not installed, and
    always a failure when it is installed but fails to import: that is broken, not absent."""
    try:
        return load_backend(name)
    except BackendUnavailable as error:
        if is_installed(name):
            pytest.fail(f"{error} (the framework is installed, so this is a failure)")
        skip_or_fail(str(error))


def pytest_configure(config):
    """Under pytest-xdist (`make test` runs a worker per core), the workers share the cores as
    `nin train --workers N` shares them, so two workers' operators do not each start a thread
    per core and fight over them (the user's own settings win). Set before any test module
    loads a framework, since most read their thread counts once, as they load."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        os.environ.update(thread_environment(workers))


# Modules whose session-scoped caches serve several backends' tests (a run in one framework
# continued or scored in the others): one pytest-xdist worker runs the whole module.
ONE_WORKER_MODULES = frozenset({"test_checkpoint", "test_onnx", "test_parity"})


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(items):
    """How pytest-xdist (`--dist loadgroup`) shares the tests out. A module's tests for one
    backend go to one worker, as pytest runs them anyway (module fixtures are rebuilt for each
    backend), and a module in ONE_WORKER_MODULES goes whole; a slow test (minutes of training,
    its run shared between workers under a file lock) goes alone. The slow tests come first,
    so that no worker is left finishing a long run alone at the end."""
    for item in items:
        if item.get_closest_marker("slow") or item.get_closest_marker("xdist_group"):
            continue
        module = item.module.__name__.rpartition(".")[2]
        backend_name = getattr(item, "callspec", None) and item.callspec.params.get("backend")
        group = module if module in ONE_WORKER_MODULES else f"{module}-{backend_name or 'all'}"
        item.add_marker(pytest.mark.xdist_group(group))
    result = yield
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # after pytest's own order
    return result


@pytest.fixture(scope="session")
def shared_tmp_path(tmp_path_factory) -> Path:
    """A folder every pytest-xdist worker of this session sees (their base folders' parent;
    the base folder itself without xdist): for work that one worker does and the others read,
    under a `filelock.FileLock`, instead of each worker doing it again."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def pytest_terminal_summary(terminalreporter):
    """One line no one can miss when a backend was not tested. Its names come from the
    registry, not from the skips this process saw: under pytest-xdist the workers skip, and
    this is the controller. (A framework that is not installed is always a skip, and an
    installed one never is.)"""
    missing = [name for name in BACKENDS if not is_installed(name)]
    if missing:
        terminalreporter.write_line(
            f"NOT EVERY BACKEND WAS TESTED: {', '.join(missing)} skipped "
            f"(framework not installed; `make setup` installs all {len(BACKENDS)})",
            red=True,
            bold=True,
        )


# pytest runs the suite backend by backend (the session-scoped parameter below groups the
# tests), entering each module once per backend and tearing its module-scoped fixtures down
# each time it leaves: a fixture that caches work for several backends (runs, exports) is
# session-scoped, or it is done again on every visit.
@pytest.fixture(params=list(BACKENDS), scope="session")
def backend(request):
    """A registry backend's package (nin_torch, nin_mxnet, ...), imported lazily."""
    return get_backend(request.param)


@pytest.fixture(scope="session")
def fashion_mnist():
    """The real data set. Only a data folder that is not there at all is a skip (a failure in
    CI); a file that is there but wrong fails, so a reader bug can never hide as a skip."""
    from common.data import load_fashion_mnist, resolve_data_dir

    directory = resolve_data_dir()
    if not directory.is_dir():
        skip_or_fail(
            f"real Fashion-MNIST is not installed ({directory} does not exist; "
            "`make setup` installs it)"
        )
    return load_fashion_mnist()
