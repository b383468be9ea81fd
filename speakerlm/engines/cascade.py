"""The cascaded baseline: diarization → Whisper words (faster-whisper, long-form) → each word labelled
from the frames it was spoken in → turns → enrolled names.

The paper compares SpeakerLM with such cascades (its Fig. 1a). The join follows WhisperX: every ASR
word goes to the speaker active at its time, so speaker changes without a pause are handled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from speakerlm.diarize import FRAMES_PER_SECOND, Diarizer, DiarizerConfig, SpeakerCount
from speakerlm.engines.base import Engine, TranscribeOptions
from speakerlm.engines.progress import seconds_bar
from speakerlm.pretrained.fast_whisper import FastWhisper, Word
from speakerlm.turns import ANONYMOUS, Turn
from speakerlm.vad import speech_regions
from speakerlm.voiceprints import MATCH_THRESHOLD, match_names


@dataclass(frozen=True)
class CascadeConfig:
    diarizer: DiarizerConfig = field(default_factory=DiarizerConfig)
    match_threshold: float = MATCH_THRESHOLD  # cosine(cluster centroid, voiceprint) needed to name a cluster
    turn_gap_s: float = 2.0  # a longer pause starts a new turn even for the same speaker


def word_speaker(word: Word, frames: np.ndarray) -> int:
    """The label covering most of the word's span; the nearest labelled frame if none does."""
    a = int(word.start * FRAMES_PER_SECOND)
    b = max(a + 1, int(word.end * FRAMES_PER_SECOND))
    span = frames[a:b]
    span = span[span >= 0]
    if span.size:
        return int(np.bincount(span).argmax())
    labelled = np.flatnonzero(frames >= 0)
    if not labelled.size:
        return 0
    return int(frames[labelled[np.argmin(np.abs(labelled - (a + b) / 2))]])


def words_to_turns(words: list[Word], speakers: list[str], gap_s: float) -> list[Turn]:
    turns: list[Turn] = []
    for word, speaker in zip(words, speakers):
        last = turns[-1] if turns else None
        if last and last.speaker == speaker and word.start - last.end <= gap_s:
            turns[-1] = Turn(speaker, f"{last.text} {word.text}", last.start, word.end)
        else:
            turns.append(Turn(speaker, word.text, word.start, word.end))
    return turns


class Cascade(Engine):
    Config = CascadeConfig

    def __init__(self, options: TranscribeOptions, config: CascadeConfig = CascadeConfig()):
        from speakerlm.pretrained.speaker_encoder import load_speaker_encoder

        self.options, self.config = self.resolve(options), config or CascadeConfig()
        self.asr = FastWhisper(self.options.whisper)
        self.diarizer = Diarizer(load_speaker_encoder(self.options.speaker_encoder), self.config.diarizer)

    def transcribe(self, wave, voiceprints, count=SpeakerCount(), state=None) -> list[Turn]:
        frames, centroids = self.diarizer.diarize(wave, speech_regions(wave), count)
        with seconds_bar(wave, self.options.progress) as advance:
            segments = self.asr.transcribe(wave, self.options.language, self.options.num_beams, progress=advance)
        words = [w for s in segments for w in s.words]
        clusters = [word_speaker(w, frames) for w in words]
        named = match_names(centroids, voiceprints, self.config.match_threshold)
        anonymous: dict[int, str] = {}
        for k in clusters:  # unnamed clusters become spk 0, spk 1, … by first appearance
            if k not in named and k not in anonymous:
                anonymous[k] = ANONYMOUS.format(len(anonymous))
        speakers = [named.get(k) or anonymous[k] for k in clusters]
        return words_to_turns(words, speakers, self.config.turn_gap_s)
