"""Progress of one recording: a bar over its seconds, and a state file of finished work (one JSON
record a line, flushed and synced) from which an interrupted run resumes."""

from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from speakerlm.audio import SAMPLE_RATE, Pathlike


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


def read_records(state: Optional[Pathlike]) -> list[dict]:
    """The records of an interrupted run, in order; a torn last line (the run died while writing it)
    is dropped and the file rewritten without it."""
    if state is None or not Path(state).exists():
        return []
    lines = Path(state).read_text().splitlines()
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    if len(records) < len(lines):
        write_records(state, records)
    return records


def write_records(state: Pathlike, records: list[dict]) -> None:
    Path(state).write_text("".join(json.dumps(r) + "\n" for r in records))


class RecordLog:
    """Appends records to a state file (None: records nothing), each on disk before the next."""

    def __init__(self, state: Optional[Pathlike]):
        self.file = open(state, "a") if state is not None else None
        self.lock = threading.Lock()  # engines append from more than one thread

    def append(self, record: dict) -> None:
        if self.file is not None:
            with self.lock:
                self.file.write(json.dumps(record) + "\n")
                self.file.flush()
                os.fsync(self.file.fileno())

    def close(self) -> None:
        if self.file is not None:
            self.file.close()

    def __enter__(self) -> "RecordLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
