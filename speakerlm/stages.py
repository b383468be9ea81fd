"""Where a transcription's time goes: wall seconds per pipeline stage, summed over one run.

Each stage's entry point is decorated with `@timed("stage")`; `Transcriber.transcribe` resets the
counters before a recording and puts them in the transcript's run metadata (`stages`), which the
speed benchmark reads. A stage entered again from inside itself (a batch inside a window loop) is
counted once; stages that run side by side on two threads each count their own time, so the shares of
such an engine add up to more than the whole.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter

STAGES = ("vad", "speaker embeddings", "clustering", "audio encoder", "decoding", "recognition")
_seconds: Counter = Counter()
_nesting = threading.local()  # per thread: an engine may run two stages side by side


def timed(name: str):
    assert name in STAGES, name

    def wrap(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            active = _nesting.__dict__.setdefault("active", Counter())
            if active[name]:  # nested in the same stage: the outer call counts the time
                return fn(*args, **kwargs)
            active[name] += 1
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                _seconds[name] += time.perf_counter() - started
                active[name] -= 1
        return run
    return wrap


def reset() -> None:
    _seconds.clear()


def seconds() -> dict[str, float]:
    """The stages that ran since `reset`, in pipeline order, rounded to milliseconds."""
    return {name: round(_seconds[name], 3) for name in STAGES if name in _seconds}
