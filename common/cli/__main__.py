"""``python -m common.cli``: the same as the ``nin`` console script.

CLI layer.
"""

import sys

from . import main

if __name__ == "__main__":  # importing it (pkgutil.walk_packages does) runs nothing
    sys.exit(main())
