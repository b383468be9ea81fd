"""Turn times for untimed model output: proportional spread, and boundaries moved to voice changes."""

import numpy as np
import pytest

from speakerlm.timing import time_turns
from speakerlm.turns import Turn
from speakerlm.vad import Region


def test_proportional_spread_over_speech_skips_pauses():
    turns = [Turn("A", "x" * 10), Turn("B", "x" * 30)]
    timed = time_turns(turns, [Region(1.0, 3.0), Region(5.0, 7.0)])  # 4 s of speech, 2 s pause
    assert timed[0].start == pytest.approx(1.0) and timed[0].end == pytest.approx(2.0, abs=1e-3)
    assert timed[1].start == pytest.approx(2.0) and timed[1].end == pytest.approx(7.0, abs=1e-3)


def test_boundaries_follow_the_diarization():
    # A talks 0-8 s, B 8-10 s; by characters the model's turns would split at 2.5 s
    frames = np.r_[np.zeros(800, int), np.ones(200, int)]
    turns = [Turn("Ann", "short"), Turn("Ben", "a much longer turn of text")]
    timed = time_turns(turns, [Region(0.0, 10.0)], frames, {"Ann": 0, "Ben": 1})
    assert timed[0].end == pytest.approx(8.0, abs=0.15) and timed[1].start == pytest.approx(8.0, abs=0.15)
    assert timed[1].end == pytest.approx(10.0, abs=1e-3)


def test_turns_without_a_cluster_keep_their_proportional_share():
    frames = np.r_[np.zeros(500, int), np.ones(500, int)]
    turns = [Turn("Ann", "x" * 20), Turn("spk 3", "x" * 20), Turn("Ben", "x" * 20)]  # spk 3: no cluster
    timed = time_turns(turns, [Region(0.0, 10.0)], frames, {"Ann": 0, "Ben": 1})
    assert [t.speaker for t in timed] == ["Ann", "spk 3", "Ben"]
    assert all(a.end <= b.start + 1e-6 for a, b in zip(timed, timed[1:]))
    assert timed[1].end - timed[1].start > 1.0  # not squeezed to nothing
