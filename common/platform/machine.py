"""The machine a run was measured on, in one line for reports.

Platform layer.
"""

from __future__ import annotations

import os
import platform


def machine_description() -> str:
    return (
        f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, "
        f"Python {platform.python_version()}"
    )
