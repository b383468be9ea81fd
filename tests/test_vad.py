import numpy as np

from speakerlm.audio import SAMPLE_RATE, load_audio
from speakerlm.vad import Region, group_regions, speech_regions


def test_finds_each_utterance_between_silences(tts):
    silence = np.zeros(SAMPLE_RATE, np.float32)
    a, b = load_audio(tts("rms", "glue")), load_audio(tts("slt", "rice"))
    wave = np.concatenate([silence, a, silence, b, silence])
    regions = speech_regions(wave)
    assert len(regions) == 2
    b_start = (2 * SAMPLE_RATE + a.size) / SAMPLE_RATE
    assert regions[0].start < 1.3 and regions[0].end < b_start - 0.5
    assert abs(regions[1].start - b_start) < 0.4


def test_group_regions_respects_the_window_length():
    regions = [Region(0, 10), Region(11, 25), Region(26, 31), Region(40, 100)]
    windows = group_regions(regions, max_s=28)
    assert all(w.duration <= 28 + 1e-9 for w in windows)
    assert windows[0] == Region(0, 25)  # joined while the window fits
    covered = sum(w.duration for w in windows if w.start >= 40)
    assert np.isclose(covered, 60)  # the 60 s region is split, not dropped


def test_vad_leaves_torch_thread_count_as_it_found_it():
    """silero_vad sets torch to one thread when imported; every stage after the VAD would then run on
    one core."""
    import sys

    import torch

    from speakerlm import vad

    for name in [m for m in sys.modules if m.startswith("silero_vad")]:
        del sys.modules[name]  # import it afresh
    vad._silero.cache_clear()
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        vad.speech_regions(np.zeros(SAMPLE_RATE, np.float32))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
