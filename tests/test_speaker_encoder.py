"""CAM++ and GE2E: same voice close, different voices apart, windows cover the audio."""

import numpy as np
import pytest

from speakerlm.audio import SAMPLE_RATE, load_audio
from speakerlm.pretrained.speaker_encoder import load_speaker_encoder

VOICES = ("rms", "slt", "awb")


@pytest.mark.parametrize("name,dim", [("campp", 192), ("ge2e", 256)])
def test_same_voice_closer_than_other_voices(name, dim, tts):
    encoder = load_speaker_encoder(name)
    emb = {(v, k): encoder.embed(load_audio(tts(v, k))) for v in VOICES for k in ("glue", "well")}
    assert all(e.shape == (dim,) and np.isclose(np.linalg.norm(e), 1, atol=1e-4) for e in emb.values())
    for v in VOICES:
        same = emb[(v, "glue")] @ emb[(v, "well")]
        others = [emb[(v, "glue")] @ emb[(o, "well")] for o in VOICES if o != v]
        assert same > max(others) + 0.1, (v, same, others)


@pytest.mark.parametrize("name", ["campp", "ge2e"])
def test_embed_windows_times_cover_audio_and_follow_the_speaker(name, tts):
    encoder = load_speaker_encoder(name)
    a, b = load_audio(tts("rms", "glue")), load_audio(tts("slt", "well"))
    wave = np.concatenate([a, b])
    embs, times = encoder.embed_windows(wave, win_s=1.0, hop_s=0.5)
    assert embs.shape == (len(times), encoder.dim)
    assert times[0, 0] == 0 and np.isclose(times[-1, 1], wave.size / SAMPLE_RATE)
    assert np.allclose(times[:, 1] - times[:, 0], 1.0)
    ref_a, ref_b = encoder.embed(a), encoder.embed(b)
    first = embs[times[:, 1] <= a.size / SAMPLE_RATE]
    last = embs[times[:, 0] >= a.size / SAMPLE_RATE]
    assert np.mean(first @ ref_a > first @ ref_b) > 0.7 and np.mean(last @ ref_b > last @ ref_a) > 0.7


def test_short_input_is_padded_not_rejected():
    encoder = load_speaker_encoder("campp")
    t = np.arange(SAMPLE_RATE // 10) / SAMPLE_RATE
    assert encoder.embed((0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)).shape == (192,)


@pytest.mark.parametrize("batch,frames", [(1, 48), (16, 73), (3, 148), (1, 1000)])
def test_campp_under_onnx_runtime_matches_the_torch_module(batch, frames):
    import torch

    encoder = load_speaker_encoder("campp")
    feats = torch.randn(batch, frames, 80, generator=torch.Generator().manual_seed(frames))
    with torch.inference_mode():
        reference = encoder.model(feats).numpy()
    assert np.abs(encoder.session.run(feats.numpy(), threads=1) - reference).max() < 1e-4
