"""``from common.check import check_model``: the public name of :mod:`common.tools.check`.

Core layer.
"""

from .tools.check import CheckResult, NotAModel, check_model  # noqa: F401

__all__ = ["CheckResult", "NotAModel", "check_model"]
