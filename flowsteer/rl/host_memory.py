"""Keep freed host memory in the process, so a CPU update step does not fault its pages back in.

A training step on CPU keeps every activation alive until the backward pass, then frees them all.
With glibc's default, adaptive thresholds the freed top of the heap (hundreds of MB) is handed
back to the kernel, and the next step's forward pass faults the same pages in again, zeroed: on
the benchmark's small model, 67k page faults and about a fifth of the forward pass's CPU time per
step. Raising the trim threshold keeps freed memory for reuse (what PyTorch's CUDA caching
allocator does on GPU), and fixing the mmap threshold at its maximum serves tensors of up to
32 MiB from that heap. The process then holds on to its peak host memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
"""glibc's largest mmap threshold on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``)."""
TRIM_THRESHOLD = 2**31 - 1
"""Freed heap top kept before any is given back (2 GiB, the largest ``int``)."""


def retain_freed_host_memory() -> bool:
    """Set glibc's malloc to keep freed memory (process-wide); False where libc is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # no libc found, or not glibc (macOS, musl)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    trim = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    mmap = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    if not (trim and mmap):
        logger.debug("mallopt refused the thresholds (trim %s, mmap %s)", trim, mmap)
    return bool(trim and mmap)


__all__ = ["retain_freed_host_memory"]
