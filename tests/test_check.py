"""``nin check``: readers' NiNs in all four frameworks, judged as they should be.

The corpus (tests/readers/<framework>/) holds files written as readers write them: the book's
code as it is (it imports d2l, which is not installed, and trains at module level), other
styles (a subclassed Module or HybridBlock, the Keras functional API and a subclassed Model, a
Flax ``@nn.compact`` module and an NNX one, a factory function, a notebook), and at least eight
distinct mistakes per framework. Each file is checked by
:func:`common.check.runner.check_file`, what ``nin check``'s process runs, all of one
framework's files in one process (at 96 px, which every mistake survives, for speed; the JAX
book's files at 224, where its 5x5 average pool is global); the command itself is tested
below on a few of them, at the book's 224 px.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from common.backends import BACKENDS, FRAMEWORK_LABELS, listed
from common.spec import make_spec

from .conftest import ROOT, get_backend, run_python
from .processes import WHOLE_RUN_STARTUPS, bound

READERS = Path(__file__).resolve().parent / "readers"


@dataclass(frozen=True)
class Case:
    target: str  # relative to tests/readers, PATH[:NAME]
    status: int  # nin check's exit status
    says: str  # a regular expression the verdict or a finding matches
    options: dict = field(default_factory=dict)  # the model flags, as spec options
    size: int = 96

    @property
    def backend(self) -> str:
        return self.target.split("/")[0]

    @property
    def id(self) -> str:
        flags = [f"{key}={value}" for key, value in self.options.items()]
        flags += [f"size={self.size}"] if self.size != 96 else []
        return self.target + (f"[{','.join(flags)}]" if flags else "")


BOOK = r"this is the book's NiN"
FIRST = r"it differs from the book's NiN: "

CASES = [
    # -- PyTorch ---------------------------------------------------------------------------
    Case("torch/book.py", 0, BOOK),  # imports d2l, trains at module level
    Case("torch/d2l_classifier.py", 0, BOOK),  # d2l.Classifier, d2l.Trainer
    Case("torch/subclass.py", 0, BOOK),  # F.relu, F.max_pool2d, torch.flatten
    Case("torch/notebook.ipynb", 0, BOOK),  # cells, magics
    Case("torch/factory.py:get_net", 0, BOOK),
    Case(
        "torch/factory.py",
        2,
        r"no model in factory\.py.*functions that may return one: "
        r"get_net",
    ),
    Case(
        "torch/stride3.py",
        1,
        FIRST + r"nin_block_1\.0, your net\.0\.0, Conv2d: stride 3 "
        r"instead of 4",
    ),
    Case("torch/padding1.py", 1, FIRST + r"nin_block_1\.0, .*padding 1 instead of 0"),
    Case("torch/pool_inside.py", 1, FIRST + r"pooling inside nin_block_1"),
    Case(
        "torch/one_1x1.py",
        1,
        r"this is nin\(num_1x1=1\) \(1 1x1 convolution per block, "
        r"exercise 2's variant\).*`--num-1x1 1`",
    ),
    Case("torch/one_1x1.py", 0, r"this is nin\(num_1x1=1\)", {"num_1x1": 1}),
    Case(
        "torch/missing_relu.py",
        1,
        FIRST + r"no ReLU after nin_block_3\.1 "
        r"\(net\.blocks\.2\.1, Conv2d\)",
    ),
    Case(
        "torch/max_global_pool.py",
        1,
        FIRST + r"net\.8, AdaptiveMaxPool2d: global max "
        r"pooling instead of global average",
    ),
    Case("torch/no_flatten.py", 1, FIRST + r"missing flatten or reshape.*\(1, 10, 1, 1\)"),
    Case(
        "torch/no_dropout.py",
        1,
        FIRST + r"no dropout .*Dropout\(0\.5\) between max_pool_3 "
        r"and nin_block_4",
    ),
    Case(
        "torch/dropout_moved.py",
        1,
        FIRST + r"a dropout after max_pool_1 \(net\.2, "
        r"Dropout\)",
    ),
    Case(
        "torch/channels_256.py",
        1,
        FIRST + r"nin_block_3\.0, your net\.4\.0, Conv2d: 256 "
        r"channels instead of 384",
    ),
    Case("torch/linear_head.py", 1, r"the linear head.*`--linear-head`"),
    Case("torch/linear_head.py", 0, r"this is nin\(final_relu=False\)", {"final_relu": False}),
    Case("torch/lenet.py", 1, r"not a NiN: it has 1 dense layer"),
    Case(
        "torch/syntax_error.py",
        2,
        r"^syntax_error\.py, line 18: SyntaxError: invalid "
        r"syntax\. Perhaps you forgot a comma\?$",
    ),
    Case(
        "torch/relu_typo.py",
        2,
        r"^relu_typo\.py, line 11 \(in nin_block, run by line 14\): "
        r"AttributeError: module 'torch\.nn' has no attribute 'ReLu'",
    ),
    Case(
        "torch/strides_typo.py",
        2,
        r"^strides_typo\.py, line 9 .*TypeError: .*unexpected "
        r"keyword argument 'strides'",
    ),
    # -- MXNet Gluon -------------------------------------------------------------------------
    Case("mxnet/book.py", 0, BOOK),  # npx.set_np(), net.add, d2l training
    Case("mxnet/d2lzh.py", 0, BOOK),  # import d2lzh, NDArrays, hybridized
    Case("mxnet/hybrid_subclass.py", 0, BOOK),  # F.Pooling, F.Flatten in hybrid_forward
    Case("mxnet/never_initialized.py", 0, BOOK),
    Case(
        "mxnet/stride3.py",
        1,
        FIRST + r"nin_block_1\.0, your net\.0\.0, Conv2D: stride 3 "
        r"instead of 4",
    ),
    Case("mxnet/padding1.py", 1, FIRST + r"nin_block_1\.0, .*padding 1 instead of 0"),
    Case("mxnet/pool_inside.py", 1, FIRST + r"pooling inside nin_block_2"),
    Case("mxnet/one_1x1.py", 1, r"this is nin\(num_1x1=1\).*`--num-1x1 1`"),
    Case("mxnet/one_1x1.py", 0, r"this is nin\(num_1x1=1\)", {"num_1x1": 1}),
    Case(
        "mxnet/missing_relu.py",
        1,
        FIRST + r"no ReLU after nin_block_1\.2 \(net\.0\.2, "
        r"Conv2D\)",
    ),
    Case("mxnet/max_global_pool.py", 1, FIRST + r"net\.8, GlobalMaxPool2D: global max pooling"),
    Case("mxnet/no_flatten.py", 1, FIRST + r"missing flatten or reshape"),
    Case("mxnet/dropout_moved.py", 1, FIRST + r"a dropout after max_pool_2"),
    Case("mxnet/channels_256.py", 1, FIRST + r"nin_block_3\.0, .*256 channels instead of 384"),
    Case(
        "mxnet/nin_s.py",
        1,
        r"this is nin-s \(NIN-S, exercise 5's family\).*`--model "
        r"nin-s`",
    ),
    Case("mxnet/nin_s.py", 0, r"this is nin-s", {"spec": "nin-s"}),
    Case("mxnet/syntax_error.py", 2, r"^syntax_error\.py, line 22: SyntaxError"),
    # -- Keras 3 ----------------------------------------------------------------------------
    Case("tf/book.py:net", 0, BOOK),  # a function, Reshape after the pooling
    Case("tf/book.py", 2, r"no model in book\.py.*functions that may return one: net"),
    Case("tf/functional.py", 0, BOOK, size=224),  # fixed input size; keras.datasets
    Case("tf/subclass.py", 0, BOOK),  # tf.nn.relu, tf.reduce_mean in call()
    Case("tf/stride3.py:net", 1, FIRST + r"nin_block_1\.0, .*Conv2D: stride 3 instead of 4"),
    Case(
        "tf/padding_same.py:net",
        1,
        FIRST + r"nin_block_1\.0, .*padding 'same' instead "
        r"of 0",
    ),
    Case("tf/pool_inside.py:net", 1, FIRST + r"pooling inside nin_block_1"),
    Case("tf/one_1x1.py:net", 1, r"this is nin\(num_1x1=1\).*`--num-1x1 1`"),
    Case("tf/missing_relu.py:net", 1, FIRST + r"no ReLU after nin_block_1\.1"),
    Case(
        "tf/max_global_pool.py:net",
        1,
        FIRST + r"net\.global_max_pooling2d(_\d+)?, GlobalMaxPooling2D: global max pooling",
    ),
    Case("tf/no_flatten.py:net", 1, FIRST + r"missing flatten or reshape.*\(1, 10, 1, 1\)"),
    Case("tf/no_dropout.py:net", 1, FIRST + r"no dropout"),
    Case(
        "tf/channels_256.py:net",
        1,
        FIRST + r"nin_block_3\.0, .*256 channels instead of "
        r"384",
    ),
    Case(
        "tf/gradual_head.py:net",
        1,
        r"this is nin\(head_width=96\) \(a gradual head of "
        r"width 96, exercise 4's variant\).*`--head-width 96`",
    ),
    Case("tf/gradual_head.py:net", 0, r"this is nin\(head_width=96\)", {"head_width": 96}),
    Case("tf/syntax_error.py", 2, r"^syntax_error\.py, line 21: SyntaxError"),
    # -- JAX (Flax) ---------------------------------------------------------------------------
    # The book's JAX tab: a linen d2l.Classifier with setup(), nn.Sequential with lambdas,
    # NHWC, and a 5x5 average pool for global pooling, which is global at 224 px only: the
    # book's files are checked at 224 (at 96 the pool's window is larger than the 1x1 map).
    Case("jax/book.py", 0, BOOK, size=224),
    Case(
        "jax/book.py",
        1,
        r"^it fails at 96x96 px: in model\.net\.layers_8: ValueError: its output is empty, "
        r"\(1, 10, 0, 0\) of \(1, 10, 1, 1\): a pooling window larger than the map\?$",
    ),
    Case(
        "jax/book.py",
        1,
        FIRST + r"model\.net\.layers_8, lambda: 5x5 average pooling, "
        r"stride 1: an average pool with a fixed 5x5 window",
        size=256,
    ),
    Case("jax/compact.py", 0, BOOK),  # @nn.compact, nn.relu, nn.max_pool, jnp.mean
    Case("jax/nnx_module.py", 0, BOOK),  # Flax NNX, model.eval()
    Case("jax/factory.py:get_net", 0, BOOK),  # nnx.Sequential, partial(nnx.max_pool)
    Case("jax/factory.py", 2, r"no model in factory\.py.*functions that may return one: get_net"),
    Case(
        "jax/stride3.py",
        1,
        FIRST + r"nin_block_1\.0, your model\.net\.layers_0\.layers_0, Conv: stride 3 instead of 4",
        size=224,
    ),
    Case(
        "jax/padding_same.py",
        1,
        FIRST + r"nin_block_1\.0, .*Conv: padding 'same' instead of 0",
        size=224,
    ),
    Case("jax/pool_inside.py", 1, FIRST + r"pooling inside nin_block_1: lambda: 3x3 max", size=224),
    Case("jax/one_1x1.py", 1, r"this is nin\(num_1x1=1\).*`--num-1x1 1`", size=224),
    Case("jax/one_1x1.py", 0, r"this is nin\(num_1x1=1\)", {"num_1x1": 1}, size=224),
    Case(
        "jax/missing_relu.py",
        1,
        FIRST + r"no ReLU after nin_block_1\.2 \(model\.net\.layers_0\.layers_4, Conv\)",
        size=224,
    ),
    Case(
        "jax/max_global_pool.py",
        1,
        FIRST + r"model\.net\.layers_8, lambda: global max pooling: global max pooling instead",
        size=224,
    ),
    Case("jax/no_flatten.py", 1, FIRST + r"missing flatten or reshape.*\(1, 10, 1, 1\)", size=224),
    Case(
        "jax/no_dropout.py", 1, FIRST + r"no dropout .*Dropout\(0\.5\) between max_pool_3", size=224
    ),
    Case(
        "jax/dropout_moved.py",
        1,
        FIRST + r"a dropout after max_pool_1 \(model\.net\.layers_2, Dropout\)",
        size=224,
    ),
    Case(
        "jax/channels_256.py",
        1,
        FIRST + r"nin_block_3\.0, .*Conv: 256 channels instead of 384",
        size=224,
    ),
    Case(
        "jax/dropout_always_on.py",
        2,  # deterministic=False: the book's layer_summary needs a dropout key, as in d2l
        r"^dropout_always_on\.py, line 36: InvalidRngError: layers_6 needs PRNG for \"dropout\"",
    ),
    Case(
        "jax/compact_dropout_on.py",
        1,
        FIRST + r"the model is random in inference mode: dropout that ignores the mode",
    ),
    Case(
        "jax/broken_call.py",
        1,
        r"^it fails at 96x96 px: in net: TypeError: NiN\.__call__\(\) missing 1 required "
        r"positional argument: 'scale'$",
    ),
    Case("jax/syntax_error.py", 2, r"^syntax_error\.py, line 25: SyntaxError"),
    Case(
        "jax/stride_typo.py",
        2,
        r"^stride_typo\.py, line 10 \(in nin_block, run by line 36\): TypeError: .*"
        r"unexpected keyword argument 'stride'",
    ),
    Case(
        "tf/stride_typo.py:net",
        2,
        r"^stride_typo\.py, line 10 .*Unrecognized keyword "
        r"arguments passed to Conv2D: \{'stride': 4\}",
    ),
]

# The backends whose readers' files a corpus holds: all of them (JAX's are Flax modules).
CORPUS = [name for name in BACKENDS if (READERS / name).is_dir()]
# Every file of the corpus is a case, and every framework has at least eight mistakes.
MISTAKES = {
    name: {case.target for case in CASES if case.backend == name and case.status} for name in CORPUS
}

# Checks each case in turn, in one process, as the runner does: prints one JSON per case.
DRIVER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from common import d2l
    from common.tools.check.runner import CheckError, _reset_frameworks, check_file, split_target
    from common.spec import make_spec

    d2l.install()
    for case in json.loads(sys.argv[1]):
        path, name = split_target(case["target"])
        options = dict(case["options"])
        spec = make_spec(options.pop("spec", None), **options)
        sys.path.insert(0, str(Path(path).parent))
        try:
            data = check_file(path, name, spec, case["size"]).to_dict()
        except CheckError as error:
            data = {"error": str(error)}
        finally:
            sys.path.pop(0)
            _reset_frameworks()
        print("RESULT " + json.dumps(data), flush=True)
""")

_RESULTS: dict[str, dict[str, dict]] = {}


def results(backend: str) -> dict[str, dict]:
    """What the checker says of every case of one framework (checked once per session)."""
    if backend not in _RESULTS:
        get_backend(backend)  # a framework that is missing skips (fails in CI)
        cases = [case for case in CASES if case.backend == backend]
        payload = json.dumps(
            [
                {"target": str(READERS / case.target), "options": case.options, "size": case.size}
                for case in cases
            ]
        )
        output = run_python(DRIVER, payload, startups=3 * WHOLE_RUN_STARTUPS)  # every file
        lines = [
            json.loads(line[len("RESULT ") :])
            for line in output.splitlines()
            if line.startswith("RESULT ")
        ]
        assert len(lines) == len(cases)
        _RESULTS[backend] = {case.id: data for case, data in zip(cases, lines)}
    return _RESULTS[backend]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_the_corpus_is_judged_as_it_should_be(case):
    found = results(case.backend)[case.id]
    if case.status == 2:
        assert "error" in found, found.get("verdict")
        assert re.search(case.says, found["error"]), found["error"]
        return
    assert "error" not in found, found["error"]
    text = "\n".join([found["verdict"], *(item["text"] for item in found["findings"])])
    assert found["status"] == case.status, text
    assert re.search(case.says, found["verdict"]), text
    if case.status == 0:
        assert found["findings"] == [] and found["max_logit_difference"] < 1e-4
        assert found["max_gradient_difference"] is not None
    if case.target == "torch/subclass.py":  # an import of a module that is not installed
        assert (
            "subclass.py, line 6: fashion_helpers is not installed; import skipped"
            in found["notes"]
        ), found["notes"]


def test_every_file_of_the_corpus_is_a_case_with_eight_mistakes_per_framework():
    files = {
        str(path.relative_to(READERS))
        for path in READERS.rglob("*")
        if path.suffix in (".py", ".ipynb")
    }
    assert files == {case.target.split(":")[0] for case in CASES}
    for name, mistakes in MISTAKES.items():
        assert len({target.split(":")[0] for target in mistakes}) >= 8, name


def test_the_book_files_import_d2l_which_is_not_installed():
    """The book's files are checked without d2l: the corpus proves it only if it is absent."""
    import importlib.util

    assert importlib.util.find_spec("d2l") is None
    for name in CORPUS:
        assert "from d2l import" in (READERS / name / "book.py").read_text()


# -- the Python API ----------------------------------------------------------------------------


def test_check_model_in_a_notebook_cell_leaves_the_model_as_it_was(backend):
    """check_model sets other weights on the reader's layers to compare numbers; afterwards
    every weight is back, bit for bit, and the model is still a NiN that passes."""
    from common.tools.check import check_model

    net = backend.build_nin(seed=5)
    before = backend.get_weights(net)
    result = check_model(net, size=96)
    assert result.passed and result.status == 0, result.render()
    after = backend.get_weights(net)
    assert all(np.array_equal(before[key], after[key]) for key in before)
    assert "Verdict: this is the book's NiN" in str(result)
    assert result._repr_markdown_().startswith("# nin check: net")


def test_check_model_names_a_variant_given_as_options(backend):
    from common.tools.check import check_model

    net = backend.build_nin(num_1x1=1)
    assert check_model(net, size=96).status == 1
    assert check_model(net, size=96, num_1x1=1).passed


def test_the_jax_probe_reads_a_dense_layer_after_a_flatten_in_the_canonical_order():
    """Flax flattens NHWC maps in (H, W, C) order: the probe sets the dense kernel and reports
    its input in the reference's (C, H, W) order (AlexNet, the spec that has one)."""
    jax_backend = get_backend("jax")
    from common import reference
    from common.tools.check.model import slot_arrays
    from common.weights import param_slots, probe_weights
    from nin_jax import probe

    spec = make_spec("alexnet")
    net = jax_backend.build_nin(spec)
    size = spec.input_size
    probe.trace(net, (1, 1, size, size))
    arrays = probe_weights(spec, 0)
    probe.set_weights(net, slot_arrays(spec, arrays))
    images = np.random.default_rng(0).random((2, 1, size, size), dtype=np.float32)
    logits, inputs = probe.run(net, images)
    expected = reference.forward(spec, arrays, images, capture=True)
    assert np.allclose(logits, expected.logits, atol=1e-4)
    for number, slot in enumerate(param_slots(spec)):
        assert np.allclose(inputs[number], expected.slot_inputs[slot.name], atol=1e-4), slot


def test_check_model_refuses_what_is_not_a_model():
    from common.tools.check import NotAModel, check_model

    labels = listed(FRAMEWORK_LABELS.values(), "or")
    with pytest.raises(NotAModel, match=f"not a model of {re.escape(labels)}$"):
        check_model(object())


# -- the command -------------------------------------------------------------------------------


def nin(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "common.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=bound(None, WHOLE_RUN_STARTUPS),
    )


def book_model(name: str) -> str:
    """What the book's file calls its model: `net`, or `model` where a d2l.Classifier is
    trained at module level (the JAX tab)."""
    text = (READERS / name / "book.py").read_text()
    return "model" if re.search(r"^model = ", text, re.MULTILINE) else "net"


@pytest.mark.parametrize("name", CORPUS)
def test_nin_check_passes_the_books_own_file_at_224(name, tmp_path):
    get_backend(name)
    target = READERS / name / "book.py"
    model = book_model(name)
    report = tmp_path / "report.md"
    result = nin("check", f"{target}:{model}", "--report", report)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Verdict: this is the book's NiN" in result.stdout
    assert "checked against nin at 224x224" in result.stdout
    text = report.read_text()
    assert (
        text.startswith(f"# nin check: book.py:{model}")
        and "**Verdict:** this is the book's NiN" in text
        and "| nin_block_1 " in text
    )


def test_nin_check_judges_a_file_that_builds_this_projects_own_jax_model(tmp_path):
    """nin_jax's Network (a Flax module and its parameters), built in a reader's file, is a
    JAX model the command checks."""
    get_backend("jax")
    (tmp_path / "own.py").write_text(
        "import nin_jax as nin\n\nnet = nin.build_nin(seed=3)\nvariant = nin.build_nin(num_1x1=1)\n"
    )
    result = nin("check", tmp_path / "own.py:net", "--size", "96")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "a JAX model (nin_jax.model.Network)" in result.stdout
    variant = nin("check", tmp_path / "own.py:variant", "--size", "96")
    assert variant.returncode == 1 and "`--num-1x1 1` checks it as that" in variant.stdout


# What `from d2l import jax as d2l` gives a reader's file: the book's JAX helpers on Flax linen,
# and "not run" for what trains or loads data.
JAX_D2L = textwrap.dedent("""
    from common import d2l
    from flax import linen as nn

    d2l.install()
    from d2l import jax as d2l_jax

    assert issubclass(d2l_jax.Classifier, d2l_jax.Module) and issubclass(d2l_jax.Module, nn.Module)
    assert issubclass(d2l_jax.Module, d2l_jax.HyperParameters)
    assert d2l_jax.try_gpu().platform == "cpu" and d2l_jax.nn is nn

    class Net(d2l_jax.Classifier):
        lr: float = 0.1
        training: bool = True

        def setup(self):
            self.net = nn.Sequential([
                nn.Conv(4, (3, 3)), nn.relu, nn.Dropout(0.5, deterministic=not self.training),
                lambda x: x.reshape((x.shape[0], -1))])

    Net(training=False).layer_summary((1, 8, 8, 1))
    for name in ("Trainer", "FashionMNIST"):
        try:
            getattr(d2l_jax, name)()
        except d2l.NotAvailable as error:
            print("NOT RUN", error)
""")


def test_the_jax_d2l_stand_in_builds_the_books_flax_models():
    get_backend("jax")
    output = run_python(JAX_D2L)
    assert "Conv output shape:\t (1, 8, 8, 4)" in output
    assert "function output shape:\t (1, 256)" in output
    assert "NOT RUN d2l.Trainer is not run: the checker's stand-in for d2l does not train" in output
    assert "NOT RUN d2l.FashionMNIST is not run" in output


def test_nin_check_exits_1_and_names_the_variant_and_its_flags():
    get_backend("torch")
    result = nin("check", READERS / "torch" / "one_1x1.py", "--size", "96")
    assert result.returncode == 1
    assert "`--num-1x1 1` checks it as that" in result.stdout
    again = nin("check", READERS / "torch" / "one_1x1.py", "--size", "96", "--num-1x1", "1")
    assert again.returncode == 0, again.stdout


def test_a_file_with_d2l_installed_is_still_neither_trained_nor_fed(tmp_path):
    """An installed d2l is replaced by the stand-in: its training never runs."""
    get_backend("torch")
    fake = tmp_path / "site" / "d2l"
    fake.mkdir(parents=True)
    marker = tmp_path / "trained"
    (fake / "__init__.py").write_text("")
    (fake / "torch.py").write_text(
        f"def train_ch6(*a, **k):\n    open({str(marker)!r}, 'w')\n"
        f"def load_data_fashion_mnist(*a, **k):\n"
        f"    open({str(marker)!r}, 'w')\n    return None, None\n"
        "def try_gpu():\n    return 'cpu'\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "common.cli",
            "check",
            str(READERS / "torch" / "book.py"),
            "--size",
            "96",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=bound("torch", WHOLE_RUN_STARTUPS),
        env={**os.environ, "PYTHONPATH": f"{tmp_path / 'site'}{os.pathsep}{ROOT}"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not marker.exists()


LOOP = "import time\nwhile True:\n    time.sleep(0.05)\n"


@pytest.mark.parametrize(
    "files, args, message",
    [
        ({}, ["missing.py"], r"missing\.py does not exist"),
        ({"notes.txt": "hello"}, ["notes.txt"], r"expected a Python file \(\.py\) or a notebook"),
        (
            {"broken.ipynb": "{not json"},
            ["broken.ipynb"],
            r"broken\.ipynb is not a Jupyter "
            r"notebook",
        ),
        ({"empty.py": "x = 1\n"}, ["empty.py"], r"no model in empty\.py"),
        ({"empty.py": "x = 1\n"}, ["empty.py:net"], r"empty\.py has no 'net'"),
        ({"value.py": "net = 3\n"}, ["value.py:net"], r"net in value\.py is a int, not a model"),
        (
            {"loop.py": LOOP},
            ["loop.py", "--timeout", "3"],
            r"loop\.py did not finish within 3 s \(it was running loop\.py, line 2\); give more "
            r"with --timeout",
        ),
        (
            {"crash.py": "import os\nos.abort()\n"},
            ["crash.py"],
            r"the process running crash\.py died \(killed by SIGABRT\)",
        ),
        (
            {"x.py": "x = 1\n", "out.md": "mine"},
            ["x.py", "--report", "out.md"],
            r"out\.md exists; pass --force",
        ),
        (
            {"flax_typo.py": "from flax import linen as nn\n\nnet = nn.Conv(96, 11, stride=4)\n"},
            ["flax_typo.py"],
            r"flax_typo\.py, line 3: TypeError: Conv\.__init__\(\) got an unexpected keyword "
            r"argument 'stride'$",
        ),
        ({"x.py": "x = 1\n"}, ["x.py", "--size", "40"], r"needs images of at least 67x67"),
        (
            {"x.py": "x = 1\n"},
            ["x.py", "--model", "alexnet", "--num-1x1", "1"],
            r"--num-1x1 does not apply to --model alexnet",
        ),
    ],
)
def test_what_cannot_be_checked_is_one_line_and_exit_2(tmp_path, files, args, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = nin("check", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nin check: error: "), result.stderr
    assert re.search(message, lines[0]), lines[0]
    assert result.stdout == ""
    if "out.md" in files:
        assert (tmp_path / "out.md").read_text() == "mine"  # nothing the user had is lost


def test_help_says_the_file_is_executed_and_states_the_rules():
    result = nin("check", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for words in (
        "THE FILE IS EXECUTED",
        "top-level statements in order",
        'if __name__ == "__main__":',
        "is a note, not a failure",
        "would train or load data is never run",
        "the first statement that fails",
    ):
        assert words in text, words


def test_the_reference_spec_is_any_models_spec():
    """The flags pick the reference: it is the spec `nin train` would build with them."""
    from common.tools.check.analysis import variant_names

    names, flags, others = variant_names(
        make_spec("nin", num_1x1=1, final_relu=False), make_spec("nin")
    )
    assert flags == ["--num-1x1 1", "--linear-head"] and not others
