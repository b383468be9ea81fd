"""Voiceprints: who a voice is. Enrolment audio → one embedding per person; embeddings → names.

A voiceprint is the L2-normalised mean embedding of ≤ 10 s clips of one speaker's audio (paper §5.1:
2–10 s clips, averaged), made by the frozen speaker encoder. Engines compare voiceprints with what
they hear: `match_names` gives discovered voices enrolled names, `retrieve` keeps the few enrolled
voices that a stretch of audio resembles, so thousands of enrolled people keep the prompt short.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from speakerlm.audio import SAMPLE_RATE, Pathlike, duration, load_audio
from speakerlm.errors import UserError

Voiceprints = dict[str, np.ndarray]  # name → voiceprint (speaker_dim,)
MATCH_THRESHOLD = 0.45  # cosine(voice, voiceprint) needed to give a voice that name
CLIP_SECONDS = 10  # voiceprints average embeddings of clips of at most this length
MIN_ENROL_SECONDS = 1.0  # shorter enrolment audio says too little about a voice
MIN_ENROL_SPEECH_SECONDS = 0.5  # speech the VAD must find in it: a tone, music or silence names nobody


def mean_voiceprint(waves: list[np.ndarray], encoder_name: str = "campp",
                    embed: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> np.ndarray:
    """One speaker's voiceprint from their audio; pieces shorter than 1 s are left out when others
    exist. `embed` replaces the encoder's own (the SpeakerLM engine passes a memoised one)."""
    from speakerlm.pretrained.speaker_encoder import load_speaker_encoder

    embed = embed or load_speaker_encoder(encoder_name).embed
    clip = CLIP_SECONDS * SAMPLE_RATE
    pieces = [w[i : i + clip] for w in waves for i in range(0, w.size, clip)]
    pieces = [p for p in pieces if p.size >= SAMPLE_RATE] or pieces
    mean = np.mean([embed(p) for p in pieces], axis=0)
    return (mean / np.linalg.norm(mean)).astype(np.float32)


def enroll_voiceprint(paths: list[Pathlike], encoder_name: str = "campp") -> np.ndarray:
    """Voiceprint from enrolment files, refusing audio too short to say anything about the voice or
    holding no speech."""
    from speakerlm.vad import speech_regions

    waves = []
    for path in paths:
        wave = load_audio(path)
        if duration(wave) < MIN_ENROL_SECONDS:
            raise UserError(f"{path}: enrolment audio is {duration(wave):.1f} s; give at least 1 s (2–10 s is best)")
        speech = sum(r.duration for r in speech_regions(wave))
        if speech < MIN_ENROL_SPEECH_SECONDS:
            raise UserError(f"{path}: no speech found in the enrolment audio ({speech:.1f} s); give a recording "
                            f"of the person talking")
        waves.append(wave)
    return mean_voiceprint(waves, encoder_name)


@lru_cache(maxsize=None)
def bundled_cohort(encoder_name: str = "campp") -> Optional[np.ndarray]:
    """The voiceprints of voices nobody enrols, (M, D), that `s_norm` normalises against: the
    simulator's test-split voices (`scripts/build_cohort.py`); None for an encoder without one."""
    path = Path(__file__).parent / "bundled" / f"cohort-{encoder_name}.npy"
    return unit_rows(np.load(path).astype(np.float32)) if path.exists() else None


def s_norm(cos: np.ndarray, voices: np.ndarray, prints: np.ndarray, cohort: np.ndarray) -> np.ndarray:
    """The cosines (V, P) of unit voices (V, D) and unit voiceprints (P, D) normalised as speaker
    verification does (S-norm): each in standard deviations above what the voice scores against the
    `cohort` (M, D), averaged with the same for the voiceprint. A voiceprint that resembles every
    degraded recording (a hub) then no longer outbids the person's own: with 100 distractors enrolled,
    it took `ood`'s Over-Regist saWER from 59.17 to 51.45 (docs/results.md)."""
    by_voice, by_print = voices @ cohort.T, prints @ cohort.T
    # shapes: (V, M), (P, M)
    z_voice = (cos - by_voice.mean(axis=1, keepdims=True)) / by_voice.std(axis=1, keepdims=True).clip(1e-6)
    z_print = (cos - by_print.mean(axis=1)[None]) / by_print.std(axis=1)[None].clip(1e-6)
    return 0.5 * (z_voice + z_print)


def match_names(centroids: np.ndarray, voiceprints: Voiceprints, threshold: float = MATCH_THRESHOLD,
                cohort: Optional[np.ndarray] = None) -> dict[int, str]:
    """Voice index → enrolled name, by Hungarian assignment on cosine, or on `s_norm` scores when a
    `cohort` is given; pairs below `threshold` cosine stay unnamed (an unenrolled speaker, or an
    enrolled one who never spoke)."""
    from scipy.optimize import linear_sum_assignment

    if not voiceprints or len(centroids) == 0:
        return {}
    names = list(voiceprints)
    voices, prints = unit_rows(np.asarray(centroids)), unit_rows(np.stack([voiceprints[n] for n in names]))
    cos = voices @ prints.T
    scores = cos if cohort is None else s_norm(cos, voices, prints, cohort)
    rows, cols = linear_sum_assignment(-scores)
    return {int(r): names[c] for r, c in zip(rows, cols) if cos[r, c] >= threshold}


def retrieve(voiceprints: Voiceprints, stream: np.ndarray, k: int) -> list[str]:
    """The ≤ k names whose voiceprint best matches some moment of a speaker stream (frames, D) (max
    cosine), in registration order."""
    if len(voiceprints) <= k:
        return list(voiceprints)
    names = list(voiceprints)
    best = (unit_rows(np.stack([voiceprints[n] for n in names]).astype(np.float32)) @ unit_rows(stream).T).max(axis=1)
    keep = set(np.argsort(-best, kind="stable")[:k].tolist())
    return [n for i, n in enumerate(names) if i in keep]


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (a zero row stays zero): cosines become dot products."""
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-9)
