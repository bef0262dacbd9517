"""The design's rules, checked: one registry (no backend is named outside it), layers that
import only downwards, the public imports the docs show, and the backend contract."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
from pathlib import Path

import pytest

from common import api, distributed, training
from common.backends import BACKENDS

from .conftest import ROOT

NAMES = set(BACKENDS)
PACKAGES = {info.package for info in BACKENDS.values()}
REGISTRY = ROOT / "common" / "backends.py"


def _python_files(*folders: str) -> list[Path]:
    return sorted(
        path
        for folder in folders
        for path in (ROOT / folder).rglob("*.py")
        if "readers" not in path.relative_to(ROOT).parts
    )  # readers' own files


# -- one registry ----------------------------------------------------------------------------


def _named(node) -> bool:
    return isinstance(node, ast.Constant) and node.value in NAMES


def stray_backend_names(tree: ast.AST) -> list[tuple[int, str]]:
    """Where `tree` lists, keys or compares registered backend names: a collection literal
    of two or more different ones, a dict key, or an operand of a comparison (one name as
    an argument, ``get_backend("torch")`` or ``--backend torch``, picks a backend; it lists
    none)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            names = sorted({element.value for element in node.elts if _named(element)})
            if len(names) >= 2:
                found.append((node.lineno, f"a collection of backend names {names}"))
        elif isinstance(node, ast.Dict):
            keys = [key.value for key in node.keys if _named(key)]
            if keys:
                found.append((node.lineno, f"a dict keyed by backend names {keys}"))
        elif isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                elements = (
                    operand.elts
                    if isinstance(operand, (ast.List, ast.Tuple, ast.Set))
                    else [operand]
                )
                names = [element.value for element in elements if _named(element)]
                if names:
                    found.append((node.lineno, f"a comparison with backend names {names}"))
    return found


def test_no_backend_is_named_outside_the_registry():
    stray = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in _python_files("common", "tests")
        if path != REGISTRY
        for line, what in stray_backend_names(ast.parse(path.read_text()))
    ]
    assert not stray, "build these from common.backends.BACKENDS:\n" + "\n".join(stray)


def test_the_registry_rule_catches_what_it_should():
    caught = stray_backend_names(
        ast.parse(
            'COLORS = {"torch": "red"}\nNAMES = ("torch", "tf")\n'
            'if name == "mxnet": pass\nif name in ("tf", "other"): pass\n'
        )
    )
    assert [line for line, _ in caught] == [1, 2, 3, 4]
    assert not stray_backend_names(
        ast.parse(
            'get_backend("torch")\nargv = ["convert", "--from", "tf", "--to", "tf"]\nimport torch\n'
        )
    )


def test_every_entry_is_complete_and_its_package_agrees():
    for name, info in BACKENDS.items():
        assert info.name == name and info.package.startswith("nin_")
        assert (ROOT / info.package / "__init__.py").exists()
        assert info.label and info.color and info.distributions and info.model_modules
        assert info.book_path
        assert info.engine.description != "?" and info.engine.ports_needed(2) >= 1


# -- layers ------------------------------------------------------------------------------------

LAYERS = ("platform", "core", "backend", "tools", "cli")
# What each layer may import: downwards only. The backends build on the core and the
# platform; the tools (whole jobs) on the core; the CLI on everything.
ALLOWED = {
    "platform": {"platform"},
    "core": {"platform", "core"},
    "backend": {"platform", "core", "backend"},
    "tools": {"platform", "core", "tools"},
    "cli": {"platform", "core", "tools", "cli"},
}


def layer_of(module: str) -> str | None:
    """The layer of a module of this project (None: another package)."""
    parts = module.split(".")
    if parts[0] in PACKAGES:
        return "backend"
    if parts[0] != "common":
        return None
    if len(parts) > 1 and parts[1] in ("platform", "tools", "cli"):
        return parts[1]
    if len(parts) > 1 and parts[1] == "check":
        return "tools"  # common.check: the public name of common.tools.check
    return "core"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function, as absolute names (a
    name imported from a package counts as its submodule when it is one)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if importlib.util.find_spec(base.split(".")[0]) and _is_module(candidate):
                    found.add(candidate)
    return found


def _is_module(name: str) -> bool:
    path = ROOT / Path(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def wrong_imports(module: str, targets: set[str]) -> list[str]:
    """The imports of `module` that go up a layer, or into another backend."""
    source, wrong = layer_of(module), []
    for target in sorted(targets):
        layer = layer_of(target)
        if layer is None:
            continue
        if layer not in ALLOWED[source] or (
            source == layer == "backend" and target.split(".")[0] != module.split(".")[0]
        ):
            wrong.append(f"{module} ({source}) imports {target} ({layer})")
    return wrong


def upward_imports() -> list[str]:
    return [
        line
        for path in _python_files("common", *sorted(PACKAGES))
        for line in wrong_imports(_module_name(path), imported_modules(path))
    ]


def test_layers_import_only_downwards():
    assert not upward_imports(), "\n".join(upward_imports())


def test_every_module_is_in_a_layer_and_the_layout_shows_them():
    layers = {layer_of(_module_name(path)) for path in _python_files("common", *PACKAGES)}
    assert layers == set(LAYERS)
    assert {"threads", "memory", "files", "launcher", "engines", "machine"} <= {
        path.stem for path in (ROOT / "common" / "platform").glob("*.py")
    }


def test_the_layer_rule_catches_an_upward_import():
    assert wrong_imports("common.training", {"common.tools.runs", "numpy"}) == [
        "common.training (core) imports common.tools.runs (tools)"
    ]
    assert wrong_imports("common.platform.launcher", {"common.backends"})
    assert wrong_imports("nin_torch.model", {"nin_tf.model"})
    assert wrong_imports("nin_torch.train", {"common.tools.checkpoint"})
    assert not wrong_imports("common.tools.runs", {"common.spec", "common.platform.files"})
    assert not wrong_imports("nin_torch.train", {"nin_torch.model", "common.training"})


# -- the public imports the docs show ------------------------------------------------------------

FROM_IMPORT = re.compile(r"from (common(?:\.\w+)*) import ([\w, ]+)")
DOTTED = re.compile(r"`(common(?:\.\w+)+)")


def documented_imports() -> set[str]:
    """Every ``from common... import name`` (as common...name) and `common.x.name` in the
    README, the docs and the notebook."""
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    sources = [path.read_text() for path in texts]
    notebook = json.loads((ROOT / "docs" / "nin.ipynb").read_text())
    sources += ["".join(cell["source"]) for cell in notebook["cells"]]
    found = set()
    for text in sources:
        for module, names in FROM_IMPORT.findall(text):
            found |= {f"{module}.{name.strip()}" for name in names.split(",") if name.strip()}
        found |= set(DOTTED.findall(text))
    return found


def resolves(dotted: str) -> bool:
    """Whether `dotted` (``common.training.Recipe.book``) names something: its longest
    importable prefix, then attributes."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            if not hasattr(found, name):
                return False
            found = getattr(found, name)
        return True
    return False


def test_every_documented_import_works():
    names = documented_imports()
    assert {"common.data.load_data", "common.check.check_model", "common.training.Recipe"} <= names
    assert not resolves("common.data.no_such_thing") and not resolves("common.nowhere")
    broken = sorted(name for name in names if not resolves(name))
    assert not broken, broken


# -- the backend contract ------------------------------------------------------------------------

HOOKS = (
    "_train_step",
    "_set_learning_rate",
    "_seed_dropout",
    "predict",
    "weights_finite",
    "optimizer_state",
    "load_optimizer_state",
    "device",
)


def _compatible(implementation, declared) -> list[str]:
    """How `implementation`'s signature fails the contract's `declared` one (no self)."""
    have = inspect.signature(implementation).parameters
    want = [
        parameter
        for parameter in inspect.signature(declared).parameters.values()
        if parameter.name != "self"
    ]
    problems = []
    for parameter in want:
        other = have.get(parameter.name)
        if other is None:
            problems.append(f"no parameter {parameter.name}")
        elif other.kind != parameter.kind and parameter.kind != parameter.VAR_KEYWORD:
            problems.append(f"{parameter.name} is {other.kind.description}")
        elif (parameter.default is not parameter.empty) and other.default is other.empty:
            problems.append(f"{parameter.name} has no default")
    extra = [
        parameter
        for name, parameter in have.items()
        if name not in {p.name for p in want}
        and parameter.default is parameter.empty
        and parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL)
    ]
    problems += [f"{parameter.name} is required but not in the contract" for parameter in extra]
    return problems


def test_each_backend_keeps_the_contract(backend):
    assert sorted(backend.__all__) == api.PUBLIC_API
    assert BACKENDS[backend.BACKEND].package == backend.__name__
    broken = {}
    for name, declared in vars(api.Backend).items():
        if callable(declared) and not name.startswith("_"):
            problems = _compatible(getattr(backend, name), declared)
            if problems:
                broken[name] = problems
    assert not broken, broken
    assert issubclass(backend.Trainer, training.Trainer)
    for hook in HOOKS:
        assert getattr(backend.Trainer, hook) is not getattr(training.Trainer, hook), hook


def test_the_shared_functions_are_the_same_objects_in_every_backend(backend):
    for name in api.__all__:
        assert getattr(backend, name) is getattr(api, name), name
    assert backend.train == backend.Trainer.train


def test_each_backend_has_one_worker_step(backend):
    engine = importlib.import_module(f"{backend.__name__}.distributed")
    assert issubclass(engine.Group, distributed.Group)
    assert issubclass(engine.Trainer, distributed.DataParallel)
    assert issubclass(engine.Trainer, backend.Trainer)
    # The worker shares the backend's one step; it changes only how gradients are summed.
    assert engine.Trainer._train_step is backend.Trainer._train_step
    assert "_step" not in vars(engine.Trainer) and "_shard_step" not in vars(engine.Trainer)


def test_the_contract_check_catches_a_wrong_signature():
    def predict_logits(net, images):  # no batch_size
        pass

    def get_weights(net, *, strict):  # a required extra
        pass

    assert _compatible(predict_logits, api.Backend.predict_logits) == ["no parameter batch_size"]
    assert _compatible(get_weights, api.Backend.get_weights) == [
        "strict is required but not in the contract"
    ]


@pytest.mark.parametrize("name", sorted(NAMES))
def test_a_model_is_told_to_its_backend_by_type(name):
    from tests.conftest import get_backend

    backend = get_backend(name)
    assert api.backend_for(backend.build_nin()) is backend
    with pytest.raises(TypeError, match="not a model of any backend"):
        api.backend_for(object())
