"""``nin check``: a reader's own NiN, in any of the three frameworks, against the reference.

From a notebook, in the cell after the model::

    from common.check import check_model
    check_model(net)            # the report; .passed says whether it is the book's NiN

From the shell, ``nin check reader.py`` runs the file in a separate process first
(:mod:`.runner`).

Tools layer.
"""

from .model import NotAModel, check_model
from .result import CheckResult

__all__ = ["CheckResult", "NotAModel", "check_model"]
