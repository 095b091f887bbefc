"""Unit conversions for what is shown: records hold SI base units (seconds, bytes, bytes/s, fractions), tables and
plots show ms, MiB/GiB, GB/s and percent. One definition each; torch-free."""

from __future__ import annotations

MIB = 2**20
"""Bytes per MiB (binary: memory and tensor sizes)."""
GIB = 2**30
"""Bytes per GiB."""
GB = 1e9
"""Bytes per GB (decimal: bandwidth, as nccl-tests reports GB/s)."""
TERA = 1e12
"""FLOP per TFLOP."""


def ms(seconds: float) -> float:
    """Seconds to milliseconds."""
    return seconds * 1e3


def us_to_ms(microseconds: float) -> float:
    """Microseconds (torch.profiler's unit) to milliseconds."""
    return microseconds / 1e3


def ms_to_s(milliseconds: float) -> float:
    """Milliseconds to seconds."""
    return milliseconds / 1e3


def mib(n_bytes: float) -> float:
    """Bytes to MiB."""
    return n_bytes / MIB


def gib(n_bytes: float) -> float:
    """Bytes to GiB."""
    return n_bytes / GIB


def gb_per_s(bytes_per_s: float) -> float:
    """Bytes/s to GB/s (decimal)."""
    return bytes_per_s / GB


def tflops(flop_per_s: float) -> float:
    """FLOP/s to TFLOP/s."""
    return flop_per_s / TERA


def percent(fraction: float) -> float:
    """A fraction (0.25) as a percentage (25.0)."""
    return fraction * 100


def fraction(percentage: float) -> float:
    """A percentage (25.0) as a fraction (0.25)."""
    return percentage / 100


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """A count with its noun, for every count a message shows: '1 configuration', '0 configurations',
    '2 configurations'. `plural_noun` for a plural that is not noun + 's' ('study', 'studies')."""
    return f"{count} {noun if count == 1 else plural_noun or noun + 's'}"
