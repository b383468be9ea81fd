"""Transcription: a recording (plus optional enrolled voices) → a who-said-what `Transcript`.

Engines share one small interface, `Engine.transcribe(wave, enrolled) -> list[Turn]`, so the CLI, the
Python API and the evaluator do not care which one runs:
- `plain`: VAD windows → Whisper; one anonymous speaker (speaker-agnostic ASR, the WER reference point).
- `cascade`: VAD → speaker-embedding windows → clustering → Whisper words → turns (`cascade.py`).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np

from speakerlm.audio import SAMPLE_RATE, duration, load_audio, Pathlike
from speakerlm.errors import UserError
from speakerlm.labels import ANONYMOUS
from speakerlm.turns import Turn
from speakerlm.whisper import CHUNK_SECONDS, DEFAULT_WHISPER, load_whisper, transcribe_window
from speakerlm.writers import Transcript



@dataclass(frozen=True)
class TranscribeOptions:
    engine: str = "cascade"  # which Engine turns audio into turns (see ENGINES)
    whisper: str = DEFAULT_WHISPER  # "tiny.en", "base", or a local HF Whisper directory
    language: Optional[str] = "en"  # for multilingual Whisper; None = detect
    num_beams: int = 1  # 1 = greedy decoding
    speaker_encoder: str = "campp"  # voiceprints of enrolled speakers ("campp" or "ge2e")
    num_speakers: Optional[int] = None  # known speaker count (skips estimation)
    min_speakers: Optional[int] = None  # lower bound for the estimated count
    max_speakers: Optional[int] = None  # upper bound for the estimated count


@dataclass
class Enrolled:
    """Enrolled speakers: name → voiceprint (mean embedding of their enrolment audio)."""

    voiceprints: dict[str, np.ndarray] = field(default_factory=dict)


class Engine(ABC):
    @abstractmethod
    def transcribe(self, wave: np.ndarray, enrolled: Enrolled) -> list[Turn]:
        """A SAMPLE_RATE mono wave → chronological turns."""


class PlainWhisper(Engine):
    """Speech windows cut at pauses, each transcribed by Whisper; no speaker attribution."""

    WINDOW_SECONDS = CHUNK_SECONDS - 2  # headroom: silero pads regions by 30 ms each side

    def __init__(self, options: TranscribeOptions):
        self.options = options
        self.model, self.processor = load_whisper(options.whisper)

    def transcribe(self, wave: np.ndarray, enrolled: Enrolled) -> list[Turn]:
        from speakerlm.vad import group_regions, speech_regions

        turns = []
        for w in group_regions(speech_regions(wave), self.WINDOW_SECONDS):
            piece = wave[int(w.start * SAMPLE_RATE) : int(w.end * SAMPLE_RATE)]
            text = transcribe_window(self.model, self.processor, piece, self.options.language, self.options.num_beams)
            if text:
                turns.append(Turn(ANONYMOUS.format(0), text, round(w.start, 3), round(w.end, 3)))
        return turns


def _cascade(options: TranscribeOptions) -> Engine:
    from speakerlm.cascade import Cascade  # imported late: cascade.py builds on this module

    return Cascade(options)


ENGINES = {"plain": PlainWhisper, "cascade": _cascade}


def enroll_voiceprint(paths: list[Pathlike], encoder_name: str = "campp") -> np.ndarray:
    """Voiceprint of one speaker: the mean embedding of 2–10 s clips of their audio (paper §5.1)."""
    from speakerlm.speaker_encoder import load_speaker_encoder

    encoder = load_speaker_encoder(encoder_name)
    embs = []
    for path in paths:
        wave = load_audio(path)
        if duration(wave) < 1.0:
            raise UserError(f"{path}: enrolment audio is {duration(wave):.1f} s; give at least 1 s (2–10 s is best)")
        clip = 10 * SAMPLE_RATE
        embs += [encoder.embed(wave[i : i + clip]) for i in range(0, wave.size, clip) if wave.size - i >= SAMPLE_RATE]
    mean = np.mean(embs, axis=0)
    return mean / np.linalg.norm(mean)


class Transcriber:
    """The Python API: `Transcriber(options).transcribe("meeting.wav", speakers={"Alice": ["alice.wav"]})`."""

    def __init__(self, options: TranscribeOptions = TranscribeOptions()):
        if options.engine not in ENGINES:
            raise UserError(f"unknown engine {options.engine!r}; choose one of {sorted(ENGINES)}")
        self.options = options
        self._engine: Optional[Engine] = None  # built on first use, so bad input fails before models load

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = ENGINES[self.options.engine](self.options)
        return self._engine

    def transcribe(self, audio: Union[Pathlike, np.ndarray],
                   speakers: Optional[dict[str, list[Pathlike]]] = None) -> Transcript:
        started = time.perf_counter()
        wave = load_audio(audio) if not isinstance(audio, np.ndarray) else audio
        enrolled = Enrolled({name: enroll_voiceprint(paths, self.options.speaker_encoder)
                             for name, paths in (speakers or {}).items()})
        turns = self.engine.transcribe(wave, enrolled)
        elapsed = time.perf_counter() - started
        meta = {"engine": self.options.engine, "whisper": self.options.whisper,
                "enrolled": sorted(enrolled.voiceprints), "seconds": round(elapsed, 3),
                "rtf": round(elapsed / max(duration(wave), 1e-9), 4)}
        return Transcript(str(audio) if not isinstance(audio, np.ndarray) else "<array>", turns, duration(wave), meta)
