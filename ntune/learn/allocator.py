"""Keep freed memory for the next training step (glibc), instead of mapping fresh pages each step.

A training step at N = 1000 allocates several (N, N) float buffers (W's gradient, sign(W), Adam's
temporaries) and frees them. glibc serves blocks above its mmap threshold with fresh ``mmap`` pages, and
returns freed heap above its trim threshold to the system, so every step pays page faults on 4 MB
buffers. :func:`keep_freed_memory` raises both thresholds (``mallopt``) for the process; a no-op where
the C library is not glibc. Measured in benchmarks/README.md (trainer step).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
THRESHOLD = 32 << 20  # the largest mmap threshold glibc accepts on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)


@functools.cache
def keep_freed_memory() -> bool:
    """Serve blocks up to 32 MiB from the heap and keep freed heap; True if glibc accepted both settings."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, 2 * THRESHOLD))
