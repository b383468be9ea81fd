"""Voiceprints: names for voices."""

import numpy as np

from speakerlm.voiceprints import match_names, retrieve, s_norm, unit_rows


def test_match_names_hungarian_with_rejection():
    centroids = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    prints = {"Bob": np.array([0, 0.9, 0.1]), "Alice": np.array([1.0, 0.1, 0]), "Zed": np.array([0.6, 0.6, 0.1])}
    assert match_names(centroids, prints, threshold=0.5) == {0: "Alice", 1: "Bob"}  # Zed loses; cluster 2 stays anonymous


def test_retrieval_keeps_the_voices_heard_in_registration_order():
    prints = {"A": np.array([1.0, 0, 0]), "B": np.array([0, 1.0, 0]), "C": np.array([0, 0, 1.0])}
    stream = np.array([[0.1, 0, 1.0], [0.9, 0.1, 0]])  # C, then A
    assert retrieve(prints, stream, k=2) == ["A", "C"]
    assert retrieve(prints, stream, k=5) == ["A", "B", "C"]


def test_cohort_normalised_scores_keep_a_hub_voiceprint_from_outbidding_the_persons_own():
    rng = np.random.default_rng(0)
    hub, ann = np.array([1.0, 0, 0, 0]), np.array([0, 1.0, 0, 0])
    # voices nobody enrols, all somewhat like the hub (as degraded recordings drift towards some voices)
    cohort = unit_rows(hub + 0.4 * rng.standard_normal((40, 4)))
    prints = {"Hub": hub, "Ann": ann}
    heard = np.array([[0.7, 0.62, 0.1, 0.0]])  # Ann, heard through a channel that pulls her towards the hub
    assert match_names(heard, prints) == {0: "Hub"}  # raw cosine: the hub wins
    assert match_names(heard, prints, cohort=cohort) == {0: "Ann"}
    voices, voiceprints = unit_rows(heard), unit_rows(np.stack(list(prints.values())))
    assert s_norm(voices @ voiceprints.T, voices, voiceprints, cohort).shape == (1, 2)


def test_the_package_ships_a_cohort_for_campp_only():
    from speakerlm.voiceprints import bundled_cohort

    cohort = bundled_cohort("campp")
    assert cohort is not None and cohort.shape[1] == 192 and len(cohort) >= 20
    assert np.allclose(np.linalg.norm(cohort, axis=1), 1.0, atol=1e-3)
    assert bundled_cohort("ge2e") is None  # GE2E voices are named by raw cosine
