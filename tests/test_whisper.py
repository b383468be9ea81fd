"""Whisper read from CT2 files into PyTorch: complete, numerically faithful, and able to transcribe."""

import numpy as np
import pytest
import torch

from speakerlm.audio import load_audio
from speakerlm.metrics import normalized_tokens
from speakerlm.pretrained.whisper import SOURCES, ct2_folder, load_whisper, transcribe_window, whisper_dir
from tests.conftest import SENTENCES


def _ct2_encode(name: str, mel: np.ndarray) -> np.ndarray:
    import ctranslate2

    folder = ct2_folder(SOURCES[name])  # base: its two parts joined into the cache
    model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32", intra_threads=2)
    out = model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None], np.float32)), to_cpu=True)
    return np.array(out)[0]


@pytest.mark.parametrize("name", ["tiny.en", "base"])
def test_encoder_matches_ctranslate2(name, tts):
    model, processor = load_whisper(name)
    wave = load_audio(tts("rms", "glue"))
    mel = processor.features(wave, sampling_rate=16000, return_tensors="np").input_features[0]
    with torch.inference_mode():
        ours = model.model.encoder(torch.from_numpy(mel)[None]).last_hidden_state[0].numpy()
    theirs = _ct2_encode(name, mel)
    rel = np.linalg.norm(ours - theirs) / np.linalg.norm(theirs)
    print(f"{name}: encoder relative error vs CT2 float32 = {rel:.2e}")
    assert rel <= 1e-4


@pytest.mark.parametrize("name,key", [("tiny.en", "chicken"), ("base", "glue")])
def test_transcribes_clean_tts_sentence_exactly(name, key, tts):
    # flite is deterministic and greedy decoding is too: these pairs decode word for word
    model, processor = load_whisper(name)
    text = transcribe_window(model, processor, load_audio(tts("rms", key)), language="en")
    assert normalized_tokens(text) == normalized_tokens(SENTENCES[key]), text


@pytest.mark.slow
@pytest.mark.parametrize("name,max_wer", [("tiny.en", 0.25), ("base", 0.15)])
def test_word_error_rate_on_six_sentences(name, max_wer, tts):
    import kaldialign

    model, processor = load_whisper(name)
    errors = words = 0
    for key, sentence in SENTENCES.items():
        hyp = normalized_tokens(transcribe_window(model, processor, load_audio(tts("rms", key)), language="en"))
        ref = normalized_tokens(sentence)
        errors += kaldialign.edit_distance(ref, hyp)["total"]
        words += len(ref)
    print(f"{name}: WER {errors / words:.1%} on {words} words (flite rms)")
    assert errors / words <= max_wer


def test_converted_directory_is_reused():
    path = whisper_dir("tiny.en")
    before = (path / "model.safetensors").stat().st_mtime_ns
    assert whisper_dir("tiny.en") == path and (path / "model.safetensors").stat().st_mtime_ns == before
