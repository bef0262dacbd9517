"""``python -m common.cli``: the same as the ``nin`` console script."""

import sys

from . import main

if __name__ == "__main__":  # not when a tool imports every module (tests/test_model.py does)
    sys.exit(main())
