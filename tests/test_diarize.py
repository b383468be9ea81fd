"""Diarization: clustering estimates the speaker count, frames get labels, long recordings stay bounded."""

import numpy as np
import pytest

from speakerlm.audio import load_audio
from speakerlm.diarize import (FRAMES_PER_SECOND, Diarizer, DiarizerConfig, SpeakerCount, absorb_small, ahc_clusters,
                               frame_labels, merge_similar, pooled_windows, spectral_clusters)
from speakerlm.errors import UserError
from speakerlm.vad import Region


def blobs(k, per=20, dim=32, spread=0.15, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    x = np.concatenate([c + spread * np.linalg.norm(c) / np.sqrt(dim) * rng.normal(size=(per, dim)) for c in centres])
    return x, np.repeat(np.arange(k), per)


def same_partition(a, b):
    return len(set(zip(a, b))) == len(set(a)) == len(set(b))


@pytest.mark.parametrize("k", [1, 2, 3, 4, 6])
def test_spectral_estimates_the_speaker_count(k):
    x, truth = blobs(k, seed=k)
    labels = spectral_clusters(x)
    assert same_partition(labels, truth), np.bincount(labels)


def test_spectral_oracle_count_and_bounds():
    x, truth = blobs(3, seed=3)
    assert len(set(spectral_clusters(x, num_speakers=2))) == 2
    assert len(set(spectral_clusters(x, max_speakers=2))) <= 2


@pytest.mark.parametrize("k", [10, 12])
def test_auto_pruned_spectral_counts_many_speakers(k):
    # a fixed pruning fraction keeps more links per row than a cluster has windows once speakers are
    # many (this case finds 9 and 10); choosing the pruning per recording keeps them apart
    x, truth = blobs(k, per=40, spread=0.3, seed=k)
    labels = spectral_clusters(x, max_speakers=16, prune_fraction=0.0)
    assert same_partition(labels, truth), np.bincount(labels)


@pytest.mark.parametrize("k", [1, 2, 5, 10])
def test_ahc_counts_by_its_threshold_and_keeps_the_bounds(k):
    x, truth = blobs(k, per=30, seed=k)
    assert same_partition(ahc_clusters(x, 0.5, max_speakers=16), truth)
    assert len(set(ahc_clusters(x, 0.5, num_speakers=max(1, k - 1)))) == max(1, k - 1)
    assert len(set(ahc_clusters(x, 0.5, max_speakers=2))) <= 2


def test_the_default_diarizer_counts_ten_speakers_and_two():
    for k in (10, 2):
        x, truth = blobs(k, per=40, spread=0.3, seed=k + 1)
        labels, centroids = Diarizer(None).cluster(x)
        assert len(centroids) == k and same_partition(labels, truth), np.bincount(labels)


def test_absorb_small_gives_a_tiny_cluster_to_its_nearest_neighbour():
    x, truth = blobs(3, per=20, seed=4)
    split = truth.copy()
    split[:2] = 3  # two windows of speaker 0 as a cluster of their own
    out = absorb_small(x, split, min_size=3)
    assert same_partition(out, truth)
    assert same_partition(absorb_small(x, split, min_size=2), split)  # big enough: kept


def test_diarizer_config_rejects_an_unknown_clustering():
    with pytest.raises(UserError, match="clustering"):
        DiarizerConfig(clustering="kmeans")


def test_merge_keeps_two_close_voices_apart_when_their_windows_separate():
    rng = np.random.default_rng(0)
    shared = rng.normal(size=32)
    close = [shared + 0.35 * rng.normal(size=32) for _ in range(2)]  # centroids at cosine ~0.9
    x = np.concatenate([c + 0.15 * rng.normal(size=(200, 32)) for c in close])
    truth = np.repeat([0, 1], 200)
    assert len(set(merge_similar(x, truth, merge_cosine=0.8))) == 1  # similar centroids alone: merged
    assert same_partition(merge_similar(x, truth, merge_cosine=0.8, max_separation=25.0), truth)
    same = x[:200][rng.permutation(200)]  # one voice split at random: no reliable difference, merged
    assert len(set(merge_similar(same, np.repeat([0, 1], 100), merge_cosine=0.8, max_separation=25.0))) == 1


def test_merge_similar_repairs_an_over_split():
    x, truth = blobs(2, seed=5)
    over = truth * 2 + (np.arange(len(truth)) % 2)  # each true cluster split in two
    assert same_partition(merge_similar(x, over, merge_cosine=0.8), truth)


def test_long_recordings_cluster_a_subsample_and_label_every_window(tts):
    """An hour's ~7000 windows are clustered through an even subsample: labels stay right."""
    from dataclasses import replace

    from speakerlm.pretrained.speaker_encoder import load_speaker_encoder
    from speakerlm.vad import speech_regions

    gap = np.zeros(8000, np.float32)
    wave = np.concatenate([load_audio(tts("rms", "chicken")), gap, load_audio(tts("slt", "juice")), gap,
                           load_audio(tts("rms", "well")), gap, load_audio(tts("slt", "rice"))])
    regions = speech_regions(wave)
    full = Diarizer(load_speaker_encoder("campp"))
    small = Diarizer(full.encoder, replace(full.config, max_cluster_windows=10))  # of 13 clustering windows
    (a, ca), (b, cb) = full.diarize(wave, regions), small.diarize(wave, regions)
    assert len(ca) == len(cb) == 2
    speech = a >= 0
    agree = max(np.mean(a[speech] == b[speech]), np.mean(a[speech] == 1 - b[speech]))
    assert agree > 0.9, agree


@pytest.mark.parametrize("num, lo, hi", [(0, None, None), (None, 0, None), (None, 3, 2)])
def test_impossible_speaker_counts_are_refused(num, lo, hi):
    with pytest.raises(UserError):
        SpeakerCount(num, lo, hi)


def test_frames_take_the_speaker_with_the_highest_summed_score():
    # two overlapping windows: where both cover a frame their scores add up; where one does, it decides;
    # a speech frame that no window covers takes the best speaker of the nearest window
    times = np.array([[0.0, 1.0], [0.5, 1.5]])
    scores = np.array([[0.9, 0.1], [0.2, 0.3]])
    frames = frame_labels(times, scores, [Region(0.0, 2.0)], 2 * FRAMES_PER_SECOND)
    assert (frames[:100] == 0).all()  # 0.0–0.5: [0.9, 0.1]; 0.5–1.0: [1.1, 0.4]
    assert (frames[100:150] == 1).all()  # 1.0–1.5: [0.2, 0.3]
    assert (frames[150:] == 1).all()  # uncovered, nearest window is the second



def test_pooled_windows_average_the_short_windows_inside_them():
    # short windows of 0.75 s every 0.25 s over a 2.6 s region (the last aligned to its end)
    starts = np.append(np.arange(0.0, 1.85, 0.25), 1.85)
    times = np.stack([starts, starts + 0.75], axis=1)
    embs = np.eye(len(starts))  # unit rows, each its own axis: a pooled row shows which it averaged
    pooled, ptimes = pooled_windows(embs, times, [Region(0.0, 2.6)], 1.5, 0.5)
    assert np.allclose(ptimes, [[0.0, 1.5], [0.5, 2.0], [1.0, 2.5], [1.1, 2.6]])
    assert np.allclose(pooled[0], np.eye(len(starts))[:4].mean(axis=0))  # starts 0, .25, .5, .75
    assert np.allclose(pooled[3], np.eye(len(starts))[[5, 6, 7, 8]].mean(axis=0))  # 1.25, 1.5, 1.75, 1.85
    short, _ = pooled_windows(embs[:1], times[:1] * 0.5, [Region(0.0, 0.4)], 1.5, 0.5)  # a region under 1.5 s
    assert short.shape == (1, len(starts)) and np.allclose(short[0], embs[0])


def test_diarization_embeds_each_region_once(tts):
    """Clustering windows are pooled from the short label windows: one CAM++ pass per region, and the
    two voices still come out as two speakers."""
    from dataclasses import replace

    from speakerlm.pretrained.speaker_encoder import load_speaker_encoder
    from speakerlm.vad import speech_regions

    gap = np.zeros(8000, np.float32)
    wave = np.concatenate([load_audio(tts("rms", "chicken")), gap, load_audio(tts("slt", "juice")), gap,
                           load_audio(tts("rms", "well"))])
    regions = speech_regions(wave)
    pooled = Diarizer(load_speaker_encoder("campp"))
    calls = []
    embed = pooled.embed
    pooled.embed = lambda *args: calls.append(args[2:4]) or embed(*args)
    frames, centroids = pooled.diarize(wave, regions)
    assert calls == [(pooled.config.label_window_s, pooled.config.label_hop_s)]
    separate_frames, separate = Diarizer(pooled.encoder, replace(pooled.config, pool_windows=False)).diarize(wave, regions)
    assert len(centroids) == len(separate) == 2
    speech = frames >= 0
    agree = max(np.mean(frames[speech] == separate_frames[speech]), np.mean(frames[speech] == 1 - separate_frames[speech]))
    assert agree > 0.9, agree
    # a helper thread embedding the later regions gives the very same diarization
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as helper:
        shared_frames, shared_centroids = Diarizer(pooled.encoder).diarize(wave, regions, helper=helper)
    assert len(regions) > 1 and np.array_equal(shared_frames, frames) and np.allclose(shared_centroids, centroids)


def test_pruned_laplacian_keeps_each_rows_strongest_links_symmetrised():
    """The in-place Laplacian against its definition: D − A, A the pruned affinity symmetrised."""
    from speakerlm.diarize import _pruned_laplacian

    x, _ = blobs(3, per=200)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    affinity, keep = x @ x.T, 37
    a = affinity.copy()
    for row in a:
        row[np.argsort(row)[: len(a) - keep]] = 0.0
    a = (0.5 * (a + a.T)).clip(min=0.0)
    np.fill_diagonal(a, 0.0)
    expected = np.diag(a.sum(axis=1)) - a
    before = affinity.copy()
    np.testing.assert_array_equal(_pruned_laplacian(affinity, keep), expected)
    np.testing.assert_array_equal(affinity, before)  # the caller's affinity is left as it was


def _two_close_voices_and_one_apart(seed=1, dim=32, per=60):
    """Windows of voices A, B, C where B and C are close (cosine ~0.87) and the windows noisy enough
    that the estimate counts two voices: B and C share a cluster."""
    rng = np.random.default_rng(seed)
    a, shared = rng.normal(size=dim), rng.normal(size=dim)
    b, c = (shared + 0.3 * rng.normal(size=dim) for _ in range(2))
    x = np.concatenate([v + 0.8 * np.linalg.norm(v) / np.sqrt(dim) * rng.normal(size=(per, dim)) for v in (a, b, c)])
    duplicate_of_a = a + 0.05 * np.linalg.norm(a) / np.sqrt(dim) * rng.normal(size=dim)
    return x, np.repeat([0, 1, 2], per), {"A": a, "B": b, "C": c}, duplicate_of_a


def test_an_enrolled_voice_heard_but_not_counted_adds_a_cluster():
    from speakerlm.diarize import Enrolled, heard_enrolled

    x, truth, prints, duplicate_of_a = _two_close_voices_and_one_apart()
    diarizer = Diarizer(None)
    labels, centroids = diarizer.cluster(x)
    assert len(centroids) == 2  # B and C counted as one
    assert heard_enrolled(x, labels, centroids, prints, 0.45, 6, 0.5, 0.05) == 1  # C: matched by no cluster, heard
    # a distractor that sounds like A is matched by no cluster either, but A's windows prefer it by no margin
    assert heard_enrolled(x, labels, centroids, {"A": prints["A"], "B": prints["B"], "D": duplicate_of_a},
                          0.45, 6, 0.5, 0.05) == 0

    times = np.stack([np.arange(len(x)) * 0.5, np.arange(len(x)) * 0.5 + 1.5], axis=1)
    regions, n_frames = [Region(0.0, float(times[-1, 1]))], int(times[-1, 1] * FRAMES_PER_SECOND) + 1

    def count(**kw):
        return len(diarizer.label(x, times, regions, n_frames, **kw)[1])

    assert count() == 2 and count(enrolled=Enrolled(prints, 0.45)) == 3
    assert count(enrolled=Enrolled(prints, 0.45), count=SpeakerCount(max=2)) == 2  # the user's bound holds
    off = Diarizer(None, DiarizerConfig(enrolled_min_windows=0))
    assert len(off.label(x, times, regions, n_frames, enrolled=Enrolled(prints, 0.45))[1]) == 2
