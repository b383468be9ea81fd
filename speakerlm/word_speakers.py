"""Speakers for timed words: each word takes the diarization label of the frames it was spoken in
(WhisperX's join), optionally smoothed within sentences, and runs of one speaker's words become turns.
The cascade joins faster-whisper's words this way, and the SpeakerLM engine the words of its turns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speakerlm.diarize import FRAMES_PER_SECOND
from speakerlm.errors import UserError
from speakerlm.pretrained.fast_whisper import Word
from speakerlm.turns import Turn


@dataclass(frozen=True)
class WordJoinConfig:
    turn_gap_s: float = 2.0  # a longer pause starts a new turn even for the same speaker
    # "word": every word takes the speaker of its own frames (WhisperX's join); "sentence": within a
    # sentence (Whisper's punctuation, or a pause over `sentence_pause_s`) another speaker's run of words
    # shorter than `min_run_s` takes the sentence's main speaker: speaker changes fall at sentence
    # ends, while 1.5 s embedding windows smear each change over its neighbouring words
    speaker_unit: str = "sentence"
    min_run_s: float = 1.0
    sentence_pause_s: float = 1.0

    def __post_init__(self):
        if self.speaker_unit not in ("word", "sentence"):
            raise UserError(f"speaker_unit {self.speaker_unit!r}: choose word or sentence")


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


def sentence_spans(words: list[Word], pause_s: float) -> list[tuple[int, int]]:
    """[a, b) word index ranges of sentences: a word ending in . ? or ! closes one, and so does a pause."""
    spans, a = [], 0
    for i, w in enumerate(words):
        if w.text.rstrip("\"')").endswith((".", "?", "!")) or i + 1 == len(words) or words[i + 1].start - w.end > pause_s:
            spans.append((a, i + 1))
            a = i + 1
    return spans


def sentence_speakers(words: list[Word], labels: list[int], min_run_s: float, pause_s: float) -> list[int]:
    """Word labels with, inside each sentence, other speakers' runs shorter than `min_run_s` given to
    the sentence's main speaker (most speaking time)."""
    out = list(labels)
    for a, b in sentence_spans(words, pause_s):
        time: dict[int, float] = {}
        for i in range(a, b):
            time[labels[i]] = time.get(labels[i], 0.0) + words[i].end - words[i].start
        main = max(time, key=time.get)
        i = a
        while i < b:
            j = i
            while j < b and labels[j] == labels[i]:
                j += 1
            if labels[i] != main and words[j - 1].end - words[i].start < min_run_s:
                out[i:j] = [main] * (j - i)
            i = j
    return out


def word_clusters(words: list[Word], frames: np.ndarray, config: WordJoinConfig) -> list[int]:
    """Each word's cluster: from its own frames, then (speaker_unit "sentence") smoothed within sentences."""
    clusters = [word_speaker(w, frames) for w in words]
    if config.speaker_unit == "sentence":
        clusters = sentence_speakers(words, clusters, config.min_run_s, config.sentence_pause_s)
    return clusters


def words_to_turns(words: list[Word], speakers: list[str], gap_s: float) -> list[Turn]:
    """Consecutive words of one speaker, at most `gap_s` apart, as one turn spanning them all (the
    model's turns may step back in time where they overlap, so a joined word may start earlier)."""
    turns: list[Turn] = []
    for word, speaker in zip(words, speakers):
        last = turns[-1] if turns else None
        if last and last.speaker == speaker and word.start - last.end <= gap_s:
            turns[-1] = Turn(speaker, f"{last.text} {word.text}", min(last.start, word.start), max(last.end, word.end))
        else:
            turns.append(Turn(speaker, word.text, word.start, word.end))
    return turns
