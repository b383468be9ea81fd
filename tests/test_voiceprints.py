"""Voiceprints: names for voices."""

import numpy as np

from speakerlm.voiceprints import match_names, retrieve


def test_match_names_hungarian_with_rejection():
    centroids = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    prints = {"Bob": np.array([0, 0.9, 0.1]), "Alice": np.array([1.0, 0.1, 0]), "Zed": np.array([0.6, 0.6, 0.1])}
    assert match_names(centroids, prints, threshold=0.5) == {0: "Alice", 1: "Bob"}  # Zed loses; cluster 2 stays anonymous


def test_retrieval_keeps_the_voices_heard_in_registration_order():
    prints = {"A": np.array([1.0, 0, 0]), "B": np.array([0, 1.0, 0]), "C": np.array([0, 0, 1.0])}
    stream = np.array([[0.1, 0, 1.0], [0.9, 0.1, 0]])  # C, then A
    assert retrieve(prints, stream, k=2) == ["A", "C"]
    assert retrieve(prints, stream, k=5) == ["A", "B", "C"]
