"""Audio input: any file soundfile can read → validated mono 16 kHz float32.

Every length in the project is derived from the constants below.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

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
    path = _audio_path(path)
    with readable(path):
        wave, sr = _read_mono(path)
    return prepare_wave(wave, sr, source=str(path), owned=True)


def check_audio_file(path: Pathlike) -> str:
    """`path` if its header says it is audio that `load_audio` can read, else the same UserError:
    commands check every input this way before any long work starts, without decoding it twice
    (silence and NaN samples show only when `load_audio` reads them)."""
    import soundfile as sf

    path = _audio_path(path)
    with readable(path):
        sf.info(str(path))
    return str(path)


def _audio_path(path: Pathlike) -> Path:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not an audio file; pass an audio file (wav, flac, ogg, mp3)")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the file is empty (0 bytes); re-export or re-record it")
    return path


@contextmanager
def readable(path: Path) -> Iterator[None]:
    """soundfile's errors (LibsndfileError, RuntimeError or TypeError by format) as one UserError line."""
    try:
        yield
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(
            f"{path}: not a readable audio file ({reason}); convert it to wav or flac, e.g. "
            f"`ffmpeg -i {path.name} out.wav`"
        ) from None


def _read_mono(path: Path, block_s: float = 30.0) -> tuple[np.ndarray, int]:
    """(mono float32 wave at SAMPLE_RATE, original rate), read block by block: an hour of stereo
    48 kHz would otherwise sit in memory several times over (file frames, channel mix, resampling)
    before the one 16 kHz copy the rest of the pipeline keeps."""
    import soundfile as sf
    import soxr

    with sf.SoundFile(str(path)) as f:
        sr, total = f.samplerate, f.frames
        out_total = int(np.ceil(total * SAMPLE_RATE / sr)) + SAMPLE_RATE  # resampler slack; trimmed below
        wave = np.empty(out_total, np.float32)
        stream = soxr.ResampleStream(sr, SAMPLE_RATE, 1, dtype="float32") if sr != SAMPLE_RATE else None
        at = 0
        while True:
            block = f.read(int(block_s * sr), dtype="float32", always_2d=True)
            last = len(block) == 0
            mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
            if stream is not None:
                mono = stream.resample_chunk(mono, last=last)
            if at + mono.size > wave.size:  # frame count was a header estimate (some formats)
                wave = np.concatenate([wave, np.empty(max(mono.size, wave.size // 2), np.float32)])
            wave[at : at + mono.size] = mono
            at += mono.size
            if last:
                break
    return wave[:at], SAMPLE_RATE


def prepare_wave(wave: np.ndarray, sample_rate: int, source: str = "<array>", owned: bool = False) -> np.ndarray:
    """Validate an in-memory mono or (samples, channels) wave and bring it to SAMPLE_RATE float32.
    `owned`: the wave is ours to change in place (no hour-long copies); a caller's array never is."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    if wave.ndim != 1:
        raise UserError(f"{source}: expected a mono or (samples, channels) wave, got shape {wave.shape}")
    if wave.size == 0:
        raise UserError(f"{source}: the audio has zero length (no samples); the file may be truncated")
    if not np.isfinite(wave.sum(dtype=np.float64)):  # NaN or ±inf anywhere makes the sum non-finite
        raise UserError(f"{source}: the audio contains NaN or infinite samples; the file is corrupt, re-export it")
    if wave.size / sample_rate < MIN_DURATION:
        raise UserError(
            f"{source}: the audio is {wave.size / sample_rate:.3f} s long, shorter than {MIN_DURATION} s; "
            "give a longer recording"
        )
    if max(float(wave.max()), -float(wave.min())) < SILENCE_PEAK:
        raise UserError(f"{source}: the audio is silent (peak below -80 dBFS); check the recording or the input channel")
    if sample_rate != SAMPLE_RATE:
        import soxr

        wave, owned = soxr.resample(wave, sample_rate, SAMPLE_RATE).astype(np.float32), True
    return np.clip(wave, -1.0, 1.0, out=wave if owned else None)


def duration(wave: np.ndarray) -> float:
    """Length of a SAMPLE_RATE wave in seconds."""
    return wave.shape[-1] / SAMPLE_RATE
