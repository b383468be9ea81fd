"""The library entry point: a recording (plus optional enrolled voices) → a who-said-what `Transcript`.

    Transcriber(TranscribeOptions(engine="speakerlm")).transcribe("meeting.wav", speakers={"Alice": ["a.wav"]})

Everything the user gave is checked before any model loads: the engine resolves the options against
its model (`Engine.resolve`), enrolment audio is read and embedded, and only then does the engine load
and run.
"""

from __future__ import annotations

import time
from typing import Optional, Union

import numpy as np

from speakerlm import stages
from speakerlm.audio import Pathlike, duration, load_audio
from speakerlm.diarize import SpeakerCount
from speakerlm.engines.base import Engine, TranscribeOptions
from speakerlm.engines.cascade import Cascade
from speakerlm.engines.plain import PlainWhisper
from speakerlm.engines.speakerlm import SpeakerLMEngine
from speakerlm.errors import UserError
from speakerlm.turns import Transcript
from speakerlm.voiceprints import Voiceprints, enroll_voiceprint

ENGINES: dict[str, type[Engine]] = {"speakerlm": SpeakerLMEngine, "cascade": Cascade, "plain": PlainWhisper}

__all__ = ["ENGINES", "TranscribeOptions", "Transcriber"]


class Transcriber:
    """`engine_config`: the engine's experiment switches (benchmarks and `evaluate` set them)."""

    def __init__(self, options: TranscribeOptions = TranscribeOptions(), engine_config=None):
        if options.engine not in ENGINES:
            raise UserError(f"unknown engine {options.engine!r}; choose one of {', '.join(ENGINES)}")
        self.options = ENGINES[options.engine].resolve(options)
        self.engine_config = engine_config
        self._engine: Optional[Engine] = None  # built on first use, so bad input fails before models load

    @property
    def speaker_encoder(self) -> str:
        """The encoder whose voiceprints the engine compares: enrol and load stored voiceprints with it."""
        return self.options.speaker_encoder

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = ENGINES[self.options.engine](self.options, self.engine_config)
        return self._engine

    def enroll(self, speakers: dict[str, list[Pathlike]]) -> Voiceprints:
        """Name → enrolment audio files → name → voiceprint, with this engine's speaker encoder."""
        return {name: enroll_voiceprint(paths, self.speaker_encoder) for name, paths in speakers.items()}

    def transcribe(self, audio: Union[Pathlike, np.ndarray], speakers: Optional[dict[str, list[Pathlike]]] = None,
                   voiceprints: Optional[Voiceprints] = None, num_speakers: Optional[int] = None,
                   min_speakers: Optional[int] = None, max_speakers: Optional[int] = None,
                   state: Optional[Pathlike] = None) -> Transcript:
        """`speakers`: name → enrolment audio files; `voiceprints`: name → stored voiceprint;
        `num_speakers` / `min_speakers` / `max_speakers`: what is known of the speaker count; `state`: a
        file recording finished windows, so that calling again after an interruption resumes."""
        count = SpeakerCount(num_speakers, min_speakers, max_speakers)
        stages.reset()
        started = time.perf_counter()
        wave = load_audio(audio) if not isinstance(audio, np.ndarray) else audio
        enrolled = {**(voiceprints or {}), **self.enroll(speakers or {})}
        loading = time.perf_counter()
        engine = self.engine  # models load on first use: after the input is checked, outside the run's time
        loaded = time.perf_counter() - loading
        turns = engine.transcribe(wave, enrolled, count, state)
        elapsed = time.perf_counter() - started - loaded
        meta = {"engine": self.options.engine, "whisper": self.options.whisper, "enrolled": sorted(enrolled),
                "seconds": round(elapsed, 3), "rtf": round(elapsed / max(duration(wave), 1e-9), 4),
                "load_seconds": round(loaded, 3), "stages": stages.seconds()}  # where the time went (stages.py)
        return Transcript(str(audio) if not isinstance(audio, np.ndarray) else "<array>", turns, duration(wave), meta)
