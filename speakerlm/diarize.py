"""Who spoke when, without names: speech regions → speaker-embedding windows → clustering → a speaker
label per 10 ms frame and one centroid per speaker.

The cascade labels each recognised word from these frames; the SpeakerLM engine uses them to discover
a recording's voices before its windows are transcribed, and to time the model's turns. The recipe is
3D-Speaker's: CAM++ windows of 1.5 s every 0.5 s inside speech, spectral clustering on a row-pruned
cosine affinity with the speaker count from the largest eigengap (as 3D-Speaker and NeMo do: a fixed
distance threshold tuned on synthetic voices breaks on real recordings). Frames are then labelled from
shorter windows (0.75 s every 0.25 s) by their cosine to each cluster's centroid, as multi-scale
diarizers do: long windows for reliable clusters, short ones for where a speaker changes. Written by hand on
numpy/scipy/scikit-learn because no maintained package exposes this clustering without its whole
diarization stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from speakerlm.audio import SAMPLE_RATE
from speakerlm.errors import UserError
from speakerlm.memory import return_freed_memory
from speakerlm.vad import Region
from speakerlm.voiceprints import unit_rows

FRAMES_PER_SECOND = 100  # diarization labels: one per 10 ms


@dataclass(frozen=True)
class SpeakerCount:
    """What the user knows of the number of speakers (each None = unknown)."""

    num: Optional[int] = None  # exactly this many (skips estimation)
    min: Optional[int] = None  # at least this many
    max: Optional[int] = None  # at most this many

    def __post_init__(self):
        for flag, value in (("--num-speakers", self.num), ("--min-speakers", self.min), ("--max-speakers", self.max)):
            if value is not None and value < 1:
                raise UserError(f"{flag} {value}: give a count of at least 1")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise UserError(f"--min-speakers {self.min} is above --max-speakers {self.max}")


@dataclass(frozen=True)
class DiarizerConfig:
    window_s: float = 1.5  # speaker-embedding window for clustering
    hop_s: float = 0.5  # embedding hop: finer hops follow quicker speaker changes
    # frames are labelled from shorter windows scored against the cluster centroids: 1.5 s windows
    # give reliable clusters, but each smears a speaker change over its whole length; 0 = label frames
    # by the clustered windows themselves
    label_window_s: float = 0.75
    label_hop_s: float = 0.25
    prune_fraction: float = 0.2  # keep this fraction of each affinity row's strongest links
    min_pruned: int = 6  # ...but never fewer neighbours than this
    merge_cosine: float = 0.8  # merge clusters whose centroids are this similar (over-split repair)
    max_speakers: int = 8  # upper bound on the estimated speaker count when the user gives none
    max_cluster_windows: int = 2000  # cluster at most this many windows (an even subsample)


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


def frame_labels(times: np.ndarray, scores: np.ndarray, regions: list[Region], n_frames: int) -> np.ndarray:
    """Per-frame speaker label (-1 = no speech). `scores` (N windows, K speakers): how much each window
    speaks for each speaker (its cosine to each centroid, or one-hot cluster labels). Each speech frame
    takes the speaker with the highest summed score over the windows that cover it, or the best speaker
    of the nearest window when none does."""
    scores = np.asarray(scores, dtype=float).reshape(len(times), -1)
    votes = np.zeros((n_frames, scores.shape[1]))
    covered = np.zeros(n_frames, dtype=bool)
    for (start, end), row in zip(times, scores):
        a, b = int(start * FRAMES_PER_SECOND), int(end * FRAMES_PER_SECOND)
        votes[a:b] += row
        covered[a:b] = True
    out = np.full(n_frames, -1, dtype=int)
    centres = times.mean(axis=1) if len(times) else np.zeros(0)
    for r in regions:
        a, b = int(r.start * FRAMES_PER_SECOND), min(n_frames, int(np.ceil(r.end * FRAMES_PER_SECOND)))
        for f in range(a, b):
            if covered[f]:
                out[f] = int(np.argmax(votes[f]))
            elif len(centres):
                out[f] = int(np.argmax(scores[np.argmin(np.abs(centres - f / FRAMES_PER_SECOND))]))
    return out


class Diarizer:
    def __init__(self, encoder, config: DiarizerConfig = DiarizerConfig()):
        self.encoder, self.config = encoder, config

    def diarize(self, wave: np.ndarray, regions: list[Region], count: SpeakerCount = SpeakerCount()
                ) -> tuple[np.ndarray, np.ndarray]:
        """(per-frame labels (n_frames,), cluster centroids (K, D))."""
        cfg = self.config
        embs, times = self.embed(wave, regions, cfg.window_s, cfg.hop_s)
        n_frames = int(np.ceil(wave.size / SAMPLE_RATE * FRAMES_PER_SECOND))
        if not len(embs):
            return np.full(n_frames, -1), np.zeros((0, self.encoder.dim))
        labels, centroids = self.cluster(embs, count)
        if cfg.label_window_s > 0:  # short windows, scored by their cosine to each centroid
            embs, times = self.embed(wave, regions, cfg.label_window_s, cfg.label_hop_s)
            scores = unit_rows(embs) @ unit_rows(centroids).T
        else:
            scores = np.eye(len(centroids))[labels]
        return frame_labels(times, scores, regions, n_frames), centroids

    def embed(self, wave: np.ndarray, regions: list[Region], window_s: float, hop_s: float
              ) -> tuple[np.ndarray, np.ndarray]:
        """Speaker-embedding windows inside speech: (N, D) embeddings and their (N, 2) times in seconds."""
        embs, times = [], []
        for r in regions:
            piece = wave[int(r.start * SAMPLE_RATE) : int(r.end * SAMPLE_RATE)]
            e, t = self.encoder.embed_windows(piece, window_s, hop_s)
            return_freed_memory()
            embs.append(e)
            times.append(t + r.start)
        if not embs:
            return np.zeros((0, self.encoder.dim), np.float32), np.zeros((0, 2))
        return np.concatenate(embs), np.concatenate(times)

    def cluster(self, embs: np.ndarray, count: SpeakerCount = SpeakerCount()) -> tuple[np.ndarray, np.ndarray]:
        """Embedding windows (N ≥ 1, D) → (a cluster label per window (N,), cluster centroids (K, D))."""
        cfg = self.config
        # an hour gives ~7000 windows: cluster an even subsample so memory and time stay bounded (the
        # affinity matrix is quadratic, its eigendecomposition cubic), then give every window the
        # nearest centroid
        sample = np.linspace(0, len(embs) - 1, min(len(embs), cfg.max_cluster_windows)).round().astype(int)
        labels = spectral_clusters(embs[sample], count.num, count.min or 1, count.max or cfg.max_speakers,
                                   cfg.prune_fraction, cfg.min_pruned)
        if count.num is None:
            labels = merge_similar(embs[sample], labels, cfg.merge_cosine, count.min or 1)
        centroids = np.stack([embs[sample][labels == k].mean(axis=0) for k in range(labels.max() + 1)])
        if len(sample) < len(embs):
            labels = np.argmax(unit_rows(embs) @ unit_rows(centroids).T, axis=1)
        return labels, centroids


def _cosine(embs: np.ndarray) -> np.ndarray:
    unit = unit_rows(embs)
    return unit @ unit.T
