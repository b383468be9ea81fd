"""Who spoke when, without names: speech regions → speaker-embedding windows → clustering → a speaker
label per 10 ms frame and one centroid per speaker.

The cascade labels each recognised word from these frames; the SpeakerLM engine uses them to discover
a recording's voices before its windows are transcribed, and to time the model's turns. The recipe is
3D-Speaker's and NeMo's, multi-scale: CAM++ embeds 0.75 s windows every 0.25 s inside speech, once;
their means over 1.5 s windows every 0.5 s are clustered (long windows for reliable clusters), and
each frame is labelled from the short windows by their cosine to each cluster's centroid (short ones
for where a speaker changes). Clustering is spectral, on a row-pruned cosine affinity with the speaker
count from the largest eigengap (a fixed distance threshold tuned on synthetic voices breaks on real
recordings). How many links each row keeps is chosen per recording as NME-SC does: a fraction that
suits a 40 s clip of 3 speakers joins the speakers of a 10-minute meeting of 8 into 2. Clusters of a
few windows join their nearest neighbour, and clusters whose centroids are nearly the same voice are
merged. Written by hand on numpy/scipy because no maintained package exposes this clustering without
its whole diarization stack.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np

from speakerlm.audio import SAMPLE_RATE
from speakerlm.errors import UserError
from speakerlm.memory import return_freed_memory
from speakerlm.pretrained.speaker_encoder import CAMPlusPlus, window_starts
from speakerlm.stages import timed
from speakerlm.vad import Region
from speakerlm.voiceprints import Voiceprints, match_names, unit_rows

FRAMES_PER_SECOND = 100  # diarization labels: one per 10 ms


class Enrolled(NamedTuple):
    """What the diarizer is told of the enrolled people (`heard_enrolled`)."""

    voiceprints: Voiceprints  # by name
    threshold: float  # the cosine at which a cluster takes a name
    cohort: Optional[np.ndarray] = None  # voices nobody enrols, that names are scored against (`voiceprints.s_norm`)


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
    window_s: float = 1.5  # clustering window
    hop_s: float = 0.5  # clustering hop: finer hops follow quicker speaker changes
    # frames are labelled from shorter windows scored against the cluster centroids: 1.5 s windows
    # give reliable clusters, but each smears a speaker change over its whole length; 0 = label frames
    # by the clustered windows themselves
    label_window_s: float = 0.75
    label_hop_s: float = 0.25
    # clustering windows pooled from the short ones (one CAM++ pass) rather than embedded on their own:
    # half the CAM++ work, and measured as accurate (docs/results.md)
    pool_windows: bool = True
    # the short windows pooled from one pass of CAM++'s trunk over each speech region (as the model's
    # frame stream is made) instead of each window embedded on its own: a third of the work, but each
    # window then hears its region's context (CAM++'s context-aware masking pools over its whole input)
    shared_trunk: bool = False
    clustering: str = "spectral"  # "spectral" (count by eigengap) or "ahc" (count by a distance threshold)
    # spectral: keep this fraction of each affinity row's strongest links; 0 = chosen per recording
    # (`auto_pruned`), which counts 6-12 voices over 10 minutes where 0.2 finds 2-4
    prune_fraction: float = 0.0
    min_pruned: int = 6  # ...but never fewer neighbours than this
    # over-split repair: merge clusters whose centroids are this similar, unless their windows are
    # reliably apart (`separation`). Measured: one real reader split in two, cosine 0.88-0.95 and
    # t 10-23; two held-out voices 200 cents apart over 10 minutes, cosine up to 0.92 but t 26-63
    merge_cosine: float = 0.87
    merge_max_separation: float = 25.0
    min_cluster_windows: int = 5  # smaller clusters (under ~3.5 s of speech; ≤ a tenth of the windows) join the nearest
    ahc_threshold: float = 0.5  # ahc: cosine distance at which clusters stay apart
    max_speakers: int = 16  # upper bound on the estimated speaker count when the user gives none
    # an enrolled voice no cluster matched but that is heard in the recording asks for one cluster more
    # (`heard_enrolled`): the estimate misses close voices, which enrolment tells apart. Heard = the
    # best-matching enrolled voice of ≥ `enrolled_min_windows` windows (cosine ≥ `enrolled_min_cosine`),
    # by a median margin of ≥ `enrolled_margin` over the voice their cluster was named after (a
    # distractor that sounds like a present speaker has no margin); 0 windows = off
    enrolled_min_windows: int = 6
    enrolled_min_cosine: float = 0.5
    enrolled_margin: float = 0.05
    max_cluster_windows: int = 2000  # cluster at most this many windows (an even subsample)

    def __post_init__(self):
        if self.clustering not in ("spectral", "ahc"):
            raise UserError(f"clustering {self.clustering!r}: choose spectral or ahc")


def _pruned_laplacian(affinity: np.ndarray, keep: int) -> np.ndarray:
    """Graph Laplacian of a cosine affinity with only each row's `keep` strongest links, symmetrised."""
    a = affinity.copy()
    # in place and a block of rows at a time: an hour's 2,000 windows make 32 MB matrices, and the
    # straightforward expression held six of them at once
    for r in range(0, len(a), 256):
        rows = a[r : r + 256]
        weakest = np.argsort(rows, axis=1)[:, : len(a) - keep]
        np.put_along_axis(rows, weakest, 0.0, axis=1)  # sparsify: only each row's strongest links count
    a += a.T  # symmetrised (numpy buffers the overlapping transpose)
    a *= 0.5
    np.fill_diagonal(a, 0.0)
    np.maximum(a, 0.0, out=a)
    degrees = a.sum(axis=1)
    a *= -1.0
    a[np.diag_indices_from(a)] = degrees
    return a


def _eigengap_count(eigenvalues: np.ndarray, lo: int, hi: int) -> tuple[int, float]:
    """(the count after the largest eigengap in [lo, hi], that gap over the largest eigenvalue)."""
    gaps = np.diff(eigenvalues[: hi + 1])  # gaps[k-1] = λ_k − λ_{k-1}: large after k clusters
    k = int(np.argmax(gaps[lo - 1 : hi])) + lo
    return k, float(gaps[k - 1] / max(eigenvalues[-1], 1e-10))


def fixed_pruned(n: int, fraction: float, min_pruned: int) -> int:
    """Links per row to keep for a fixed fraction of the row, never fewer than `min_pruned`."""
    return min(n, max(min_pruned, int(round(fraction * n))))


def auto_pruned(affinity: np.ndarray, lo: int, hi: int, min_pruned: int = 6,
                fractions=np.linspace(0.01, 0.3, 30), max_rows: int = 800) -> int:
    """The number of links per row to keep, chosen per recording as NME-SC does (Park et al., 2020):
    among the prunings that leave the graph connected (and keep at least `min_pruned` links), the one
    that minimises links / normalised eigengap, so the pruning adapts to the recording's length and
    speaker count instead of a fraction tuned on short clips. The search runs on an even subsample of
    at most `max_rows` windows (one eigendecomposition per candidate)."""
    from scipy.linalg import eigh
    from scipy.sparse.csgraph import connected_components

    n = len(affinity)
    rows = np.linspace(0, n - 1, min(n, max_rows)).round().astype(int)
    sub, m = affinity[np.ix_(rows, rows)], len(rows)
    scale = n / m
    best, best_ratio = None, np.inf
    for keep in sorted({max(2, int(round(f * m))) for f in fractions}):
        if keep >= m or keep * scale < min_pruned:
            continue
        laplacian = _pruned_laplacian(sub, keep)
        if connected_components(laplacian != 0, directed=False)[0] > 1:
            continue
        _, gap = _eigengap_count(eigh(laplacian, eigvals_only=True), lo, min(hi, m - 1))
        if keep / max(gap, 1e-10) < best_ratio:
            best, best_ratio = keep / m, keep / max(gap, 1e-10)
    if best is None:  # no candidate qualified: fall back to the fixed pruning
        return fixed_pruned(n, 0.2, min_pruned)
    return max(2, min(n - 1, int(round(best * n))))


def spectral_clusters(embs: np.ndarray, num_speakers: Optional[int] = None, min_speakers: int = 1,
                      max_speakers: int = 8, prune_fraction: float = 0.2, min_pruned: int = 6,
                      seed: int = 0) -> np.ndarray:
    """Cluster labels (N,) for embeddings (N, D); the count comes from the largest eigengap of the
    graph Laplacian of a row-pruned cosine affinity unless `num_speakers` is given. `prune_fraction`
    0 chooses the pruning per recording (`auto_pruned`)."""
    from scipy.linalg import eigh

    n = len(embs)
    if n <= 2 or num_speakers == 1:
        return np.zeros(n, dtype=int)
    affinity = _cosine(embs)
    hi = min(max_speakers, n - 1)
    lo = min(min_speakers, hi)
    keep = fixed_pruned(n, prune_fraction, min_pruned) if prune_fraction > 0 else auto_pruned(affinity, lo, hi, min_pruned)
    eigenvalues, eigenvectors = eigh(_pruned_laplacian(affinity, keep), overwrite_a=True)
    k = _eigengap_count(eigenvalues, lo, hi)[0] if num_speakers is None else min(num_speakers, n)
    spectral_embedding = eigenvectors[:, :k]
    # shape: (N, k)
    return kmeans(spectral_embedding, k, seed=seed)


def kmeans(x: np.ndarray, k: int, restarts: int = 10, seed: int = 0) -> np.ndarray:
    """Labels (N,) in 0..k-1: the best of `restarts` k-means++ runs (scipy's kmeans2) by within-cluster
    sum of squares. scipy rather than scikit-learn: importing sklearn.cluster costs ~2 s of every run."""
    import warnings

    from scipy.cluster.vq import kmeans2

    rng = np.random.default_rng(seed)
    runs = []
    for _ in range(restarts):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a run that empties a cluster loses below
            centres, labels = kmeans2(x, k, minit="++", seed=rng)
        runs.append((-len(np.unique(labels)), float(((x - centres[labels]) ** 2).sum()), labels))
    best = min(runs, key=lambda r: r[:2])[2]  # all k clusters used first, then the lowest cost
    return np.unique(best, return_inverse=True)[1]


def ahc_clusters(embs: np.ndarray, threshold: float, num_speakers: Optional[int] = None,
                 min_speakers: int = 1, max_speakers: int = 8) -> np.ndarray:
    """Cluster labels (N,) by average-linkage agglomeration on cosine distance, cut where clusters are
    `threshold` apart (or at `num_speakers`, or at the nearest bound the count falls outside)."""
    from scipy.cluster.hierarchy import fcluster, linkage

    n = len(embs)
    if n <= 2 or num_speakers == 1:
        return np.zeros(n, dtype=int)
    tree = linkage(unit_rows(embs), method="average", metric="cosine")
    labels = fcluster(tree, t=threshold, criterion="distance")
    k = len(np.unique(labels))
    if num_speakers is not None or not min_speakers <= k <= max_speakers:
        k = num_speakers if num_speakers is not None else int(np.clip(k, min_speakers, max_speakers))
        labels = fcluster(tree, t=min(k, n), criterion="maxclust")
    return np.unique(labels, return_inverse=True)[1]


def separation(a: np.ndarray, b: np.ndarray) -> float:
    """Welch's t of two clusters' windows (Na, D), (Nb, D) along the axis joining their means: one voice
    split in two differs there by chance, two close voices heard for minutes differ reliably."""
    if min(len(a), len(b)) < 2:
        return 0.0
    axis = a.mean(axis=0) - b.mean(axis=0)
    axis /= max(float(np.linalg.norm(axis)), 1e-12)
    pa, pb = a @ axis, b @ axis
    return float(abs(pa.mean() - pb.mean()) / np.sqrt(pa.var(ddof=1) / len(pa) + pb.var(ddof=1) / len(pb) + 1e-12))


def merge_similar(embs: np.ndarray, labels: np.ndarray, merge_cosine: float, min_clusters: int = 1,
                  max_separation: float = np.inf) -> np.ndarray:
    """Merge the most similar pair of clusters while some pair's centroid cosine exceeds `merge_cosine`,
    passing over pairs whose windows are reliably apart (`separation` at least `max_separation`)."""
    labels = labels.copy()
    while len(np.unique(labels)) > min_clusters:
        ids = np.unique(labels)
        sim = _cosine(np.stack([embs[labels == i].mean(axis=0) for i in ids]))
        close = sorted((-sim[x, y], x, y) for x, y in zip(*np.triu_indices(len(ids), k=1)) if sim[x, y] >= merge_cosine)
        merge = next(((ids[x], ids[y]) for _, x, y in close
                      if separation(embs[labels == ids[x]], embs[labels == ids[y]]) < max_separation), None)
        if merge is None:
            break
        labels[labels == merge[1]] = merge[0]
    return np.unique(labels, return_inverse=True)[1]


def absorb_small(embs: np.ndarray, labels: np.ndarray, min_size: int) -> np.ndarray:
    """Clusters of fewer than `min_size` windows join the nearest larger cluster (by centroid cosine):
    a few seconds of speech are too little to be a speaker of their own."""
    sizes = np.bincount(labels)
    big = np.flatnonzero(sizes >= min_size)
    if len(big) == 0 or len(big) == len(sizes):
        return labels
    centroids = unit_rows(np.stack([embs[labels == k].mean(axis=0) for k in big]))
    out = labels.copy()
    small = ~np.isin(labels, big)
    out[small] = big[np.argmax(unit_rows(embs[small]) @ centroids.T, axis=1)]
    return np.unique(out, return_inverse=True)[1]


def pooled_windows(embs: np.ndarray, times: np.ndarray, regions: list[Region], window_s: float, hop_s: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Longer windows made of short ones: each `window_s` window (every `hop_s` inside each region, the
    last aligned to the region's end, where `embed_windows` places them) is the mean of the unit
    embeddings of the short windows inside it. One CAM++ pass then serves clustering and frame labels,
    measured as accurate as embedding the long windows again (docs/results.md)."""
    unit = unit_rows(embs)
    out_embs, out_times = [], []
    for r in regions:
        inside = np.flatnonzero((times[:, 0] >= r.start - 1e-6) & (times[:, 1] <= r.end + 1e-6))
        if not len(inside):
            continue
        samples = int(r.end * SAMPLE_RATE) - int(r.start * SAMPLE_RATE)  # the piece `Diarizer.embed` cuts
        long_enough = samples > int(window_s * SAMPLE_RATE)
        starts = r.start + np.array(window_starts(samples, window_s, hop_s) if long_enough else [0]) / SAMPLE_RATE
        t = times[inside]
        total = np.concatenate([np.zeros((1, unit.shape[1])), np.cumsum(unit[inside], axis=0)])
        # the region's short windows are in time order: those inside [s, s + window_s] are one index range
        a = np.searchsorted(t[:, 0], starts - 1e-6)
        b = np.searchsorted(t[:, 1], starts + window_s + 1e-6, side="right")
        b = np.maximum(b, a + 1).clip(max=len(t))
        a = np.minimum(a, b - 1)  # a window with no short one wholly inside takes the nearest
        out_embs.append((total[b] - total[a]) / (b - a)[:, None])
        out_times.append(np.stack([starts, np.minimum(starts + window_s, r.end)], axis=1))
    if not out_embs:
        return np.zeros((0, embs.shape[1]), np.float32), np.zeros((0, 2))
    return np.concatenate(out_embs).astype(np.float32), np.concatenate(out_times)


@timed("clustering")
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

    def diarize(self, wave: np.ndarray, regions: list[Region], count: SpeakerCount = SpeakerCount(),
                helper: Optional[Executor] = None, enrolled: Optional[Enrolled] = None) -> tuple[np.ndarray, np.ndarray]:
        """(per-frame labels (n_frames,), cluster centroids (K, D)); with a `helper` thread, the
        speaker embeddings of the later half of the speech are computed there, side by side.
        `enrolled`: the enrolled people; one heard but matched by no cluster adds a cluster
        (`heard_enrolled`)."""
        return self.labelled(self.embed_speech(wave, regions, helper), wave, regions, count, enrolled)

    def embed_speech(self, wave: np.ndarray, regions: list[Region], helper: Optional[Executor] = None) -> tuple:
        """`diarize`'s speaker embeddings: (clustered windows (embs, times), short windows or None)."""
        cfg = self.config
        if cfg.label_window_s <= 0:
            return self.embed(wave, regions, cfg.window_s, cfg.hop_s, helper), None
        short = self.embed(wave, regions, cfg.label_window_s, cfg.label_hop_s, helper)
        clustered = (pooled_windows(*short, regions, cfg.window_s, cfg.hop_s) if cfg.pool_windows
                     else self.embed(wave, regions, cfg.window_s, cfg.hop_s, helper))
        return clustered, short

    def labelled(self, embedded: tuple, wave: np.ndarray, regions: list[Region], count: SpeakerCount = SpeakerCount(),
                 enrolled: Optional[Enrolled] = None) -> tuple[np.ndarray, np.ndarray]:
        """`diarize` once `embed_speech` has run: the clustering and the frame labels."""
        n_frames = int(np.ceil(wave.size / SAMPLE_RATE * FRAMES_PER_SECOND))
        (embs, times), short = embedded
        labelled = self.label(embs, times, regions, n_frames, count, short, enrolled)
        # the clustering's and labelling's scratch (an hour: ~180 MB kept by glibc otherwise, for the
        # rest of the run)
        return_freed_memory()
        return labelled

    def label(self, embs: np.ndarray, times: np.ndarray, regions: list[Region], n_frames: int,
              count: SpeakerCount = SpeakerCount(), short: Optional[tuple[np.ndarray, np.ndarray]] = None,
              enrolled: Optional[Enrolled] = None) -> tuple[np.ndarray, np.ndarray]:
        """`diarize` once the windows are embedded (benchmarks call it with cached ones): the clustered
        windows (embs (N, D), times (N, 2)) and the short windows (embeddings, times) that label the
        frames; None = the clustered windows' own labels do."""
        if not len(embs):
            return np.full(n_frames, -1), np.zeros((0, self.encoder.dim))
        labels, centroids = self.cluster(embs, count)
        cfg = self.config
        if enrolled is not None and count.num is None and cfg.enrolled_min_windows > 0:
            more = heard_enrolled(embs, labels, centroids, enrolled.voiceprints, enrolled.threshold,
                                  cfg.enrolled_min_windows, cfg.enrolled_min_cosine, cfg.enrolled_margin, enrolled.cohort)
            k = min(len(centroids) + more, count.max or cfg.max_speakers, len(embs))
            if k > len(centroids):
                labels, centroids = self.cluster(embs, SpeakerCount(num=k))
        if short is None:
            return frame_labels(times, np.eye(len(centroids))[labels], regions, n_frames), centroids
        short_embs, short_times = short
        return frame_labels(short_times, unit_rows(short_embs) @ unit_rows(centroids).T, regions, n_frames), centroids

    def embed(self, wave: np.ndarray, regions: list[Region], window_s: float, hop_s: float,
              helper: Optional[Executor] = None) -> tuple[np.ndarray, np.ndarray]:
        """Speaker-embedding windows inside speech: (N, D) embeddings and their (N, 2) times in seconds.
        Regions are embedded independently, so a `helper` thread can take the later half of them."""
        if helper is not None and len(regions) > 1:
            ends = np.cumsum([r.duration for r in regions])
            half = int(np.searchsorted(ends, ends[-1] / 2)) + 1
            later = helper.submit(self.embed, wave, regions[half:], window_s, hop_s)
            first = self.embed(wave, regions[:half], window_s, hop_s)
            second = later.result()
            return np.concatenate([first[0], second[0]]), np.concatenate([first[1], second[1]])
        embs, times = [], []
        for r in regions:
            piece = wave[int(r.start * SAMPLE_RATE) : int(r.end * SAMPLE_RATE)]
            if self.config.shared_trunk and isinstance(self.encoder, CAMPlusPlus):
                e, t = self.encoder.embed_windows(piece, window_s, hop_s, shared_context=True)
            else:
                e, t = self.encoder.embed_windows(piece, window_s, hop_s)
            return_freed_memory()
            embs.append(e)
            times.append(t + r.start)
        if not embs:
            return np.zeros((0, self.encoder.dim), np.float32), np.zeros((0, 2))
        return np.concatenate(embs), np.concatenate(times)

    @timed("clustering")
    def cluster(self, embs: np.ndarray, count: SpeakerCount = SpeakerCount()) -> tuple[np.ndarray, np.ndarray]:
        """Embedding windows (N ≥ 1, D) → (a cluster label per window (N,), cluster centroids (K, D))."""
        cfg = self.config
        # an hour gives ~7000 windows: cluster an even subsample so memory and time stay bounded (the
        # affinity matrix is quadratic, its eigendecomposition cubic), then give every window the
        # nearest centroid
        sample = np.linspace(0, len(embs) - 1, min(len(embs), cfg.max_cluster_windows)).round().astype(int)
        lo, hi = count.min or 1, count.max or cfg.max_speakers
        if cfg.clustering == "ahc":
            labels = ahc_clusters(embs[sample], cfg.ahc_threshold, count.num, lo, hi)
        else:
            labels = spectral_clusters(embs[sample], count.num, lo, hi, cfg.prune_fraction, cfg.min_pruned)
        if count.num is None:
            # in the subsample, and never over a tenth of the windows: a short clip's quiet speaker stays
            min_size = int(round(min(cfg.min_cluster_windows, 0.1 * len(embs)) * len(sample) / len(embs)))
            if min_size > 1:
                labels = absorb_small(embs[sample], labels, min_size)
            labels = merge_similar(embs[sample], labels, cfg.merge_cosine, count.min or 1, cfg.merge_max_separation)
        centroids = np.stack([embs[sample][labels == k].mean(axis=0) for k in range(labels.max() + 1)])
        if len(sample) < len(embs):
            labels = np.argmax(unit_rows(embs) @ unit_rows(centroids).T, axis=1)
        return labels, centroids


def heard_enrolled(embs: np.ndarray, labels: np.ndarray, centroids: np.ndarray, voiceprints: Voiceprints,
                   threshold: float, min_windows: int, min_cosine: float, margin: float,
                   cohort: Optional[np.ndarray] = None) -> int:
    """How many enrolled voices that no cluster matched (`match_names` at `threshold`) are heard in the
    windows (N, D): each the best-matching voice of ≥ `min_windows` windows at cosine ≥ `min_cosine`,
    by a median margin ≥ `margin` over the voice their cluster was named after."""
    named = match_names(centroids, voiceprints, threshold, cohort)
    names = list(voiceprints)
    if not named or len(named) == len(names):  # no cluster named to compare with, or nobody left over
        return 0
    sim = unit_rows(embs) @ unit_rows(np.stack([voiceprints[n] for n in names])).T
    # shape: (N windows, enrolled voices)
    best = sim.argmax(axis=1)
    own = np.array([names.index(named[k]) if k in named else -1 for k in range(len(centroids))])[labels]
    heard = 0
    for j, name in enumerate(names):
        if name in named.values():
            continue
        hits = np.flatnonzero((best == j) & (sim[:, j] >= min_cosine) & (own >= 0))
        if len(hits) >= min_windows and np.median(sim[hits, j] - sim[hits, own[hits]]) >= margin:
            heard += 1
    return heard


def _cosine(embs: np.ndarray) -> np.ndarray:
    unit = unit_rows(embs)
    return unit @ unit.T
