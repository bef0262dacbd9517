"""NiN (and AlexNet, for comparison) as data: the one architecture every backend builds.

Network in Network, Lin, Chen & Yan 2013: https://arxiv.org/abs/1312.4400
Dive into Deep Learning, section 7.3: https://d2l.ai/chapter_convolutional-modern/nin.html

A :class:`Spec` is an ordered tuple of top-level layers. Each backend walks it once,
translating every layer type to its framework; everything that can be computed without a
framework (shapes, parameters, FLOPs, memory) is computed from it in :mod:`common.resources`.

Core layer.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Conv:
    """A 2-D convolution, followed by ReLU unless `relu` is False (only a linear NiN head)."""

    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    relu: bool = True


@dataclass(frozen=True)
class ConvBlock:
    """Convolutions applied in sequence and reported as one layer.

    A NiN block is one spatial convolution followed by 1x1 convolutions; an AlexNet
    convolution layer is a block of one.
    """

    convs: tuple[Conv, ...]
    kind: str = "nin_block"


@dataclass(frozen=True)
class MaxPool:
    kernel_size: int
    stride: int


@dataclass(frozen=True)
class Dropout:
    rate: float


@dataclass(frozen=True)
class GlobalAvgPool:
    """Averages each channel to 1x1, keeping the NCHW rank (as the book's AdaptiveAvgPool2d)."""


@dataclass(frozen=True)
class Flatten:
    pass


@dataclass(frozen=True)
class Dense:
    units: int
    relu: bool = True


Layer = ConvBlock | MaxPool | Dropout | GlobalAvgPool | Flatten | Dense

LAYER_KINDS = {
    MaxPool: "max_pool",
    Dropout: "dropout",
    GlobalAvgPool: "global_avg_pool",
    Flatten: "flatten",
    Dense: "dense",
}


def layer_kind(layer: Layer) -> str:
    return layer.kind if isinstance(layer, ConvBlock) else LAYER_KINDS[type(layer)]


@dataclass(frozen=True)
class Spec:
    """A whole network: input channels, nominal input size and the top-level layers."""

    name: str
    in_channels: int
    num_classes: int
    layers: tuple[Layer, ...]
    # The size the book trains at. Networks ending in global pooling accept any size at least
    # `min_input_size`; networks with a Dense layer after Flatten accept exactly this size.
    input_size: int = 224
    options: dict = field(default_factory=dict, compare=False)

    @property
    def fixed_input_size(self) -> bool:
        return any(isinstance(layer, Dense) for layer in self.layers)

    def layer_names(self) -> list[str]:
        """Unique, human-readable names of the top-level layers, the same in every backend."""
        kinds = [layer_kind(layer) for layer in self.layers]
        names = []
        for index, kind in enumerate(kinds):
            if kinds.count(kind) == 1:
                names.append(kind)
            else:
                names.append(f"{kind}_{kinds[: index + 1].count(kind)}")
        return names

    def describe(self) -> str:
        """The spec's name and the options that differ from the factory's defaults."""
        factory = SPECS.get(self.name)
        defaults = (
            {
                name: parameter.default
                for name, parameter in inspect.signature(factory).parameters.items()
            }
            if factory
            else {}
        )
        changed = ", ".join(
            f"{key}={value}" for key, value in self.options.items() if defaults.get(key) != value
        )
        return f"{self.name}({changed})" if changed else self.name

    def to_dict(self) -> dict:
        """A JSON-able description; :func:`spec_from_dict` reverses it."""
        return {
            "name": self.name,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "input_size": self.input_size,
            "options": dict(self.options),
            "layers": [_layer_to_dict(layer) for layer in self.layers],
        }


def _layer_to_dict(layer: Layer) -> dict:
    if isinstance(layer, ConvBlock):
        return {
            "type": "ConvBlock",
            "kind": layer.kind,
            "convs": [vars(conv).copy() for conv in layer.convs],
        }
    return {"type": type(layer).__name__, **vars(layer)}


_LAYER_TYPES = {cls.__name__: cls for cls in (MaxPool, Dropout, GlobalAvgPool, Flatten, Dense)}


# The most convolutions one block may hold (so `num_1x1` is at most one less): far past any
# NiN, and a bound on what a spec read from a file can make a backend build.
MAX_BLOCK_CONVS = 16

# Bounds on what a spec read from a file may say: generous for any NiN or AlexNet, and small
# enough that no arithmetic on it (shapes, the smallest input) can run away.
_LIMITS = {
    "out_channels": (1, 1 << 16),
    "kernel_size": (1, 64),
    "stride": (1, 64),
    "padding": (0, 64),
    "units": (1, 1 << 16),
    "in_channels": (1, 1 << 10),
    "num_classes": (1, 1 << 16),
    "input_size": (1, 8192),
}


def spec_from_dict(data: dict) -> Spec:
    """The inverse of :meth:`Spec.to_dict`; a ValueError for anything that is not a sane spec
    (it may come from a damaged or hostile file)."""
    if not isinstance(data, dict) or not isinstance(data.get("layers"), list):
        raise ValueError("a spec is a dict with a list of layers")
    if not isinstance(data.get("name"), str) or len(data["layers"]) > 256:
        raise ValueError("a spec needs a name and at most 256 layers")
    layers = []
    for item in data["layers"]:
        if not isinstance(item, dict):
            raise ValueError(f"a layer is a dict, got {item!r:.60}")
        item = dict(item)
        kind = item.pop("type", None)
        if kind == "ConvBlock":
            convs = item.get("convs")
            if not isinstance(convs, list) or not 1 <= len(convs) <= MAX_BLOCK_CONVS:
                raise ValueError(f"a ConvBlock holds 1 to {MAX_BLOCK_CONVS} convolutions")
            layers.append(
                ConvBlock(
                    tuple(Conv(**_checked(conv)) for conv in convs),
                    str(item.get("kind", "nin_block")),
                )
            )
        elif kind in _LAYER_TYPES:
            layers.append(_LAYER_TYPES[kind](**_checked(item)))
        else:
            raise ValueError(f"unknown layer type {kind!r}")
    _check_images_before_vectors(layers)
    top = _checked({key: data.get(key) for key in ("in_channels", "num_classes", "input_size")})
    options = data.get("options", {})
    if not isinstance(options, dict):
        raise ValueError("spec options must be a dict")
    options = {
        key: tuple(value) if isinstance(value, list) else value  # JSON has no tuples
        for key, value in options.items()
    }
    return Spec(
        data["name"],
        top["in_channels"],
        top["num_classes"],
        tuple(layers),
        top["input_size"],
        dict(options),
    )


def _check_images_before_vectors(layers: list[Layer]) -> None:
    """That no layer that needs an image (a convolution, a pooling) follows one that leaves a
    vector (Flatten, Dense): no network can run such a spec, nor can its shapes be worked out."""
    vector_from = None
    for layer in layers:
        if isinstance(layer, (Flatten, Dense)):
            vector_from = vector_from or type(layer).__name__
        elif vector_from and not isinstance(layer, Dropout):
            raise ValueError(
                f"a spec cannot put {type(layer).__name__} after {vector_from}: it needs an "
                f"image, and {vector_from} leaves a vector"
            )


def _checked(fields: dict) -> dict:
    if not isinstance(fields, dict):
        raise ValueError(f"expected a dict of layer fields, got {fields!r:.60}")
    for key, value in fields.items():
        if key in _LIMITS:
            low, high = _LIMITS[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(
                    f"{key} must be a whole number in {low}..{high}, got {value!r:.40}"
                )
        elif key == "rate":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(f"rate must be in [0, 1), got {value!r:.40}")
        elif key == "relu":
            if not isinstance(value, bool):
                raise ValueError(f"relu must be true or false, got {value!r:.40}")
    return fields


# The book's blocks: (out_channels, kernel_size, stride, padding); the widths of the first three
# are `nin_spec`'s `widths`, the last one's is the number of classes.
NIN_BLOCKS = ((96, 11, 4, 0), (256, 5, 1, 2), (384, 3, 1, 1), (None, 3, 1, 1))
BOOK_WIDTHS = (96, 256, 384)


def nin_block_convs(
    out_channels: int,
    kernel_size: int,
    stride: int,
    padding: int,
    num_1x1: int = 2,
    final_relu: bool = True,
) -> tuple[Conv, ...]:
    """One spatial convolution, then `num_1x1` 1x1 convolutions ("the MLP layer").

    `final_relu=False` leaves the block's last convolution linear.
    """
    convs = (
        Conv(out_channels, kernel_size, stride, padding),
        *(Conv(out_channels, 1) for _ in range(num_1x1)),
    )
    if not final_relu:
        convs = (*convs[:-1], replace(convs[-1], relu=False))
    return convs


def nin_spec(
    *,
    in_channels: int = 1,
    num_classes: int = 10,
    num_1x1: int = 2,
    dropout: float = 0.5,
    final_relu: bool = True,
    head_width: int = 0,
    widths: tuple[int, int, int] = BOOK_WIDTHS,
    input_size: int = 224,
) -> Spec:
    """The book's Fashion-MNIST NiN (d2l 7.3), with the chapter's exercises as options.

    - `num_1x1`: 1x1 convolutions per block (exercise 2 removes one).
    - `final_relu=False` gives the linear head: the class maps that global average pooling
      turns into logits are the last convolution's output, not its ReLU. A ReLU there lets a
      class map that is <= 0 on every image stop receiving gradient, and that class is then
      never predicted (docs/training.md measures it). Same shapes, same parameters.
    - `head_width > 0` gives a gradual head (exercise 4): a NiN block of that width between
      the last 384-channel block and the class block, instead of squeezing 384 channels to
      the classes in one step.
    - `widths`: the three feature blocks' channels (exercise 5's family varies them).
    """
    _check_positive(in_channels=in_channels, num_classes=num_classes, input_size=input_size)
    if (
        isinstance(num_1x1, bool)
        or not isinstance(num_1x1, int)
        or not 0 <= num_1x1 < MAX_BLOCK_CONVS
    ):
        raise ValueError(
            f"num_1x1 must be a whole number from 0 to {MAX_BLOCK_CONVS - 1}, got {num_1x1!r}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if not isinstance(final_relu, bool):
        raise ValueError(f"final_relu must be True or False, got {final_relu!r}")
    if isinstance(head_width, bool) or not isinstance(head_width, int) or head_width < 0:
        raise ValueError(f"head_width must be a whole number >= 0 (0: none), got {head_width!r}")
    widths = tuple(widths)
    if len(widths) != 3:
        raise ValueError(f"widths are the three feature blocks' channels, got {widths!r}")
    _check_positive(**{f"width {index + 1}": width for index, width in enumerate(widths)})
    blocks = [(width, *geometry) for width, (_, *geometry) in zip(widths, NIN_BLOCKS)]
    layers: list[Layer] = []
    for width, kernel, stride, padding in blocks:
        layers.append(ConvBlock(nin_block_convs(width, kernel, stride, padding, num_1x1)))
        # Pooling is outside the block, as the book has it, so a block is only convolutions.
        layers.append(MaxPool(3, 2))
    # Dropout sits between the third pool and the classifier block, as in the book.
    layers.append(Dropout(dropout))
    _, kernel, stride, padding = NIN_BLOCKS[-1]
    if head_width:
        layers.append(ConvBlock(nin_block_convs(head_width, kernel, stride, padding, num_1x1)))
    layers.append(
        ConvBlock(nin_block_convs(num_classes, kernel, stride, padding, num_1x1, final_relu))
    )
    layers += [GlobalAvgPool(), Flatten()]
    options = dict(
        in_channels=in_channels,
        num_classes=num_classes,
        num_1x1=num_1x1,
        dropout=dropout,
        final_relu=final_relu,
        head_width=head_width,
        widths=widths,
        input_size=input_size,
    )
    return Spec("nin", in_channels, num_classes, tuple(layers), input_size, options)


# Exercise 5: a family of NiN-like networks, as VGG-11/16/19 are, growing width and depth
# together: (widths of the three feature blocks, 1x1 convolutions per block). NiN-M is the
# book's network.
NIN_FAMILY = {
    "nin-s": ((64, 192, 256), 1),
    "nin-m": (BOOK_WIDTHS, 2),
    "nin-l": ((128, 384, 512), 3),
}


def _family_member(name: str, widths: tuple[int, int, int], num_1x1: int):
    def factory(
        *,
        in_channels: int = 1,
        num_classes: int = 10,
        dropout: float = 0.5,
        final_relu: bool = True,
        head_width: int = 0,
        input_size: int = 224,
    ) -> Spec:
        spec = nin_spec(
            in_channels=in_channels,
            num_classes=num_classes,
            num_1x1=num_1x1,
            dropout=dropout,
            final_relu=final_relu,
            head_width=head_width,
            widths=widths,
            input_size=input_size,
        )
        options = {
            key: value for key, value in spec.options.items() if key not in ("widths", "num_1x1")
        }
        return replace(spec, name=name, options=options)

    factory.__name__ = name.replace("-", "_") + "_spec"
    factory.__doc__ = (
        f"{name.upper()}: NiN with feature blocks of {widths} channels and "
        f"{num_1x1} 1x1 convolution(s) per block (exercise 5)."
    )
    return factory


def alexnet_spec(
    *, in_channels: int = 1, num_classes: int = 10, dropout: float = 0.5, input_size: int = 224
) -> Spec:
    """The book's Fashion-MNIST AlexNet (d2l 7.1), to compare with NiN's parameter budget."""
    _check_positive(in_channels=in_channels, num_classes=num_classes, input_size=input_size)

    def conv(*args):
        return ConvBlock((Conv(*args),), kind="conv")

    layers = (
        conv(96, 11, 4, 1),
        MaxPool(3, 2),
        conv(256, 5, 1, 2),
        MaxPool(3, 2),
        conv(384, 3, 1, 1),
        conv(384, 3, 1, 1),
        conv(256, 3, 1, 1),
        MaxPool(3, 2),
        Flatten(),
        Dense(4096),
        Dropout(dropout),
        Dense(4096),
        Dropout(dropout),
        Dense(num_classes, relu=False),
    )
    options = dict(
        in_channels=in_channels, num_classes=num_classes, dropout=dropout, input_size=input_size
    )
    return Spec("alexnet", in_channels, num_classes, layers, input_size, options)


SPECS = {
    "nin": nin_spec,
    "alexnet": alexnet_spec,
    **{name: _family_member(name, *shape) for name, shape in NIN_FAMILY.items()},
}


def make_spec(spec: Spec | str | None = None, **overrides) -> Spec:
    """`spec` as a Spec, a registered name ('nin', 'alexnet') or None (NiN), with overrides.

    Overrides are the factory's keyword options (e.g. ``num_1x1=1``); applied to a Spec they
    rebuild it from the options it was made with.
    """
    if isinstance(spec, Spec):
        if not overrides:
            return spec
        options, spec = {**spec.options, **overrides}, spec.name
    else:
        options, spec = overrides, spec or "nin"
    if spec not in SPECS:
        raise ValueError(f"unknown model {spec!r}; choose from {', '.join(SPECS)}")
    allowed = inspect.signature(SPECS[spec]).parameters
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for {spec}; allowed: {', '.join(allowed)}"
        )
    return SPECS[spec](**options)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
