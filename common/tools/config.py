"""What defines a training run, and the named recipes (presets) the CLI starts from.

A :class:`RunConfig` is the model, the :class:`~common.training.Recipe`, the budget (epochs,
batch, input size, how many images) and the seed: the same for every backend of a comparison
or sweep, recorded in every run folder and checkpoint.

Tools layer.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, field, replace

from .. import shapes
from ..data import SPLIT_SIZES, DataLoader, load_data
from ..spec import Spec, make_spec
from ..training import Recipe


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run; the same for every backend in a comparison."""

    model: str = "nin"
    spec_options: dict = field(default_factory=dict)
    recipe: Recipe = field(default_factory=Recipe)
    epochs: int = 2
    batch_size: int = 128
    size: int = 67
    seed: int = 0
    train_limit: int | None = 30_000  # None: all 60,000
    test_limit: int | None = None  # None: all 10,000
    data_dir: str | None = None

    def spec(self) -> Spec:
        return make_spec(self.model, **self.spec_options)

    def check(self) -> RunConfig:
        """Fail on a bad configuration before any data is read or framework imported."""
        spec = self.spec()
        if spec.in_channels != 1 or spec.num_classes != 10:
            raise ValueError(
                "Fashion-MNIST has 1 input channel and 10 classes; "
                f"{spec.describe()} cannot be trained on it"
            )
        for name in ("epochs", "batch_size", "size"):
            _check_whole(name, getattr(self, name), 1)
        _check_whole("seed", self.seed, 0)
        if self.seed >= 2**32:
            raise ValueError(f"seed must be below 2**32, got {self.seed}")
        for name, split in (("train_limit", "train"), ("test_limit", "test")):
            limit = getattr(self, name)
            if limit is not None:
                _check_whole(name, limit, 1)
                if limit > SPLIT_SIZES[split]:
                    raise ValueError(
                        f"{name} must be at most {SPLIT_SIZES[split]:,} (the "
                        f"{split} split's size), got {limit:,}"
                    )
        shapes.check_input_shape(spec, (1, 1, self.size, self.size))
        return self

    def loaders(self) -> tuple[DataLoader, DataLoader]:
        return load_data(
            self.batch_size,
            self.size,
            seed=self.seed,
            train_limit=self.train_limit,
            test_limit=self.test_limit,
            data_dir=self.data_dir,
            standardize=self.recipe.standardize,
            augment=self.recipe.augment,
        )

    @property
    def train_images(self) -> int:
        return self.train_limit or SPLIT_SIZES["train"]

    @property
    def test_images(self) -> int:
        return self.test_limit or SPLIT_SIZES["test"]

    def describe(self, *, seed: bool = True) -> str:
        """One sentence for logs and report headers (without the seed for a sweep's runs)."""
        return (
            f"{self.spec().describe()} at {self.size}x{self.size}, {self.epochs} epoch(s) "
            f"on {self.train_images:,} training images, batch {self.batch_size}, "
            f"{self.recipe.describe()}"
            + (f", seed {self.seed}" if seed else "")
            + f"; tested on {self.test_images:,} test images"
        )

    def head_sentence(self) -> str:
        """Says plainly when the model is not the book's head (the CLI's first line)."""
        spec = self.spec()
        if spec.name == "nin" and not spec.options.get("final_relu", True):
            return (
                "Linear head: the last 1x1 convolution has no ReLU (the book's has one, "
                "which lets whole classes die on some seeds; --book-head restores it)."
            )
        return ""

    def to_dict(self) -> dict:
        data = asdict(self)
        data["recipe"] = self.recipe.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        data = dict(data)
        data["recipe"] = Recipe.from_dict(data.get("recipe", {}))
        return cls(**data)

    def replace(self, **changes) -> RunConfig:
        return replace(self, **changes)

    def differences(self, other: RunConfig) -> dict[str, tuple]:
        """{field: (ours, theirs)} where two configs define different runs; recipe fields
        are named by themselves, the model as "model" (where the data is read from is not a
        difference)."""
        ours, theirs = self.to_dict(), other.to_dict()
        result = {}
        for key in ours:
            if key in ("data_dir", "spec_options", "recipe"):
                continue
            if ours[key] != theirs[key]:
                result[key] = (ours[key], theirs[key])
        for key, value in ours["recipe"].items():
            if value != theirs["recipe"][key]:
                result[key] = (value, theirs["recipe"][key])
        if self.spec().to_dict() != other.spec().to_dict():
            result["model"] = (self.spec().describe(), other.spec().describe())
        return result


def _check_whole(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(
            f"{name.replace('_', ' ')} must be a whole number >= {minimum}, got {value!r}"
        )


# The linear head and this recipe are what made every seed learn (docs/training.md has the
# ablation); "book" is d2l 7.3 exactly.
_TUNED = Recipe(optimizer="adam", lr=2e-3, warmup_steps=200, schedule="cosine", standardize=True)

PRESETS: dict[str, RunConfig] = {
    # About two minutes per backend on a 2-core CPU.
    "quick": RunConfig(spec_options={"final_relu": False}, recipe=_TUNED),
    # All 60,000 training images, augmented, for the best accuracy a CPU reaches in under
    # 45 minutes per backend (docs/training.md).
    "long": RunConfig(
        spec_options={"final_relu": False},
        recipe=replace(_TUNED, augment=True, warmup_steps=500),
        epochs=25,
        size=67,
        train_limit=None,
    ),
    # d2l 7.3: the book's head, SGD lr 0.1, 224 px, 10 epochs, all data. A GPU recipe.
    "book": RunConfig(recipe=Recipe.book(), epochs=10, size=224, train_limit=None),
}
DEFAULT_PRESET = "quick"
