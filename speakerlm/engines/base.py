"""What every engine shares: the user's options, and the interface `Transcriber` drives."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from speakerlm.audio import Pathlike
from speakerlm.diarize import SpeakerCount
from speakerlm.errors import UserError
from speakerlm.turns import Turn
from speakerlm.voiceprints import Voiceprints

SPEAKER_ENCODERS = ("campp", "ge2e")  # the first is the default
# the engine `transcribe` uses unless told: the most accurate on the held-out (ood, real) dev sets,
# where the cascade beats the bundled model at both words and speakers (README, docs/results.md)
DEFAULT_ENGINE = "cascade"


@dataclass(frozen=True)
class TranscribeOptions:
    """What a user chooses (CLI flags, Python keywords). Experiment switches of an engine live in its
    own config (`CascadeConfig`, `SpeakerLMEngineConfig`), which benchmarks and `evaluate` set."""

    # "cascade", "speakerlm" (the model) or "plain"; None = DEFAULT_ENGINE, or speakerlm when a model is given
    engine: Optional[str] = None
    model: Optional[str] = None  # SpeakerLM model folder (engine speakerlm); None = the bundled one
    whisper: Optional[str] = None  # "tiny.en", "base" or a local HF Whisper folder; None = the engine's own
    language: Optional[str] = "en"  # for multilingual Whisper; None = detect
    num_beams: Optional[int] = None  # beam size, 1 = greedy; None = the engine's own (model 4, Whisper 5)
    speaker_encoder: Optional[str] = None  # voiceprints: "campp" or "ge2e"; None = the engine's own
    progress: bool = False  # progress bar over a recording's windows

    def __post_init__(self):
        if self.engine is None:
            engine = "speakerlm" if self.model is not None else DEFAULT_ENGINE
            object.__setattr__(self, "engine", engine)  # frozen: filled in once, here
        if self.num_beams is not None and self.num_beams < 1:
            raise UserError(f"--beams {self.num_beams}: give a beam size of at least 1 (1 = greedy)")
        if self.speaker_encoder not in (None, *SPEAKER_ENCODERS):
            raise UserError(f"speaker encoder {self.speaker_encoder!r}: choose one of {', '.join(SPEAKER_ENCODERS)}")
        if self.engine != "speakerlm" and self.model is not None:
            raise UserError(f"--model applies to --engine speakerlm, not {self.engine}")


class Engine(ABC):
    """Built once from the options and the engine's config (None = its defaults) — models load then —
    and used for any number of recordings."""

    Config: Optional[type] = None  # the engine's experiment-switch dataclass, if it has one
    resumable: bool = False  # records finished work in `state`, so an interrupted run resumes

    @classmethod
    def resolve(cls, options: TranscribeOptions) -> TranscribeOptions:
        """The options with what the engine decides filled in (its Whisper, its speaker encoder), or a
        UserError for what it cannot honour. Reads no weights: bad input fails before any work."""
        from speakerlm.pretrained.fast_whisper import DEFAULT_BEAMS
        from speakerlm.pretrained.whisper import DEFAULT_WHISPER

        return replace(options, whisper=options.whisper or DEFAULT_WHISPER, num_beams=options.num_beams or DEFAULT_BEAMS,
                       speaker_encoder=options.speaker_encoder or SPEAKER_ENCODERS[0])

    @abstractmethod
    def transcribe(self, wave: np.ndarray, voiceprints: Voiceprints, count: SpeakerCount = SpeakerCount(),
                   state: Optional[Pathlike] = None) -> list[Turn]:
        """A SAMPLE_RATE mono wave and the enrolled voiceprints → chronological turns. `count`: what the
        user knows of the number of speakers. `state`: a file where an engine that works window by
        window records finished windows, so an interrupted run resumes."""
