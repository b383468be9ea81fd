"""The cascaded baseline: VAD → windowed speaker embeddings → clustering → Whisper words → turns.

The paper compares SpeakerLM with such cascades (its Fig. 1a). Ours follows 3D-Speaker's recipe for
the diarization half and WhisperX's idea for the join (every ASR word goes to the speaker active at
its time), so speaker changes without a pause are handled: speaker identity is decided per embedding
window inside speech regions, not per VAD segment.

Clustering estimates the number of speakers with spectral clustering and the eigengap (as 3D-Speaker
and NeMo do), because a fixed distance threshold tuned on synthetic voices breaks on real recordings.
Written by hand (on numpy/scipy/scikit-learn) because no maintained package exposes this clustering
without its whole diarization stack. Agglomerative clustering with a threshold is kept for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from speakerlm.audio import SAMPLE_RATE
from speakerlm.labels import ANONYMOUS
from speakerlm.memory import return_freed_memory
from speakerlm.transcribe import Engine, Enrolled, TranscribeOptions
from speakerlm.turns import Turn
from speakerlm.vad import Region, group_regions, speech_regions
from speakerlm.whisper import ASR_WINDOW_SECONDS, Word, load_whisper, transcribe_words

FRAME_RATE = 100  # speaker-activity frames per second (10 ms)


@dataclass(frozen=True)
class CascadeConfig:
    window_s: float = 1.5  # speaker-embedding window
    hop_s: float = 0.5  # embedding hop: finer hops follow quicker speaker changes
    clustering: str = "spectral"  # "spectral" (eigengap estimate) or "ahc" (cosine threshold)
    ahc_threshold: float = 0.5  # cosine *distance* at which AHC stops merging
    prune_fraction: float = 0.2  # spectral: keep this fraction of each row's strongest affinities
    min_pruned: int = 6  # ...but never fewer neighbours than this
    merge_cosine: float = 0.8  # merge clusters whose centroids are this similar (over-split repair)
    max_speakers: int = 8  # default upper bound on the estimated speaker count
    match_threshold: float = 0.45  # cosine(cluster centroid, voiceprint) needed to give a cluster a name
    turn_gap_s: float = 2.0  # a longer pause starts a new turn even for the same speaker
    max_cluster_windows: int = 2000  # cluster at most this many embedding windows (subsampled evenly)


# ---------------------------------------------------------------- clustering (pure functions)

def _cosine(embs: np.ndarray) -> np.ndarray:
    unit = embs / np.linalg.norm(embs, axis=1, keepdims=True).clip(1e-9)
    return unit @ unit.T


def spectral_clusters(embs: np.ndarray, num_speakers: Optional[int] = None, min_speakers: int = 1,
                      max_speakers: int = 8, prune_fraction: float = 0.2, min_pruned: int = 6,
                      seed: int = 0) -> np.ndarray:
    """Cluster labels (N,) for embeddings (N, D); the count comes from the largest eigengap of the
    graph Laplacian of a row-pruned cosine affinity unless `num_speakers` is given."""
    from scipy.linalg import eigh
    from sklearn.cluster import KMeans

    n = len(embs)
    if n <= 2 or num_speakers == 1:
        return np.zeros(n, dtype=int)
    affinity = _cosine(embs)
    keep = min(n, max(min_pruned, int(round(prune_fraction * n))))
    weakest = np.argsort(affinity, axis=1)[:, : n - keep]
    np.put_along_axis(affinity, weakest, 0.0, axis=1)  # sparsify: only each row's strongest links count
    affinity = 0.5 * (affinity + affinity.T)
    np.fill_diagonal(affinity, 0.0)
    affinity = affinity.clip(min=0.0)
    laplacian = np.diag(affinity.sum(axis=1)) - affinity
    eigenvalues, eigenvectors = eigh(laplacian)
    if num_speakers is None:
        hi = min(max_speakers, n - 1)
        gaps = np.diff(eigenvalues[: hi + 1])  # gaps[k-1] = λ_k − λ_{k-1}: large after k clusters
        k = int(np.argmax(gaps[min_speakers - 1 : hi])) + min_speakers
    else:
        k = min(num_speakers, n)
    spectral_embedding = eigenvectors[:, :k]
    # shape: (N, k)
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(spectral_embedding)


def ahc_clusters(embs: np.ndarray, num_speakers: Optional[int] = None, threshold: float = 0.5) -> np.ndarray:
    from sklearn.cluster import AgglomerativeClustering

    if len(embs) < 2:
        return np.zeros(len(embs), dtype=int)
    ahc = AgglomerativeClustering(n_clusters=num_speakers, metric="cosine", linkage="average",
                                  distance_threshold=None if num_speakers else threshold)
    return ahc.fit_predict(embs)


def merge_similar(embs: np.ndarray, labels: np.ndarray, merge_cosine: float, min_clusters: int = 1) -> np.ndarray:
    """Merge the two closest clusters while their centroids' cosine exceeds `merge_cosine`."""
    labels = labels.copy()
    while len(np.unique(labels)) > min_clusters:
        ids = np.unique(labels)
        centroids = np.stack([embs[labels == i].mean(axis=0) for i in ids])
        sim = _cosine(centroids)
        np.fill_diagonal(sim, -1.0)
        a, b = np.unravel_index(np.argmax(sim), sim.shape)
        if sim[a, b] < merge_cosine:
            break
        labels[labels == ids[b]] = ids[a]
    return np.unique(labels, return_inverse=True)[1]


def match_names(centroids: np.ndarray, voiceprints: dict[str, np.ndarray], threshold: float) -> dict[int, str]:
    """Cluster index → enrolled name, by Hungarian assignment on cosine; pairs below `threshold` stay
    unnamed (an unenrolled speaker, or a distractor that never spoke)."""
    from scipy.optimize import linear_sum_assignment

    if not voiceprints or len(centroids) == 0:
        return {}
    names = list(voiceprints)
    prints = np.stack([voiceprints[n] for n in names])
    sim = (centroids / np.linalg.norm(centroids, axis=1, keepdims=True)) @ (prints / np.linalg.norm(prints, axis=1, keepdims=True)).T
    rows, cols = linear_sum_assignment(-sim)
    return {int(r): names[c] for r, c in zip(rows, cols) if sim[r, c] >= threshold}


# ---------------------------------------------------------------- frames, words, turns

def frame_labels(times: np.ndarray, labels: np.ndarray, regions: list[Region], n_frames: int) -> np.ndarray:
    """Per-10 ms speaker label (-1 = no speech): each speech frame takes the majority label of the
    embedding windows that cover it, or of the nearest window when none does."""
    n_labels = int(labels.max()) + 1 if len(labels) else 0
    votes = np.zeros((n_frames, max(n_labels, 1)))
    for (start, end), label in zip(times, labels):
        votes[int(start * FRAME_RATE) : int(end * FRAME_RATE), label] += 1
    out = np.full(n_frames, -1, dtype=int)
    centres = times.mean(axis=1) if len(times) else np.zeros(0)
    for r in regions:
        a, b = int(r.start * FRAME_RATE), min(n_frames, int(np.ceil(r.end * FRAME_RATE)))
        for f in range(a, b):
            if votes[f].any():
                out[f] = int(np.argmax(votes[f]))
            elif len(centres):
                out[f] = int(labels[np.argmin(np.abs(centres - f / FRAME_RATE))])
    return out


def word_speaker(word: Word, frames: np.ndarray) -> int:
    """The label covering most of the word's span; the nearest labelled frame if none does."""
    a, b = int(word.start * FRAME_RATE), max(int(word.start * FRAME_RATE) + 1, int(word.end * FRAME_RATE))
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


class Diarizer:
    """Who spoke when, without names: VAD regions → CAM++/GE2E windows → clustering → per-frame labels
    and one centroid per speaker. Used by the cascade, and by the SpeakerLM engine to discover the
    unenrolled speakers of a whole recording before its windows are transcribed."""

    def __init__(self, options: TranscribeOptions, config: CascadeConfig = CascadeConfig(), encoder=None):
        from speakerlm.speaker_encoder import load_speaker_encoder

        self.options, self.config = options, config
        self.encoder = encoder or load_speaker_encoder(options.speaker_encoder)

    def diarize(self, wave: np.ndarray, regions: list[Region]) -> tuple[np.ndarray, np.ndarray]:
        """(per-frame labels (n_frames,), cluster centroids (K, D))."""
        cfg, opt = self.config, self.options
        embs, times = [], []
        for r in regions:
            piece = wave[int(r.start * SAMPLE_RATE) : int(r.end * SAMPLE_RATE)]
            e, t = self.encoder.embed_windows(piece, cfg.window_s, cfg.hop_s)
            return_freed_memory()
            embs.append(e)
            times.append(t + r.start)
        n_frames = int(np.ceil(wave.size / SAMPLE_RATE * FRAME_RATE))
        if not embs:
            return np.full(n_frames, -1), np.zeros((0, self.encoder.dim))
        embs, times = np.concatenate(embs), np.concatenate(times)
        # shape: embs (N windows, D), times (N, 2)
        max_spk = opt.max_speakers or cfg.max_speakers
        # an hour gives ~7000 windows: cluster an even subsample so memory and time stay bounded (the
        # affinity matrix is quadratic, its eigendecomposition cubic), then give every window the
        # nearest centroid
        sample = np.linspace(0, len(embs) - 1, min(len(embs), cfg.max_cluster_windows)).round().astype(int)
        if cfg.clustering == "ahc":
            labels = ahc_clusters(embs[sample], opt.num_speakers, cfg.ahc_threshold)
        else:
            labels = spectral_clusters(embs[sample], opt.num_speakers, opt.min_speakers or 1, max_spk,
                                       cfg.prune_fraction, cfg.min_pruned)
        if opt.num_speakers is None:
            labels = merge_similar(embs[sample], labels, cfg.merge_cosine, opt.min_speakers or 1)
        centroids = np.stack([embs[sample][labels == k].mean(axis=0) for k in range(labels.max() + 1)])
        if len(sample) < len(embs):
            unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-9)
            labels = np.argmax(unit(embs) @ unit(centroids).T, axis=1)
        return frame_labels(times, labels, regions, n_frames), centroids


class Cascade(Engine):
    """VAD → CAM++/GE2E windows → spectral clustering → Whisper words → turns (→ enrolled names)."""

    def __init__(self, options: TranscribeOptions, config: CascadeConfig = CascadeConfig()):
        self.options, self.config = options, config
        self.model, self.processor = load_whisper(options.whisper)
        self.diarizer = Diarizer(options, config)

    def transcribe(self, wave: np.ndarray, enrolled: Enrolled, state=None) -> list[Turn]:
        regions = speech_regions(wave)
        frames, centroids = self.diarizer.diarize(wave, regions)
        words: list[Word] = []
        for w in group_regions(regions, ASR_WINDOW_SECONDS):
            piece = wave[int(w.start * SAMPLE_RATE) : int(w.end * SAMPLE_RATE)]
            words += transcribe_words(self.model, self.processor, piece, self.options.language, offset=w.start)
            return_freed_memory()  # memory flat in the recording's length (memory.py)
        clusters = [word_speaker(w, frames) for w in words]
        named = match_names(centroids, enrolled.voiceprints, self.config.match_threshold)
        anonymous: dict[int, str] = {}
        for k in clusters:  # unnamed clusters become spk 0, spk 1, … by first appearance
            if k not in named and k not in anonymous:
                anonymous[k] = ANONYMOUS.format(len(anonymous))
        speakers = [named.get(k) or anonymous[k] for k in clusters]
        return words_to_turns(words, speakers, self.config.turn_gap_s)
