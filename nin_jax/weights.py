"""JAX parameters <-> the canonical weight format (:mod:`common.weights`).

The pytree (Flax linen's parameters) holds HWIO convolution kernels and ``(in, out)`` dense
kernels, and its Flatten runs over NHWC: the layouts of Keras, so the conversions are
:mod:`common.weights`' channels-last ones. JAX has no weights format of its own (Flax's
msgpack and Orbax are libraries on top of it); the native file here is the pytree itself
(``model.pytree``), one member of an ``.npz`` container per leaf, named ``layer/index/kind``,
in JAX's layouts.

Backend layer.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from common import weights as interchange


def sublayers(block: dict) -> list[str]:
    """The keys of a top-level layer's parameterised sublayers in order: an ``nn.Sequential``
    numbers its layers (ReLUs included) as ``layers_0``, ``layers_2``, ...; numerically, as
    pytrees sort dict keys as strings (``layers_10`` before ``layers_2``)."""
    return sorted(block, key=lambda key: int(key.rpartition("_")[2]))


def parameter_leaves(net) -> list[tuple[str, str, str, str]]:
    """(canonical name, layer, sublayer, "kernel" or "bias"), in canonical order."""
    names = iter(interchange.parameter_names(net.spec))
    return [
        (next(names), layer, sublayer, kind)
        for layer in net.spec.layer_names()
        if layer in net.params
        for sublayer in sublayers(net.params[layer])
        for kind in ("kernel", "bias")
    ]


def flatten(net, tree) -> dict[str, np.ndarray]:
    """A pytree shaped like ``net.params`` (the parameters, or an optimizer's moments) as
    NumPy arrays keyed by canonical name, in the framework's layouts."""
    return {
        name: np.array(tree[layer][sublayer][kind])  # a writable copy, not a view of JAX's
        for name, layer, sublayer, kind in parameter_leaves(net)
    }


def unflatten(net, arrays: dict[str, np.ndarray]) -> dict[str, dict]:
    """The inverse of :func:`flatten`: a pytree shaped like ``net.params``."""
    tree: dict[str, dict] = {}
    for name, layer, sublayer, kind in parameter_leaves(net):
        tree.setdefault(layer, {}).setdefault(sublayer, {})[kind] = jnp.asarray(
            arrays[name], jnp.float32
        )
    return tree


def to_canonical(net, tree) -> dict[str, np.ndarray]:
    """A pytree shaped like the parameters (kernels, Adam moments, ...) in canonical layout."""
    return interchange.arrays_from_channels_last(net.spec, flatten(net, tree))


def from_canonical(net, arrays: dict[str, np.ndarray]) -> dict[str, list]:
    """The inverse of :func:`to_canonical`."""
    return unflatten(net, interchange.arrays_to_channels_last(net.spec, arrays))


def get_weights(net) -> dict[str, np.ndarray]:
    return to_canonical(net, net.params)


def set_weights(net, arrays: dict[str, np.ndarray]) -> None:
    interchange.check_arrays(net.spec, arrays)
    net.params = from_canonical(net, arrays)


FRAMEWORK_VERSION = f"jax {jax.__version__}"  # written into exported files
# The leaves in NumPy's .npz container, under a suffix of their own: every .npz is read as the
# interchange format (common.weights), which this is not.
NATIVE_SUFFIX = ".pytree"


def _leaf_names(net) -> dict[str, str]:
    """Canonical name -> the leaf's member name, ``layer/index/kind`` (e.g.
    ``nin_block_1/0/kernel``: the block's first convolution), as the file has named them since
    before the layers were Flax's (their pytree path is ``nin_block_1/layers_0/kernel``)."""
    return {
        name: f"{layer}/{sublayers(net.params[layer]).index(sublayer)}/{kind}"
        for name, layer, sublayer, kind in parameter_leaves(net)
    }


def save_native(net, path: str | Path) -> Path:
    """The parameter pytree as it is held (HWIO kernels), one member per leaf."""
    arrays = flatten(net, net.params)
    with open(path, "wb") as file:  # a file object: np.savez would add .npz to a name
        np.savez(file, **{leaf: arrays[name] for name, leaf in _leaf_names(net).items()})
    return Path(path)


def load_native(net, path: str | Path) -> None:
    leaves = _leaf_names(net)
    with np.load(path, allow_pickle=False) as stored:
        missing = sorted(set(leaves.values()) - set(stored.files))
        if missing:
            raise interchange.WeightsError(
                f"{path}: not this model's parameters (no {', '.join(missing[:3])})"
            )
        arrays = {name: stored[leaf] for name, leaf in leaves.items()}
    held = flatten(net, net.params)
    for name, array in arrays.items():
        if array.shape != held[name].shape:
            raise interchange.WeightsError(
                f"{path}: {_leaf_names(net)[name]} is {array.shape}, this model's is "
                f"{held[name].shape}"
            )
    net.params = unflatten(net, arrays)
