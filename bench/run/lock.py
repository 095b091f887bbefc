"""One sweep per output folder: an advisory lock held for the sweep's lifetime."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path


class LockedError(RuntimeError):
    """Another process holds the folder; the message says which and what to do."""


@contextmanager
def exclusive(folder: Path):
    """Hold <folder>/.lock exclusively (released by the kernel even if this process is killed)."""
    path = folder / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise LockedError(f"{folder} is in use by another sweep (pid {holder}); wait for it to finish or "
                              "choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
