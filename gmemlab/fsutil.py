"""Writing files atomically: a reader never sees half a file."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from typing import Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_open(path: str) -> Iterator:
    """A text file that appears at path, whole, only when the block ends without error."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a written file is an ordinary one
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write(path: str, data: str | bytes) -> None:
    """Write data to path through a temporary file in the same folder and a rename."""
    with atomic_open(path) as f:
        f.write(data.decode("utf-8") if isinstance(data, bytes) else data)
