"""The cascaded baseline: diarization → Whisper words (faster-whisper, long-form) → each word labelled
from the frames it was spoken in → turns → enrolled names.

The paper compares SpeakerLM with such cascades (its Fig. 1a). The join follows WhisperX: every ASR
word goes to the speaker active at its time, so speaker changes without a pause are handled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from speakerlm.diarize import FRAMES_PER_SECOND, Diarizer, DiarizerConfig, SpeakerCount
from speakerlm.engines.base import Engine, TranscribeOptions
from speakerlm.engines.progress import (
    RecordLog,
    read_records,
    seconds_bar,
)
from speakerlm.errors import UserError
from speakerlm.pretrained.fast_whisper import FastWhisper, Segment, Word
from speakerlm.turns import ANONYMOUS, Turn
from speakerlm.vad import speech_regions
from speakerlm.voiceprints import MATCH_THRESHOLD, match_names


@dataclass(frozen=True)
class CascadeConfig:
    diarizer: DiarizerConfig = field(default_factory=DiarizerConfig)
    match_threshold: float = MATCH_THRESHOLD  # cosine(cluster centroid, voiceprint) needed to name a cluster
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


def word_clusters(words: list[Word], frames: np.ndarray, config: CascadeConfig) -> list[int]:
    """Each word's cluster: from its own frames, then (speaker_unit "sentence") smoothed within sentences."""
    clusters = [word_speaker(w, frames) for w in words]
    if config.speaker_unit == "sentence":
        clusters = sentence_speakers(words, clusters, config.min_run_s, config.sentence_pause_s)
    return clusters


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
    resumable = True

    def __init__(self, options: TranscribeOptions, config: CascadeConfig = CascadeConfig()):
        from speakerlm.pretrained.speaker_encoder import load_speaker_encoder

        self.options, self.config = self.resolve(options), config or CascadeConfig()
        self.asr = FastWhisper(self.options.whisper, language=self.options.language)
        self.diarizer = Diarizer(load_speaker_encoder(self.options.speaker_encoder), self.config.diarizer)

    def transcribe(self, wave, voiceprints, count=SpeakerCount(), state=None) -> list[Turn]:
        """`state`: a file where the diarization and each decoded segment are recorded as they finish;
        a run that finds some there resumes after them."""
        from concurrent.futures import ThreadPoolExecutor

        records = read_records(state)
        recorded = next((r["diarization"] for r in records if "diarization" in r), None)
        segments = [_segment_from(r["segment"]) for r in records if "segment" in r]
        with RecordLog(state) as log, ThreadPoolExecutor(1) as pool:
            # diarization runs on one core while Whisper decodes on the other: neither gains much from
            # a second thread (measured: a 65.6 s clip 7.8 s one after the other, 6.4-7.0 s side by side)
            diarized = None if recorded is not None else pool.submit(self._diarize, wave, count, log)
            with seconds_bar(wave, self.options.progress) as advance:
                def finished(segment: Segment) -> None:
                    log.append({"segment": asdict(segment)})
                    advance(segment.end)

                start = segments[-1].end if segments else 0.0
                advance(start)
                segments += self.asr.transcribe(wave, self.options.language, self.options.num_beams, start=start,
                                                prompt=" ".join(s.text for s in segments[-3:]), on_segment=finished)
            frames, centroids = diarized.result() if diarized is not None else _diarization_from(recorded)
        words = [w for s in segments for w in s.words]
        clusters = word_clusters(words, frames, self.config)
        named = match_names(centroids, voiceprints, self.config.match_threshold)
        anonymous: dict[int, str] = {}
        for k in clusters:  # unnamed clusters become spk 0, spk 1, … by first appearance
            if k not in named and k not in anonymous:
                anonymous[k] = ANONYMOUS.format(len(anonymous))
        speakers = [named.get(k) or anonymous[k] for k in clusters]
        return words_to_turns(words, speakers, self.config.turn_gap_s)

    def _diarize(self, wave: np.ndarray, count: SpeakerCount, log: RecordLog) -> tuple[np.ndarray, np.ndarray]:
        """The diarization on one thread (the other core decodes), recorded in the state file."""
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # CAM++'s ONNX session follows torch's setting
        try:
            frames, centroids = self.diarizer.diarize(wave, speech_regions(wave), count)
        finally:
            torch.set_num_threads(threads)
        log.append({"diarization": _diarization_record(frames, centroids)})
        return frames, centroids


def _diarization_record(frames: np.ndarray, centroids: np.ndarray) -> dict:
    """Frame labels run-length encoded ([label, count] pairs): an hour is ~1,000 runs, not 360,000 labels."""
    edges = np.flatnonzero(np.diff(frames)) + 1
    starts = np.concatenate([[0], edges])
    lengths = np.diff(np.concatenate([starts, [frames.size]]))
    return {"runs": [[int(frames[a]), int(n)] for a, n in zip(starts, lengths)] if frames.size else [],
            "centroids": np.asarray(centroids, np.float32).tolist()}


def _diarization_from(record: dict) -> tuple[np.ndarray, np.ndarray]:
    runs = record["runs"]
    frames = np.repeat([r[0] for r in runs], [r[1] for r in runs]).astype(int) if runs else np.zeros(0, int)
    return frames, np.asarray(record["centroids"], np.float32)


def _segment_from(record: dict) -> Segment:
    return Segment(record["start"], record["end"], record["text"], tuple(Word(**w) for w in record["words"]))
