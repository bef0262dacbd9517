"""``python -m common.cli``: the same as the ``nin`` console script."""

import sys

from . import main

sys.exit(main())
