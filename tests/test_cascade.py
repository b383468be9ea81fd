"""The cascaded baseline: clustering estimates the speaker count, words find their speakers, names match."""

import numpy as np
import pytest

from speakerlm.audio import SAMPLE_RATE, load_audio
from speakerlm.cascade import (FRAME_RATE, ahc_clusters, frame_labels, match_names, merge_similar,
                               spectral_clusters, word_speaker, words_to_turns)
from speakerlm.metrics import cpwer
from speakerlm.turns import Turn
from speakerlm.vad import Region
from speakerlm.whisper import Word


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
    assert same_partition(ahc_clusters(x, num_speakers=3), truth)


def test_merge_similar_repairs_an_over_split():
    x, truth = blobs(2, seed=5)
    over = truth * 2 + (np.arange(len(truth)) % 2)  # each true cluster split in two
    assert same_partition(merge_similar(x, over, merge_cosine=0.8), truth)


def test_match_names_hungarian_with_rejection():
    centroids = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    prints = {"Bob": np.array([0, 0.9, 0.1]), "Alice": np.array([1.0, 0.1, 0]), "Zed": np.array([0.6, 0.6, 0.1])}
    assert match_names(centroids, prints, threshold=0.5) == {0: "Alice", 1: "Bob"}  # Zed loses; cluster 2 stays anonymous


def test_words_follow_frame_labels_and_merge_into_turns():
    regions = [Region(0.0, 2.0), Region(2.0, 4.0)]
    times = np.array([[0, 1.5], [0.5, 2.0], [2.0, 3.5], [2.5, 4.0]])
    frames = frame_labels(times, np.array([0, 0, 1, 1]), regions, 4 * FRAME_RATE)
    words = [Word("hi", 0.1, 0.5), Word("there.", 0.6, 1.8), Word("yes", 2.1, 2.6), Word("indeed", 2.7, 3.9)]
    speakers = [["A", "B"][word_speaker(w, frames)] for w in words]
    assert words_to_turns(words, speakers, gap_s=2.0) == [Turn("A", "hi there.", 0.1, 1.8), Turn("B", "yes indeed", 2.1, 3.9)]


@pytest.fixture(scope="module")
def cascade():
    from speakerlm.cascade import Cascade
    from speakerlm.transcribe import TranscribeOptions

    return Cascade(TranscribeOptions(engine="cascade"))


def test_speaker_change_without_a_pause(cascade, tts):
    from speakerlm.transcribe import Enrolled

    a, b = load_audio(tts("rms", "chicken")), load_audio(tts("slt", "juice"))
    # trim each utterance's own silence so one voice follows the other with no gap at all
    trim = lambda w: w[np.flatnonzero(np.abs(w) > 0.02)[0] : np.flatnonzero(np.abs(w) > 0.02)[-1]]
    wave = np.concatenate([np.zeros(SAMPLE_RATE // 2, np.float32), trim(a), trim(b), np.zeros(SAMPLE_RATE // 2, np.float32)])
    turns = cascade.transcribe(wave, Enrolled())
    ref = [Turn("x", "These days a chicken leg is a rare dish."), Turn("y", "The juice of lemons makes fine punch.")]
    assert len({t.speaker for t in turns}) == 2, turns
    assert cpwer(ref, turns).errors <= 2, turns


def test_enrolled_names_on_the_bundled_example(cascade):
    from speakerlm.transcribe import Enrolled, enroll_voiceprint
    from tests.conftest import REPO

    ex = REPO / "examples"
    enrolled = Enrolled({n: enroll_voiceprint([ex / f"{n.lower()}.wav"]) for n in ("Alice", "Bob")})
    turns = cascade.transcribe(load_audio(ex / "meeting.wav"), enrolled)
    assert [t.speaker for t in turns] == ["Alice", "Bob", "Alice", "Bob", "Alice"], turns
    # a partial roster: only Bob enrolled, Alice becomes spk 0
    enrolled = Enrolled({"Bob": enroll_voiceprint([ex / "bob.wav"])})
    assert [t.speaker for t in cascade.transcribe(load_audio(ex / "meeting.wav"), enrolled)] == ["spk 0", "Bob", "spk 0", "Bob", "spk 0"]


def test_long_recordings_cluster_a_subsample_and_label_every_window(cascade, tts):
    """An hour's ~7000 windows are clustered through an even subsample: labels stay right."""
    from dataclasses import replace

    from speakerlm.cascade import Diarizer
    from speakerlm.vad import speech_regions

    gap = np.zeros(8000, np.float32)
    wave = np.concatenate([load_audio(tts("rms", "chicken")), gap, load_audio(tts("slt", "juice")), gap,
                           load_audio(tts("rms", "well")), gap, load_audio(tts("slt", "rice"))])
    regions = speech_regions(wave)
    full = Diarizer(cascade.options, encoder=cascade.diarizer.encoder)
    small = Diarizer(cascade.options, replace(full.config, max_cluster_windows=8), encoder=full.encoder)
    (a, ca), (b, cb) = full.diarize(wave, regions), small.diarize(wave, regions)
    assert len(ca) == len(cb) == 2
    speech = a >= 0
    agree = max(np.mean(a[speech] == b[speech]), np.mean(a[speech] == 1 - b[speech]))
    assert agree > 0.9, agree
