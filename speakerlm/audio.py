"""Audio input: any file soundfile can read → validated mono 16 kHz float32.

Every length in the project is derived from the constants below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np

from speakerlm.errors import UserError

SAMPLE_RATE = 16_000  # Hz, what every model here expects
MIN_DURATION = 0.1  # seconds; shorter input holds no word
SILENCE_PEAK = 1e-4  # |amplitude| below this everywhere = a silent file (−80 dBFS)

Pathlike = Union[str, os.PathLike]


def load_audio(path: Pathlike) -> np.ndarray:
    """Read `path`, mix to mono, resample to SAMPLE_RATE; shape (samples,), float32 in [-1, 1].

    Raises UserError, with the file name and a remedy, for anything that is not usable speech audio.
    """
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not an audio file; pass an audio file (wav, flac, ogg, mp3)")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the file is empty (0 bytes); re-export or re-record it")
    try:
        wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError or TypeError by format
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(
            f"{path}: not a readable audio file ({reason}); convert it to wav or flac, e.g. "
            f"`ffmpeg -i {path.name} out.wav`"
        ) from None
    return prepare_wave(wave.mean(axis=1), sr, source=str(path))


def prepare_wave(wave: np.ndarray, sample_rate: int, source: str = "<array>") -> np.ndarray:
    """Validate an in-memory mono or (samples, channels) wave and bring it to SAMPLE_RATE float32."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    if wave.ndim != 1:
        raise UserError(f"{source}: expected a mono or (samples, channels) wave, got shape {wave.shape}")
    if wave.size == 0:
        raise UserError(f"{source}: the audio has zero length (no samples); the file may be truncated")
    if not np.all(np.isfinite(wave)):
        raise UserError(f"{source}: the audio contains NaN or infinite samples; the file is corrupt, re-export it")
    if wave.size / sample_rate < MIN_DURATION:
        raise UserError(
            f"{source}: the audio is {wave.size / sample_rate:.3f} s long, shorter than {MIN_DURATION} s; "
            "give a longer recording"
        )
    if float(np.max(np.abs(wave))) < SILENCE_PEAK:
        raise UserError(f"{source}: the audio is silent (peak below -80 dBFS); check the recording or the input channel")
    if sample_rate != SAMPLE_RATE:
        import soxr

        wave = soxr.resample(wave, sample_rate, SAMPLE_RATE).astype(np.float32)
    return np.clip(wave, -1.0, 1.0)


def duration(wave: np.ndarray) -> float:
    """Length of a SAMPLE_RATE wave in seconds."""
    return wave.shape[-1] / SAMPLE_RATE
