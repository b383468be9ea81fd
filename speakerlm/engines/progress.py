"""A progress bar over a recording's seconds, for engines that decode it in one pass."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np

from speakerlm.audio import SAMPLE_RATE


@contextmanager
def seconds_bar(wave: np.ndarray, enabled: bool) -> Iterator[Callable[[float], None]]:
    """Yields `advance(seconds_done)`; the bar goes to stderr and is closed at the end."""
    from tqdm import tqdm

    total = round(wave.size / SAMPLE_RATE, 1)
    with tqdm(total=total, desc="audio", unit="s", disable=not enabled,
              bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]") as bar:
        def advance(done: float) -> None:
            bar.update(max(0.0, min(done, total) - bar.n))
        yield advance
        advance(total)
