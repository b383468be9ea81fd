"""Voice activity detection with silero-vad: its ONNX model ships inside the `silero-vad` package and
runs under ONNX Runtime.

Audio is read by our own `audio.py`: `silero_vad.read_audio` needs torchaudio, which does not work here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from speakerlm.audio import SAMPLE_RATE
from speakerlm.stages import timed


@dataclass(frozen=True)
class Region:
    start: float  # seconds
    end: float  # seconds

    @property
    def duration(self) -> float:
        return self.end - self.start


@lru_cache(maxsize=1)
def _silero():
    """silero_vad's (model, get_speech_timestamps). Importing it sets torch to one thread (its
    model.py calls torch.set_num_threads(1) at import), which would leave every later stage on one
    core: the caller's setting is put back."""
    import torch

    threads = torch.get_num_threads()
    try:
        from silero_vad import get_speech_timestamps, load_silero_vad

        model = load_silero_vad(onnx=True)  # the same model under ONNX Runtime: half the time of its TorchScript twin
    finally:
        torch.set_num_threads(threads)
    return model, get_speech_timestamps


@timed("vad")
def speech_regions(wave: np.ndarray, min_silence_s: float = 0.2, min_speech_s: float = 0.25,
                   threshold: float = 0.5) -> list[Region]:
    """Speech regions of a SAMPLE_RATE wave, in order (silero pads each by 30 ms)."""
    import torch

    model, get_speech_timestamps = _silero()
    stamps = get_speech_timestamps(
        torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)),
        model,
        sampling_rate=SAMPLE_RATE,
        threshold=threshold,
        min_silence_duration_ms=int(min_silence_s * 1000),
        min_speech_duration_ms=int(min_speech_s * 1000),
        return_seconds=False,
    )
    return [Region(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]


def group_regions(regions: list[Region], max_s: float) -> list[Region]:
    """Join consecutive speech regions into windows no longer than `max_s` (a region longer than
    `max_s` is split evenly), so each window can go through a fixed-length model."""
    windows: list[Region] = []
    for r in regions:
        pieces = max(1, int(np.ceil(r.duration / max_s)))
        step = r.duration / pieces
        for k in range(pieces):
            piece = Region(r.start + k * step, r.start + (k + 1) * step)
            if windows and piece.end - windows[-1].start <= max_s:
                windows[-1] = Region(windows[-1].start, piece.end)
            else:
                windows.append(piece)
    return windows
