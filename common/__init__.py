"""Framework-free core shared by nin_torch, nin_mxnet and nin_tf: the architecture as data,
its arithmetic, the Fashion-MNIST reader, the weight interchange format, reporting and the CLI.

Nothing in this package imports a deep-learning framework (tests/test_imports.py checks).
"""

from .spec import Spec, alexnet_spec, make_spec, nin_spec

__all__ = ["Spec", "alexnet_spec", "make_spec", "nin_spec"]
