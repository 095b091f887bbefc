"""Host memory the CPU training step reuses instead of faulting in again.

glibc's malloc serves blocks above its mmap threshold (128 KiB at start) with fresh mappings and returns a heap's
free top to the OS above its trim threshold; both thresholds move with the process's history of frees (mallopt(3),
"dynamic mmap threshold"). A CPU step's activations and gradients are such blocks. Measured on this project's
2-core EPYC, single, real CIFAR-10 (docs/trust.md): after the dataset was loaded, the first pass over 78 steps
took 11,000 minor page faults per step and 46 ms per step, the next pass 0 faults and 33 ms; the synthetic dataset's
history gave 344 faults and no slowdown. So the first epoch's time depended on what the process had loaded before,
differently per configuration. Fixing both thresholds (which also turns the dynamic adjustment off) makes every
step after the first reuse the same pages, whatever came before.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
"""mallopt(3) parameter numbers (glibc malloc.h)."""
MMAP_THRESHOLD_BYTES = 32 * 2**20
"""Blocks up to this size come from the heap: glibc's largest allowed mmap threshold on 64-bit (HEAP_MAX_SIZE / 2,
mallopt(3)); larger blocks are still mapped per allocation."""
TRIM_THRESHOLD_BYTES = 2**30
"""Free memory at the heap's top kept up to this size instead of being returned to the OS after each step."""


def keep_freed_memory() -> bool:
    """Set glibc malloc's mmap and trim thresholds (MMAP_THRESHOLD_BYTES, TRIM_THRESHOLD_BYTES) for this process, so
    the blocks a training step frees are reused by the next step without page faults. Call once per process, before
    training. Returns False where the C library has no mallopt (not glibc: macOS, musl) or refuses a value; then
    nothing changed."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success, 0 on error (an out-of-range value)
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) & bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
