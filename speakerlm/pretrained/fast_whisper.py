"""Whisper decoded by faster-whisper (CTranslate2): the recognition of the plain and cascade engines.

The same weights as `whisper.py`'s PyTorch rebuild, run the way Whisper's own long-form `transcribe`
runs them: sequential 30 s windows seeking by timestamps, the previous window's text as prompt,
temperature fallback on compression-ratio and log-probability checks, beam search, and silero VAD to
skip silence. That is a maintained library's job, so it is used rather than re-written; the PyTorch
model stays where gradients are needed (the SpeakerLM model and its training).

faster-whisper reads a CTranslate2 folder: the packaged models' (`whisper.ct2_folder`, which the
PyTorch conversion reads too), or a local Hugging Face Whisper folder converted once by CTranslate2's
own converter.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from speakerlm.audio import SAMPLE_RATE
from speakerlm.cache import atomic_dir, cache_dir
from speakerlm.errors import UserError
from speakerlm.pretrained.whisper import CT2_FILES, SOURCES, ct2_folder
from speakerlm.stages import timed

DEFAULT_BEAMS = 5  # Whisper's own transcribe default; greedy loses words on multi-voice audio
COMPUTE_TYPE = "int8"  # CPU: int8 weights with float activations, as faster-whisper recommends


@dataclass(frozen=True)
class Word:
    text: str  # as decoded, punctuation attached ("morning,")
    start: float  # seconds in the recording (faster-whisper's cross-attention alignment)
    end: float


@dataclass(frozen=True)
class Segment:
    """One decoded stretch of speech (Whisper's own segmentation) with its words."""

    start: float  # seconds in the recording
    end: float
    text: str
    words: tuple[Word, ...]


def ct2_dir(name: str) -> Path:
    """The CTranslate2 folder of Whisper `name` ("tiny.en", "base" or a local HF Whisper folder)."""
    if name in SOURCES:
        return ct2_folder(SOURCES[name])
    path = Path(name)
    if (path / "model.bin").exists():
        return path  # already a CTranslate2 folder
    if (path / "config.json").exists():
        out = cache_dir() / f"ct2-{path.name}-{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]}"
        if not (out / "model.bin").exists():
            _convert_hf(path, out)
        return out
    raise UserError(f"unknown Whisper model {name!r}; choose one of {sorted(SOURCES)} or give a local "
                    "Whisper folder (Hugging Face or CTranslate2)")


def _convert_hf(path: Path, out: Path) -> None:
    """A Hugging Face Whisper folder → a CTranslate2 one, by CTranslate2's own converter."""
    from ctranslate2.converters import TransformersConverter

    with atomic_dir(out) as tmp:
        TransformersConverter(str(path), copy_files=["tokenizer.json"]).convert(str(tmp), force=True)
        for name in CT2_FILES:
            if (path / name).exists() and not (tmp / name).exists():
                shutil.copy(path / name, tmp / name)


BLOCK_SECONDS = 300.0  # long waves are decoded block by block (see FastWhisper.transcribe)


def block_end(wave: np.ndarray, start: int, search_s: float = 15.0) -> int:
    """Where the block from sample `start` ends: the wave's end if that is within 1.2 blocks, else the
    middle of the quietest 50 ms in the last `search_s` seconds of the block, so a cut falls in a pause
    rather than in a word."""
    block_s = BLOCK_SECONDS
    if wave.size - start <= 1.2 * block_s * SAMPLE_RATE:
        return wave.size
    hop = SAMPLE_RATE // 20
    a = start + int((block_s - min(search_s, block_s / 2)) * SAMPLE_RATE)
    frames = wave[a : start + int(block_s * SAMPLE_RATE)].astype(np.float32)
    frames = frames[: frames.size // hop * hop].reshape(-1, hop)
    return a + int(np.argmin((frames ** 2).mean(axis=1))) * hop + hop // 2


def default_threads() -> int:
    """OMP_NUM_THREADS where the user set it (torch honours it too), else up to two cores."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return min(2, os.cpu_count() or 1)


class FastWhisper:
    """faster-whisper over one Whisper model: whole recordings in, segments with timed words out."""

    def __init__(self, name: str, threads: int = 0, language: Optional[str] = "en"):
        """`language`: what it will be asked to transcribe; an English-only model refuses any other
        (faster-whisper would write English words for it without a word of warning)."""
        from faster_whisper import WhisperModel

        self.name = name
        self.model = WhisperModel(str(ct2_dir(name)), device="cpu", compute_type=COMPUTE_TYPE,
                                  cpu_threads=threads or default_threads(), local_files_only=True)
        self.multilingual = self.model.model.is_multilingual
        if language not in (None, "en") and not self.multilingual:
            raise UserError(f"--language {language}: Whisper {name} is English-only; use a multilingual one (--whisper base)")

    @timed("recognition")
    def transcribe(self, wave: np.ndarray, language: Optional[str] = "en", num_beams: int = DEFAULT_BEAMS,
                   words: bool = True, vad: bool = True, start: float = 0.0, prompt: Optional[str] = None,
                   on_segment: Optional[Callable[[Segment], None]] = None) -> list[Segment]:
        """A SAMPLE_RATE mono wave → chronological segments, in the wave's clock. `language` None =
        detect (multilingual models). `start`: decode from this second
        on (a resumed run), with `prompt` (the text before it) as the previous-window context.
        `on_segment` sees each segment as soon as it is decoded.

        A long wave is decoded in blocks of about BLOCK_SECONDS, cut at the quietest 50 ms near each
        block's end, each with the text before it as prompt: faster-whisper computes the features of
        its whole input at once (an hour's are ~2 GB), so blocks keep memory flat in the length."""
        out: list[Segment] = []
        position = int(start * SAMPLE_RATE)
        while position < wave.size:
            end = block_end(wave, position)
            segments, _ = self.model.transcribe(
                np.ascontiguousarray(wave[position:end], dtype=np.float32),
                language=language if self.multilingual else None, task="transcribe", beam_size=num_beams,
                word_timestamps=words, vad_filter=vad, condition_on_previous_text=True, initial_prompt=prompt or None)
            shift = position / SAMPLE_RATE
            for s in segments:  # a generator: decoding happens as it is read
                timed = tuple(Word(w.word.strip(), round(shift + float(w.start), 3), round(shift + float(max(w.end, w.start)), 3))
                              for w in (s.words or []) if w.word.strip())
                out.append(Segment(round(shift + float(s.start), 3), round(shift + float(s.end), 3), s.text.strip(), timed))
                if on_segment is not None:
                    on_segment(out[-1])
            prompt = " ".join(s.text for s in out[-3:]) or prompt
            position = end
        return out
