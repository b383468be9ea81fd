"""Transcription: a recording (plus optional enrolled voices) → a who-said-what `Transcript`.

Engines share one small interface, `Engine.transcribe(wave, enrolled) -> list[Turn]`, so the CLI, the
Python API and the evaluator do not care which one runs:
- `plain`: VAD windows → Whisper; one anonymous speaker (speaker-agnostic ASR, the WER reference point).
- `cascade`: VAD → speaker-embedding windows → clustering → Whisper words → turns (`cascade.py`).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Optional, Union

import numpy as np

from speakerlm.audio import SAMPLE_RATE, duration, load_audio, Pathlike
from speakerlm.errors import UserError
from speakerlm.labels import ANONYMOUS
from speakerlm.turns import Turn
from speakerlm.whisper import ASR_WINDOW_SECONDS, DEFAULT_WHISPER, load_whisper, transcribe_window
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
    model: Optional[str] = None  # SpeakerLM checkpoint directory (engine "speakerlm"); None = bundled


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


    def __init__(self, options: TranscribeOptions):
        self.options = options
        self.model, self.processor = load_whisper(options.whisper)

    def transcribe(self, wave: np.ndarray, enrolled: Enrolled) -> list[Turn]:
        from speakerlm.vad import group_regions, speech_regions

        turns = []
        for w in group_regions(speech_regions(wave), ASR_WINDOW_SECONDS):
            piece = wave[int(w.start * SAMPLE_RATE) : int(w.end * SAMPLE_RATE)]
            text = transcribe_window(self.model, self.processor, piece, self.options.language, self.options.num_beams)
            if text:
                turns.append(Turn(ANONYMOUS.format(0), text, round(w.start, 3), round(w.end, 3)))
        return turns


class SpeakerLMEngine(Engine):
    """The end-to-end model, one pass per window cut at pauses (long recordings).

    Window k is transcribed with the enrolled speakers *plus* the anonymous speakers found in windows
    before it, registered under their `spk j` labels with voiceprints taken from the audio attributed
    to them, so anonymous labels stay consistent across an hour (design.md, Long recordings).
    The model writes no times (as the paper's); each turn gets an approximate span by laying the
    window's turns, in proportion to their length in characters, over its detected speech.
    """

    # the bundled model was trained on 10–20 s clips; on whole 40–50 s dev clips an earlier checkpoint
    # (step 200) reached only WER 92 %, so windows stay near the training length
    WINDOW_SECONDS = 20.0

    def __init__(self, options: TranscribeOptions):
        from speakerlm.model import SpeakerLM
        from speakerlm.speaker_encoder import load_speaker_encoder

        self.options = options
        path = options.model or bundled_model()
        if path is None:
            raise UserError("no SpeakerLM checkpoint: pass --model DIR, or use --engine cascade")
        self.model = SpeakerLM.load(path)
        if self.model.config.speaker_encoder != options.speaker_encoder:
            self.options = options = replace(options, speaker_encoder=self.model.config.speaker_encoder)
        self.encoder = load_speaker_encoder(self.model.config.speaker_encoder)

    def transcribe(self, wave: np.ndarray, enrolled: Enrolled) -> list[Turn]:
        from speakerlm.labels import is_anonymous
        from speakerlm.vad import Region, group_regions, speech_regions

        # earlier windows' anonymous speakers are registered as "~spk j", a name the model cannot
        # confuse with the window-local "spk k" labels it writes for speakers it has not heard yet
        known = dict(enrolled.voiceprints)
        turns: list[Turn] = []
        n_anon = 0
        regions = speech_regions(wave)
        for window in group_regions(regions, self.WINDOW_SECONDS):
            piece = wave[int(window.start * SAMPLE_RATE) : int(window.end * SAMPLE_RATE)]
            found = self.transcribe_window(piece, known)
            inside = [Region(max(r.start, window.start), min(r.end, window.end)) for r in regions
                      if r.end > window.start and r.start < window.end] or [window]
            new: dict[str, str] = {}  # window-local anonymous label → recording-wide label
            for t in found:
                if is_anonymous(t.speaker):
                    new.setdefault(t.speaker, ANONYMOUS.format(n_anon + len(new)))
            timed = [Turn(new.get(t.speaker, t.speaker.lstrip("~")), t.text, t.start, t.end)
                     for t in _spread_over_speech(found, inside)]
            for label in new.values():
                spans = [wave[int(t.start * SAMPLE_RATE) : int(t.end * SAMPLE_RATE)] for t in timed if t.speaker == label]
                speech = np.concatenate(spans) if spans else np.zeros(0, np.float32)
                if speech.size >= SAMPLE_RATE:  # enough audio to recognise them in later windows
                    known["~" + label] = self.encoder.embed(speech)
            n_anon += len(new)
            turns += timed
        return turns

    def transcribe_window(self, piece: np.ndarray, voiceprints: dict[str, np.ndarray]) -> list[Turn]:
        """One window (≤ WINDOW_SECONDS) with the given registered speakers → untimed turns."""
        import torch

        from speakerlm.features import frame_speaker_stream, log_mel_windows, n_frames
        from speakerlm.model import Example

        processor = self.model.backbone.processor if self.model.config.backbone == "whisper" else self.model.processor
        frames = n_frames(piece)
        with torch.inference_mode():
            audio = self.model.encode_audio(log_mel_windows(processor, piece), frames)
        slots = [(name, torch.from_numpy(np.asarray(v, np.float32))) for name, v in voiceprints.items()]
        ex = Example(audio, frame_speaker_stream(self.encoder, piece, frames), slots)
        return self.model.generate(ex, max_new_tokens=int(40 + 8 * duration(piece)))


def _spread_over_speech(turns: list[Turn], regions) -> list[Turn]:
    """Give untimed turns consecutive spans over the speech regions, in proportion to their length."""
    if not regions:
        return turns
    bounds = np.cumsum([0.0] + [r.duration for r in regions])  # speech seconds before each region

    def at(speech_seconds: float) -> float:  # speech-time → recording time
        i = int(np.clip(np.searchsorted(bounds, speech_seconds, side="right") - 1, 0, len(regions) - 1))
        return float(regions[i].start + speech_seconds - bounds[i])

    total, chars = float(bounds[-1]), sum(len(t.text) for t in turns) or 1
    out, clock = [], 0.0
    for t in turns:
        span = total * len(t.text) / chars
        out.append(Turn(t.speaker, t.text, round(at(clock), 3), round(at(min(total, clock + span) - 1e-6), 3)))
        clock += span
    return out


def bundled_model() -> Optional[str]:
    """The checkpoint shipped inside the package, if this build has one."""
    from pathlib import Path

    path = Path(__file__).parent / "bundled"
    return str(path) if (path / "trained.safetensors").exists() else None


def _cascade(options: TranscribeOptions) -> Engine:
    from speakerlm.cascade import Cascade  # imported late: cascade.py builds on this module

    return Cascade(options)


ENGINES = {"plain": PlainWhisper, "cascade": _cascade, "speakerlm": SpeakerLMEngine}


def mean_voiceprint(waves: list[np.ndarray], encoder_name: str = "campp") -> np.ndarray:
    """Voiceprint of one speaker: the L2-normalised mean embedding of ≤ 10 s clips of their audio
    (paper §5.1: 2–10 s clips, averaged); pieces shorter than 1 s are left out when others exist."""
    from speakerlm.speaker_encoder import load_speaker_encoder

    encoder = load_speaker_encoder(encoder_name)
    clip = 10 * SAMPLE_RATE
    pieces = [w[i : i + clip] for w in waves for i in range(0, w.size, clip)]
    pieces = [p for p in pieces if p.size >= SAMPLE_RATE] or pieces
    mean = np.mean([encoder.embed(p) for p in pieces], axis=0)
    return (mean / np.linalg.norm(mean)).astype(np.float32)


def enroll_voiceprint(paths: list[Pathlike], encoder_name: str = "campp") -> np.ndarray:
    """Voiceprint from enrolment files, refusing audio too short to say anything about the voice."""
    waves = []
    for path in paths:
        wave = load_audio(path)
        if duration(wave) < 1.0:
            raise UserError(f"{path}: enrolment audio is {duration(wave):.1f} s; give at least 1 s (2–10 s is best)")
        waves.append(wave)
    return mean_voiceprint(waves, encoder_name)


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

    def transcribe(self, audio: Union[Pathlike, np.ndarray], speakers: Optional[dict[str, list[Pathlike]]] = None,
                   voiceprints: Optional[dict[str, np.ndarray]] = None) -> Transcript:
        """`speakers`: name → enrolment audio files; `voiceprints`: name → stored voiceprint."""
        started = time.perf_counter()
        wave = load_audio(audio) if not isinstance(audio, np.ndarray) else audio
        enrolled = Enrolled({**(voiceprints or {}),
                             **{name: enroll_voiceprint(paths, self.options.speaker_encoder)
                                for name, paths in (speakers or {}).items()}})
        turns = self.engine.transcribe(wave, enrolled)
        elapsed = time.perf_counter() - started
        meta = {"engine": self.options.engine, "whisper": self.options.whisper,
                "enrolled": sorted(enrolled.voiceprints), "seconds": round(elapsed, 3),
                "rtf": round(elapsed / max(duration(wave), 1e-9), 4)}
        return Transcript(str(audio) if not isinstance(audio, np.ndarray) else "<array>", turns, duration(wave), meta)
