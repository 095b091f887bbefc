"""Writing a whole file or nothing: a temporary beside the target, renamed over it, removed on any failure."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

NEW_FILE_MODE = 0o666
"""What open() asks for when it creates a file; the umask then takes its bits away."""


def _umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[IO]:
    """Yield a file to write; on success it replaces `path` in one rename, on any failure (an exception, a full
    disk, Ctrl-C) the temporary is removed and `path` is left as it was. The file gets the mode open() would give
    a new file (0666 less the umask: 0644 under the usual 022), not mkstemp's private 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, NEW_FILE_MODE & ~_umask())
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def make_out_dir(path: Path) -> Path:
    """Create the output folder `path` with its parents; where `path` or a parent is a file, a NotADirectoryError
    that names it in words ('is a file, not a folder') instead of mkdir's 'File exists'."""
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "is a file, not a folder", str(part))
    path.mkdir(parents=True, exist_ok=True)
    return path
