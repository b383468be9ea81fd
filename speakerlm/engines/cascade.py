"""The cascaded baseline: diarization → Whisper words (faster-whisper, long-form) → each word labelled
from the frames it was spoken in → turns → enrolled names.

The paper compares SpeakerLM with such cascades (its Fig. 1a). The join follows WhisperX: every ASR
word goes to the speaker active at its time, so speaker changes without a pause are handled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from speakerlm.diarize import Diarizer, DiarizerConfig, Enrolled, SpeakerCount
from speakerlm.engines.base import Engine, TranscribeOptions
from speakerlm.engines.progress import (
    RecordLog,
    read_records,
    seconds_bar,
)
from speakerlm.pretrained.fast_whisper import FastWhisper, Segment, Word, default_threads
from speakerlm.turns import ANONYMOUS, Turn
from speakerlm.vad import speech_regions
from speakerlm.voiceprints import MATCH_THRESHOLD, Voiceprints, bundled_cohort, match_names
from speakerlm.word_speakers import WordJoinConfig, word_clusters, words_to_turns


@dataclass(frozen=True)
class CascadeConfig(WordJoinConfig):
    diarizer: DiarizerConfig = field(default_factory=DiarizerConfig)
    match_threshold: float = MATCH_THRESHOLD  # cosine(cluster centroid, voiceprint) needed to name a cluster
    # clusters are given names by scores normalised against a cohort of voices nobody enrols
    # (`voiceprints.s_norm`), not by raw cosine: Over-Regist on `ood`, N_ov = 100, saWER 59.17 -> 51.45
    normalise_scores: bool = True


class Cascade(Engine):
    Config = CascadeConfig
    resumable = True

    def __init__(self, options: TranscribeOptions, config: CascadeConfig = CascadeConfig()):
        from speakerlm.pretrained.speaker_encoder import load_speaker_encoder

        self.options, self.config = self.resolve(options), config or CascadeConfig()
        # the diarization takes one core while Whisper decodes: Whisper gets the others (measured on two
        # cores: a 45 s clip at RTF 0.064 with one decoding thread, 0.072 with two, which the
        # diarization's thread then shares)
        self.asr = FastWhisper(self.options.whisper, threads=max(1, default_threads() - 1),
                               language=self.options.language)
        self.diarizer = Diarizer(load_speaker_encoder(self.options.speaker_encoder), self.config.diarizer)
        self.cohort = bundled_cohort(self.options.speaker_encoder) if self.config.normalise_scores else None

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
            diarized = None if recorded is not None else pool.submit(self._diarize, wave, count, log, voiceprints)
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
        named = match_names(centroids, voiceprints, self.config.match_threshold, self.cohort)
        anonymous: dict[int, str] = {}
        for k in clusters:  # unnamed clusters become spk 0, spk 1, … by first appearance
            if k not in named and k not in anonymous:
                anonymous[k] = ANONYMOUS.format(len(anonymous))
        speakers = [named.get(k) or anonymous[k] for k in clusters]
        return words_to_turns(words, speakers, self.config.turn_gap_s)

    def _diarize(self, wave: np.ndarray, count: SpeakerCount, log: RecordLog, voiceprints: Voiceprints
                 ) -> tuple[np.ndarray, np.ndarray]:
        """The diarization on one thread (the other core decodes), recorded in the state file; enrolled
        voices it hears but did not count add clusters (`Diarizer.label`)."""
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # CAM++'s ONNX session follows torch's setting
        try:
            enrolled = Enrolled(voiceprints, self.config.match_threshold, self.cohort) if voiceprints else None
            frames, centroids = self.diarizer.diarize(wave, speech_regions(wave), count, enrolled=enrolled)
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
