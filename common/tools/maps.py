"""Class maps: what NiN's last block sees, with no framework (CAM, Zhou et al. 2016).

NiN's class block has one channel per class, and global average pooling turns each channel
into that class's logit, so each channel is a map of where the network finds evidence for its
class. This module finds that layer in a spec, computes the maps of any backend's network,
lays them over the input and measures how much of a map's positive mass lies on the object.

Tools layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..api import layer_output
from ..data import to_model_input
from ..shapes import layer_shapes
from ..spec import ConvBlock, Dropout, Flatten, GlobalAvgPool, MaxPool, Spec

BATCH_SIZE = 128  # images per inference pass: bounds memory at large input sizes


class NoClassMaps(ValueError):
    """The network has no layer whose channels are the classes' maps (AlexNet)."""


def class_map_layer(spec: Spec) -> str:
    """The name of the layer whose output holds one map per class: the last convolution block,
    when it has one channel per class and only global average pooling (and Flatten, Dropout)
    follows it, so that each map's spatial mean is its class's logit."""
    for index in range(len(spec.layers) - 1, -1, -1):
        layer, after = spec.layers[index], spec.layers[index + 1 :]
        if isinstance(layer, ConvBlock):
            if (
                layer.convs[-1].out_channels == spec.num_classes
                and sum(isinstance(later, GlobalAvgPool) for later in after) == 1
                and all(isinstance(later, (GlobalAvgPool, Flatten, Dropout)) for later in after)
            ):
                return spec.layer_names()[index]
            break
    raise NoClassMaps(
        f"{spec.describe()} has no class maps: its scores do not come from global average "
        "pooling of one map per class (NiN's do)"
    )


def map_size(spec: Spec, size: int) -> tuple[int, int]:
    """(height, width) of the class maps for a `size` x `size` input."""
    layer = class_map_layer(spec)
    shapes = {shape.name: shape.output_shape for shape in layer_shapes(spec, (1, 1, size, size))}
    return shapes[layer][2:]


def class_maps(net, images: np.ndarray, *, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """The class maps (N, classes, h, w) of any backend's `net` for NCHW `images`, in
    inference mode (through ``layer_output``, the backends' look inside)."""
    layer = class_map_layer(net.spec)
    images = np.asarray(images, np.float32)
    return np.concatenate(
        [
            layer_output(net, images[start : start + batch_size], layer)
            for start in range(0, len(images), batch_size)
        ]
    )


def class_scores(maps: np.ndarray) -> np.ndarray:
    """(N, classes) logits from (N, classes, h, w) maps: their spatial means, which is what
    global average pooling computes."""
    return maps.mean(axis=(-2, -1), dtype=np.float64).astype(np.float32)


def cell_centres(spec: Spec, size: int) -> np.ndarray:
    """Where the class maps' cells sit on a `size` x `size` input, along either axis: the input
    pixel (0-based, fractional) at the centre of each cell's receptive field.

    Each convolution or pooling moves the first centre by ((kernel - 1) / 2 - padding) of its
    input's pixel spacing and multiplies the spacing by its stride. NiN's maps do not span the
    image evenly: at 131 px the 3x3 cells sit at 33, 65 and 97 (a plain resize would put them
    at 21, 65 and 109), and at 224 px, where each pooling drops the last row and column,
    at 33 to 161 of 0-223."""
    target = class_map_layer(spec)
    first, spacing = 0.0, 1.0
    for name, layer in zip(spec.layer_names(), spec.layers):
        if isinstance(layer, ConvBlock):
            for conv in layer.convs:
                first += ((conv.kernel_size - 1) / 2 - conv.padding) * spacing
                spacing *= conv.stride
        elif isinstance(layer, MaxPool):
            first += (layer.kernel_size - 1) / 2 * spacing
            spacing *= layer.stride
        if name == target:
            break
    return first + spacing * np.arange(map_size(spec, size)[0])


def placement(centres: np.ndarray, size: int) -> np.ndarray:
    """(size, cells) weights that spread the values of cells at `centres` over `size` pixels:
    linear between two centres, the outer cell's value beyond it (as a resize clamps)."""
    pixels, unit = np.arange(size), np.eye(len(centres))
    return np.stack(
        [np.interp(pixels, centres, unit[cell]) for cell in range(len(centres))], axis=1
    ).astype(np.float32)


def upsample(maps: np.ndarray, spec: Spec, size: int) -> np.ndarray:
    """(..., h, w) class maps of `spec` laid over its `size` x `size` input: (..., size, size),
    each cell at the centre of its receptive field (:func:`cell_centres`), bilinear between."""
    maps = np.asarray(maps, np.float32)
    matrix = placement(cell_centres(spec, size), size)
    if maps.shape[-2:] != (matrix.shape[1],) * 2:
        raise ValueError(
            f"{spec.describe()} has {matrix.shape[1]}x{matrix.shape[1]} class maps at "
            f"{size}x{size}, got maps of {maps.shape[-2]}x{maps.shape[-1]}"
        )
    return matrix @ maps @ matrix.T


def object_masks(images: np.ndarray, size: int) -> np.ndarray:
    """(N, size, size) booleans: where the object is. Fashion-MNIST's background is exactly 0,
    so the object is the non-zero pixels; their mask is resized as the model's input is and
    kept where it is at least half on (which keeps its share of the image)."""
    binary = np.where(np.asarray(images) > 0, 255, 0).astype(np.uint8)
    return to_model_input(binary, size)[:, 0] >= 0.5


def share_on_object(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per map, the share of its positive mass that lies on the mask: 1.0 when all of it does,
    0.0 when none does, NaN for a map with no positive value (nothing to place)."""
    positive = np.maximum(np.asarray(maps, np.float64), 0)
    total = positive.sum(axis=(-2, -1))
    on_object = (positive * masks).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, on_object / total, np.nan)


def chance_share(masks: np.ndarray) -> np.ndarray:
    """Per image, the object's share of the image's area: what a map spread evenly (or a 1x1
    map, upsampled) puts on the object."""
    return np.asarray(masks).mean(axis=(-2, -1))


def object_at_cells(masks: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(N, cells, cells): each cell's share of object pixels among the pixels nearest to its
    centre; the object as a map of that resolution could at best draw it."""
    masks = np.asarray(masks, np.float32)
    nearest = np.abs(np.arange(masks.shape[-1])[:, None] - centres[None, :]).argmin(axis=1)
    regions = [np.flatnonzero(nearest == cell) for cell in range(len(centres))]
    return np.stack(
        [
            np.stack(
                [masks[..., rows[:, None], columns].mean(axis=(-2, -1)) for columns in regions],
                axis=-1,
            )
            for rows in regions
        ],
        axis=-2,
    )


def above_minimum(maps: np.ndarray) -> np.ndarray:
    """Each map less its lowest value: its mass relative to its least likely place, which an
    offset common to the whole map (a large logit) does not change."""
    return maps - maps.min(axis=(-2, -1), keepdims=True)


def _mean(values: list[np.ndarray]) -> float:
    """The mean of the values that are not NaN; NaN when none is."""
    values = np.concatenate(values)
    return float(values[~np.isnan(values)].mean()) if (~np.isnan(values)).any() else float("nan")


@dataclass(frozen=True)
class Localisation:
    """How a network's class maps sit on the objects of a set of images: the share of the
    predicted class's map's positive mass (laid over the input) that lies on the object, and of
    its mass above its minimum, averaged over the images where the map has any; beside what
    maps that know only the object's place would put there."""

    images: int
    map_size: tuple[int, int]
    accuracy: float
    on_object: float
    relative_on_object: float  # the share of the mass above the map's minimum
    chance: float  # an even map: the object's share of the image
    mean_object: float  # one fixed map for every image: the mean object, at the map's size
    own_object: float  # each image's own object, at the map's size (object_at_cells)
    above_chance: int  # images whose map puts more on the object than their area share
    no_positive_mass: int  # images whose predicted class's map is <= 0 everywhere
    # silent_maps[k]: images on which k class maps have no positive value (all zero after the
    # book head's ReLU)
    silent_maps: tuple[int, ...]
    # per class: (images predicted as it, and over those with a positive map: on object, chance)
    by_class: tuple[tuple[int, float, float], ...] = ()
    silent_by_class: tuple[int, ...] = ()  # per class: images on which its map is silent

    @property
    def mean_silent_maps(self) -> float:
        return sum(count * number for count, number in enumerate(self.silent_maps)) / self.images


def _batches(count: int, batch_size: int):
    return (slice(start, start + batch_size) for start in range(0, count, batch_size))


def localisation(
    net,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    size: int,
    standardize: bool,
    batch_size: int = BATCH_SIZE,
) -> Localisation:
    """Where `net`'s maps put their mass on uint8 (N, H, W) `images` at `size` x `size`
    inputs, streamed in batches (the whole test set at 224 px would not fit in memory)."""
    spec, centres = net.spec, cell_centres(net.spec, size)
    mean_mask = sum(
        object_masks(images[part], size).sum(axis=0) for part in _batches(len(images), batch_size)
    )
    mean_map = upsample(object_at_cells(mean_mask / len(images), centres), spec, size)
    shares, relatives, chances, means, owns, predictions, silent = ([] for _ in range(7))
    for part in _batches(len(images), batch_size):
        batch = images[part]
        maps = class_maps(net, to_model_input(batch, size, standardize=standardize))
        predicted = class_scores(maps).argmax(axis=1)
        laid = upsample(maps[np.arange(len(batch)), predicted], spec, size)
        masks = object_masks(batch, size)
        shares.append(share_on_object(laid, masks))
        relatives.append(share_on_object(above_minimum(laid), masks))
        chances.append(chance_share(masks))
        means.append(share_on_object(mean_map, masks))
        owns.append(share_on_object(upsample(object_at_cells(masks, centres), spec, size), masks))
        predictions.append(predicted)
        silent.append(maps.max(axis=(-2, -1)) <= 0)
    share, chance, silent = np.concatenate(shares), np.concatenate(chances), np.concatenate(silent)
    placed, predicted = ~np.isnan(share), np.concatenate(predictions)
    by_class = []
    for label in range(spec.num_classes):
        chosen = (predicted == label) & placed
        by_class.append(
            (int((predicted == label).sum()), _mean([share[chosen]]), _mean([chance[chosen]]))
        )
    return Localisation(
        images=len(images),
        map_size=map_size(spec, size),
        accuracy=float((predicted == np.asarray(labels)).mean()),
        on_object=_mean(shares),
        relative_on_object=_mean(relatives),
        chance=float(chance.mean()),
        mean_object=_mean(means),
        own_object=_mean(owns),
        # (a margin, so that float rounding of an even map never counts as above chance)
        above_chance=int((share[placed] > chance[placed] + 1e-6).sum()),
        no_positive_mass=int((~placed).sum()),
        silent_maps=tuple(
            int(count) for count in np.bincount(silent.sum(axis=1), minlength=spec.num_classes + 1)
        ),
        by_class=tuple(by_class),
        silent_by_class=tuple(int(count) for count in silent.sum(axis=0)),
    )
