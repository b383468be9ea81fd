"""Where a transcription's time goes: wall seconds per pipeline stage, summed over one run.

Each stage's entry point is decorated with `@timed("stage")`; `Transcriber.transcribe` resets the
counters before a recording and puts them in the transcript's run metadata (`stages`), which the
speed benchmark reads. A stage entered again from inside itself (a batch inside a window loop) is
counted once.
"""

from __future__ import annotations

import functools
import time
from collections import Counter

STAGES = ("vad", "speaker embeddings", "clustering", "audio encoder", "decoding", "recognition")
_seconds: Counter = Counter()
_active: Counter = Counter()


def timed(name: str):
    assert name in STAGES, name

    def wrap(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            if _active[name]:  # nested in the same stage: the outer call counts the time
                return fn(*args, **kwargs)
            _active[name] += 1
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                _seconds[name] += time.perf_counter() - started
                _active[name] -= 1
        return run
    return wrap


def reset() -> None:
    _seconds.clear()


def seconds() -> dict[str, float]:
    """The stages that ran since `reset`, in pipeline order, rounded to milliseconds."""
    return {name: round(_seconds[name], 3) for name in STAGES if name in _seconds}
