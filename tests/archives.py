"""Archives built by hand for the readers' tests: .npy members as bytes, and .npz (zip)
archives written from such members, so a test can damage exactly the byte it means to."""

from __future__ import annotations

import io
import zipfile

import numpy as np


def npy_bytes(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    """`array` as an .npy file; `version` None picks the oldest that fits, as np.save does."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version, allow_pickle=True)
    return buffer.getvalue()


def write_members(target, members: dict[str, bytes]):
    """A zip archive of `members` (name -> bytes) written to `target`, a path or a binary file."""
    with zipfile.ZipFile(target, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return target
