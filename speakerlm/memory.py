"""Keeping memory flat over long recordings.

Windows of a recording have different lengths, so the tensors made for each have different sizes; glibc
keeps the freed pieces of its heap mapped, and over an hour of windows the process's memory grew with
the recording (measured on a 10-minute meeting, SpeakerLM engine: resident memory between windows
1083 → 1499 MB over 35 windows, peak 1572 MB; trimming after each window: flat at 770–783 MB, peak
1149 MB). No library does this for a CPU PyTorch process, hence by hand.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache


@lru_cache(maxsize=1)
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc if libc is not None and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def return_freed_memory() -> bool:
    """Hand the heap's free pages back to the OS (glibc `malloc_trim`); False where there is no glibc."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
