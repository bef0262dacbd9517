"""Planted bugs: realistic mistakes, each of which a named test must catch (`make planted`).

For each bug, in a copy of the working tree (every file git tracks or would track, as it is
now), the script applies the bug's edits, runs the named tests with pytest and expects one of
them to fail; then it puts the files back. Before the bugs, the same tests run on the
unchanged copy and must pass (the control: a test that fails anyway catches nothing). It
prints one line per bug (caught or not, by which test, in how many seconds) and exits 1 if
any bug was not caught, an edit no longer applies or the control failed.
docs/reliability.md ("Planted bugs") records a run. Not part of CI: it takes minutes per
framework.

    python tools/planted.py [--list] [--no-control] [NAME-SUBSTRING ...]

It lives outside common/ and tests/ because it names the backends each bug is planted in;
their files are found through the registry (``BACKENDS[name].package``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.backends import BACKENDS  # noqa: E402


@dataclass(frozen=True)
class Edit:
    path: str  # relative to the root
    old: str  # must occur exactly once
    new: str


@dataclass(frozen=True)
class Bug:
    name: str
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]  # pytest node ids; one of them must fail


def package(backend: str, module: str) -> str:
    """The path of a backend package's module, from the registry."""
    return f"{BACKENDS[backend].package}/{module}.py"


def node(file: str, test: str, *params: str) -> str:
    return f"tests/{file}::{test}" + (f"[{'-'.join(params)}]" if params else "")


def dropout(backend: str, rate: str = "default") -> str:
    return node("test_dropout_rate.py", "test_a_training_step_drops_the_specs_rate", backend, rate)


def lockstep(backend: str, recipe: str) -> str:
    return node("test_parity.py", "test_lockstep_training_matches_torch", backend, recipe)


def partial(first: str, second: str, optimizer: str = "sgd") -> str:
    return node(
        "test_partial_batches.py",
        "test_partial_last_batches_train_in_lock_step",
        optimizer,
        first,
        second,
    )


FILES = "common/platform/files.py"
LOOP = "common/training.py"
# optax's chain in nin_jax.train.optimizer: clipping, then L2.
CLIP = (
    "    if recipe.clip_norm:\n        chain.append(optax.clip_by_global_norm(recipe.clip_norm))\n"
)
DECAY = (
    "    if recipe.weight_decay:\n"
    "        chain.append(optax.add_decayed_weights(recipe.weight_decay))\n"
)

BUGS = [
    # -- the dropout rate a trainer trains with (docs/reliability.md: "Planted bugs") --------
    Bug(
        "torch: the trainer sets dropout to 0.25",
        (
            Edit(
                package("torch", "train"),
                "                module.inplace = fast\n",
                "                module.inplace = fast\n"
                "            if isinstance(module, nn.Dropout):\n"
                "                module.p = 0.25\n",
            ),
        ),
        (dropout("torch"),),
    ),
    Bug(
        "mxnet: the trainer sets dropout to 0.25",
        (
            Edit(
                package("mxnet", "train"),
                "        self.ctx = _context(net)\n",
                "        self.ctx = _context(net)\n        for block in net:\n"
                "            if isinstance(block, gluon.nn.Dropout):\n"
                "                block._rate = 0.25\n",
            ),
        ),
        (dropout("mxnet"),),
    ),
    Bug(
        "tf: the trainer sets dropout to 0.25",
        (
            Edit(
                package("tf", "train"),
                '        recipe = self.recipe\n        if recipe.optimizer == "adam":\n',
                "        for layer in _dropout_layers(net):\n            layer.rate = 0.25\n"
                '        recipe = self.recipe\n        if recipe.optimizer == "adam":\n',
            ),
        ),
        (dropout("tf"),),
    ),
    Bug(
        "jax: the trainer rebuilds the module with dropout 0.25",
        (
            Edit(
                package("jax", "train"),
                "import functools\n",
                "import dataclasses\nimport functools\n",
            ),
            Edit(
                package("jax", "train"),
                "        self.module = net.module.clone(fast_pooling=fast)\n",
                "        layers = tuple(\n"
                "            dataclasses.replace(layer, rate=0.25)\n"
                "            if hasattr(layer, 'rate') else layer\n"
                "            for layer in net.spec.layers\n"
                "        )\n"
                "        spec = dataclasses.replace(net.spec, layers=layers)\n"
                "        self.module = net.module.clone(fast_pooling=fast, spec=spec)\n",
            ),
        ),
        (dropout("jax"),),
    ),
    # -- a partial last batch divided by an earlier full batch's size ------------------------
    Bug(
        "mxnet: the update divided by the first (full) batch's size, as trainer.step(batch_size)",
        (
            Edit(
                package("mxnet", "train"),
                "        divisor = total\n",
                "        self._batch_size = getattr(self, '_batch_size', None) or total\n"
                "        divisor = self._batch_size\n",
            ),
        ),
        (partial("torch", "mxnet"),),
    ),
    Bug(
        "torch: the loss summed and divided by the first (full) batch's size",
        (
            Edit(
                package("torch", "train"),
                "        share = self.loss(logits, labels) * (len(labels) / total)",
                "        self._batch_size = getattr(self, '_batch_size', None) or total\n"
                "        share = nn.functional.cross_entropy(logits, labels, reduction='sum')\n"
                "        share = share / self._batch_size",
            ),
        ),
        (partial("torch", "mxnet"),),
    ),
    # -- atomic_write's syncs --------------------------------------------------------------------
    Bug(
        "atomic_write: the data's fsync removed",
        (
            Edit(
                FILES,
                '        with open(temporary, "rb+") as file:\n'
                "            os.fsync(file.fileno())\n",
                "",
            ),
        ),
        (
            node(
                "test_atomic_write.py",
                "test_the_data_is_synced_before_the_rename_and_the_folder_after",
            ),
        ),
    ),
    Bug(
        "atomic_write: the folder's fsync removed",
        (Edit(FILES, "    fsync_directory(path.parent)\n", ""),),
        (
            node(
                "test_atomic_write.py",
                "test_the_data_is_synced_before_the_rename_and_the_folder_after",
            ),
        ),
    ),
    # -- the trainers' mutants that need a framework (not in `make mutation`) -----------------
    Bug(
        "torch: Adam's epsilon bridge to Keras's placement removed",
        (
            Edit(
                package("torch", "train"),
                '= self.recipe.adam_epsilon / math.sqrt(1.0 - group["betas"][1] ** t)',
                "= self.recipe.adam_epsilon",
            ),
        ),
        (lockstep("mxnet", "adam"), lockstep("tf", "adam")),
    ),
    Bug(
        "tf: Keras's default Adam epsilon (1e-7) instead of the recipe's",
        (
            Edit(
                package("tf", "train"),
                "keras.optimizers.Adam(recipe.lr, epsilon=recipe.adam_epsilon)",
                "keras.optimizers.Adam(recipe.lr)",
            ),
        ),
        (lockstep("tf", "adam"), lockstep("tf", "adam-scheduled")),
    ),
    Bug(
        "torch: momentum buffer not rescaled when the learning rate changes",
        (
            Edit(
                package("torch", "train"),
                '        if self.recipe.optimizer == "momentum" and lr != self._lr:\n'
                "            self._rescale_momentum(self._lr / lr)\n",
                "",
            ),
        ),
        (lockstep("mxnet", "momentum-scheduled"),),
    ),
    Bug(
        "jax: momentum trace rescaled by the inverse factor",
        (
            Edit(
                package("jax", "train"),
                "            self._rescale_momentum(self._lr / lr)",
                "            self._rescale_momentum(lr / self._lr)",
            ),
        ),
        (lockstep("jax", "momentum-scheduled"),),
    ),
    Bug(
        "mxnet: gradient norm clipped on the summed gradient (not divided by the batch)",
        (
            Edit(
                package("mxnet", "train"),
                "                )\n                / total\n",
                "                )\n",
            ),
        ),
        (lockstep("mxnet", "momentum-scheduled"),),
    ),
    Bug(
        "torch: gradients clipped after the optimizer's step (clipping has no effect)",
        (
            Edit(
                package("torch", "train"),
                "        if self.recipe.clip_norm:  # on the summed gradient: the global batch's"
                " norm\n"
                "            nn.utils.clip_grad_norm_(self._parameters, self.recipe.clip_norm)\n",
                "",
            ),
            Edit(
                package("torch", "train"),
                "        self.optimizer.step()\n",
                "        self.optimizer.step()\n        if self.recipe.clip_norm:\n"
                "            nn.utils.clip_grad_norm_(self._parameters, self.recipe.clip_norm)\n",
            ),
        ),
        (lockstep("mxnet", "momentum-scheduled"),),
    ),
    Bug(
        "jax: L2 weight decay added before clipping (optax chain order)",
        (
            Edit(
                package("jax", "train"),
                CLIP + DECAY,
                DECAY + CLIP,
            ),
        ),
        (lockstep("jax", "momentum-scheduled"), lockstep("jax", "adam-scheduled")),
    ),
    Bug(
        "tf: weight decay decoupled (Keras's own weight_decay) instead of L2 on the gradient",
        (
            Edit(
                package("tf", "train"),
                "keras.optimizers.SGD(recipe.lr, momentum=momentum)",
                "keras.optimizers.SGD(\n"
                "                recipe.lr, momentum=momentum,"
                " weight_decay=recipe.weight_decay or None\n"
                "            )",
            ),
            Edit(
                package("tf", "train"),
                "        if self.recipe.weight_decay:\n            # L2 on the gradient",
                "        if False:\n            # L2 on the gradient",
            ),
        ),
        (lockstep("tf", "momentum-scheduled"),),
    ),
    Bug(
        "jax: dropout off in training",
        (
            Edit(
                package("jax", "train"),
                'images, training=True, rngs={"dropout": key}',
                'images, training=False, rngs={"dropout": key}',
            ),
        ),
        (
            dropout("jax"),
            node("test_training.py", "test_dropout_is_on_in_training_and_off_in_inference", "jax"),
        ),
    ),
    Bug(
        "loop: the NaN guard checks the loss only, not the weights",
        (
            Edit(
                LOOP,
                "            else None\n            if self.weights_finite()\n"
                '            else "weights became NaN or inf"\n',
                "            else None\n",
            ),
        ),
        (
            node(
                "test_training.py",
                "test_nan_guard_stops_at_exactly_the_step_that_diverged",
                "mxnet",
            ),
            node("test_parity.py", "test_mxnet_relu_maps_nan_to_zero_so_the_guard_checks_weights"),
        ),
    ),
    Bug(
        "loop: every step's dropout masks drawn from step 0's seed",
        (
            Edit(
                LOOP,
                "dropout_seed(self.seed, self.step_count)",
                "dropout_seed(self.seed, 0)",
            ),
        ),
        (
            node(
                "test_loop.py",
                "test_each_step_gets_its_learning_rate_dropout_seed_and_own_batch_size",
            ),
        ),
    ),
    Bug(
        "loop: step t trained at step t+1's learning rate",
        (
            Edit(
                LOOP,
                "self.recipe.learning_rate(self.step_count, self.total_steps)",
                "self.recipe.learning_rate(self.step_count + 1, self.total_steps)",
            ),
        ),
        (
            node(
                "test_loop.py",
                "test_each_step_gets_its_learning_rate_dropout_seed_and_own_batch_size",
            ),
        ),
    ),
    Bug(
        "loop: an epoch's loss the mean of its steps' means (a partial batch counted as full)",
        (
            Edit(LOOP, "        self.loss += loss * count\n", "        self.loss += loss\n"),
            Edit(
                LOOP,
                "            sums.loss / sums.seen,\n            sums.correct / sums.seen,\n",
                "            sums.loss / sums.steps,\n            sums.correct / sums.seen,\n",
            ),
        ),
        (
            node("test_loop.py", "test_an_epochs_metrics_are_means_over_its_examples"),
            node(
                "test_partial_batches.py", "test_an_epochs_metrics_weigh_each_example_once", "torch"
            ),
        ),
    ),
]

FAILED = re.compile(r"^FAILED (\S+)", re.MULTILINE)


def copy_tree(destination: Path) -> None:
    """Every file git tracks or would track (not ignored), as it is in the working tree."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (entry.decode() for entry in listed)):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


def run_tests(tree: Path, tests: tuple[str, ...], stop_at_first: bool) -> tuple[int, str, float]:
    """pytest on `tests` in `tree`: (exit status, output, seconds)."""
    # The copy's packages, not the editable install's; no bytecode, so a file put back within
    # the same second as its edit is never run from a stale .pyc.
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE", *tests]
    if stop_at_first:
        command.insert(-len(tests), "-x")
    start = time.monotonic()
    result = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    return result.returncode, result.stdout + result.stderr, time.monotonic() - start


def apply(tree: Path, bug: Bug) -> dict[Path, str] | str:
    """The original texts of the files `bug` edits (after editing them), or why it does not
    apply."""
    originals: dict[Path, str] = {}
    for edit in bug.edits:
        path = tree / edit.path
        text = originals.get(path) or path.read_text()
        originals.setdefault(path, text)
        current = path.read_text()
        if current.count(edit.old) != 1:
            for file, original in originals.items():
                file.write_text(original)
            return f"edit of {edit.path} does not apply ({current.count(edit.old)} matches)"
        path.write_text(current.replace(edit.old, edit.new))
    return originals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="only the bugs whose name holds one of these")
    parser.add_argument("--list", action="store_true", help="list the bugs and their tests")
    parser.add_argument("--no-control", action="store_true", help="skip the unchanged run")
    options = parser.parse_args(argv)
    bugs = [bug for bug in BUGS if not options.names or any(n in bug.name for n in options.names)]
    if options.list:  # with whether each bug's edits still apply to today's tree
        with tempfile.TemporaryDirectory(prefix="nin-planted-") as folder:
            copy_tree(Path(folder))
            for bug in bugs:
                originals = apply(Path(folder), bug)
                if not isinstance(originals, str):
                    for path, text in originals.items():
                        path.write_text(text)
                status = originals if isinstance(originals, str) else "applies"
                print(f"{bug.name} ({status})\n  " + "\n  ".join(bug.tests))
        return 0
    failures = 0
    with tempfile.TemporaryDirectory(prefix="nin-planted-") as folder:
        tree = Path(folder)
        copy_tree(tree)
        tests = tuple(dict.fromkeys(test for bug in bugs for test in bug.tests))
        if not options.no_control:
            status, output, seconds = run_tests(tree, tests, stop_at_first=False)
            print(f"control: {len(tests)} tests on the unchanged tree, exit {status}", end=" ")
            print(f"({seconds:.0f} s)")
            if status != 0:
                print(output[-4000:])
                return 1
        for bug in bugs:
            originals = apply(tree, bug)
            if isinstance(originals, str):
                print(f"NOT APPLIED  {bug.name}: {originals}")
                failures += 1
                continue
            try:
                status, output, seconds = run_tests(tree, bug.tests, stop_at_first=True)
            finally:
                for path, text in originals.items():
                    path.write_text(text)
            failed = [test for test in FAILED.findall(output) if test in bug.tests]
            if status == 1 and failed:
                print(f"caught       {bug.name}: {failed[0]} ({seconds:.0f} s)")
            else:
                failures += 1
                print(f"NOT CAUGHT   {bug.name}: pytest exit {status} ({seconds:.0f} s)")
                print("    " + "\n    ".join(output.strip().splitlines()[-15:]))
            sys.stdout.flush()
    print(f"{len(bugs) - failures} of {len(bugs)} planted bugs caught")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
