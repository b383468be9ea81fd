"""Memory is handed back between windows."""

import os

import numpy as np

from speakerlm.memory import return_freed_memory


def _resident_mb() -> float:
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_freed_heap_pages_go_back_to_the_os():
    # many mid-sized blocks (below glibc's mmap threshold, so they live on the heap), all freed but one
    # at the top, which keeps the heap from shrinking by itself: only a trim returns the pages below it
    blocks = [np.ones(16_000, np.float64) for _ in range(4000)]  # ~500 MB
    keep = np.ones(16_000, np.float64)
    del blocks
    before = _resident_mb()
    assert return_freed_memory()
    assert _resident_mb() < before - 200, (before, _resident_mb())
    del keep
