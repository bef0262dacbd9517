"""The book's JAX d2l (``from d2l import jax as d2l``) for the stand-in :mod:`common.d2l` gives
``nin check``: none of it, and one line that says why.

The book's JAX models are Flax modules (``d2l.Classifier`` is a ``flax.linen.Module``), and
Flax cannot be installed beside this project's pins (no chex release both installs with its
NumPy and imports under its JAX: constraints.txt). So a reader's JAX file from the book cannot
be built here, let alone checked; ``nin check`` sees JAX models built with ``nin_jax`` only.
The first use of ``d2l.<anything>`` in such a file imports this module, and the check stops
there with this message, at the reader's line.

Backend layer.
"""

raise ImportError(
    "the book's JAX code (d2l.jax) builds its models with Flax, which cannot be installed "
    "beside this project's pins: nin check sees JAX models built with nin_jax only",
    name="flax",
)
