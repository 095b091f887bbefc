"""Bandwidth of a collective, as nccl-tests defines it (doc/PERFORMANCE.md in NVIDIA/nccl-tests): torch-free, so
both what a rank measures and the scaling model read it.

algbw = bytes / time; busbw = algbw x factor(n), with factor 2(n-1)/n for all-reduce, (n-1)/n for reduce-scatter and
all-gather, 1 for broadcast and reduce, so busbw compares with a link's peak at any n.
"""

from __future__ import annotations

BUS_FACTORS = {
    "all_reduce": lambda n: 2 * (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
    "broadcast": lambda n: 1.0,
    "reduce": lambda n: 1.0,
}


def bus_factor(op: str, n: int) -> float:
    return BUS_FACTORS[op](n)


def algbw(nbytes: float, time_s: float) -> float:
    """Bytes per second a collective moved, as seen by its user."""
    return nbytes / time_s


def busbw(op: str, nbytes: float, time_s: float, n: int) -> float:
    """algbw scaled to what each link carried (nccl-tests' bus bandwidth)."""
    return algbw(nbytes, time_s) * bus_factor(op, n)
