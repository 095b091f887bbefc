"""Whether the collective benchmark's largest message fits in host memory where its ranks are CPU processes sharing
one host: checked before anything runs, so `--comm-max-bytes 99999999999999999999999` is one line, not minutes of
doubling sizes ending in the kernel's OOM killer (SIGKILL) and a memory-starved machine meanwhile. GPU memory is
not checked here."""

from __future__ import annotations

import psutil

from bench.records.units import mib

BUFFERS_PER_RANK = 2
"""Each rank holds the collective's input and output, each of the message's size (mgpu_core.collectives._buffers)."""


def comm_memory_error(max_bytes: int, ranks: int, device_type: str, flag: str) -> str | None:
    """One line when `ranks` CPU processes on this host cannot hold the largest message (`max_bytes`, bytes):
    BUFFERS_PER_RANK x ranks x max_bytes above the host's total memory (psutil); None where it fits, for fewer than
    2 ranks and on GPUs."""
    if device_type != "cpu" or ranks < 2:
        return None
    need = BUFFERS_PER_RANK * ranks * max_bytes
    have = psutil.virtual_memory().total
    if need <= have:
        return None
    return (f"{flag}: an all-reduce of {max_bytes:,} bytes on {ranks} CPU processes needs about "
            f"{mib(need) / 1024:,.1f} GiB of memory ({BUFFERS_PER_RANK} buffers per rank); this host has "
            f"{mib(have) / 1024:,.1f} GiB")
