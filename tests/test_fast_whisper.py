"""faster-whisper on the packaged Whisper files: long-form recognition with timed words, the base model
joined from its two packages, and a local Hugging Face Whisper folder converted once."""

import numpy as np
import pytest

from speakerlm.audio import SAMPLE_RATE, load_audio
from speakerlm.metrics import normalized_tokens
from speakerlm.pretrained.fast_whisper import FastWhisper, ct2_dir
from tests.conftest import SENTENCES


@pytest.fixture(scope="module")
def tiny():
    return FastWhisper("tiny.en")


@pytest.mark.parametrize("block_seconds", [300.0, 4.0])
def test_long_form_keeps_every_sentence_with_word_times(tiny, tts, monkeypatch, block_seconds):
    """Three voices one after another, 1 s apart: every word comes back, in order, inside its sentence,
    also when the wave is decoded in blocks (cut in the pauses) to keep memory flat."""
    from speakerlm.pretrained import fast_whisper

    monkeypatch.setattr(fast_whisper, "BLOCK_SECONDS", block_seconds)
    keys = ["chicken", "juice", "glue"]
    gap = np.zeros(SAMPLE_RATE, np.float32)
    pieces, spans, t = [], [], 0.0
    for voice, key in zip(["rms", "slt", "awb"], keys):
        w = load_audio(tts(voice, key))
        pieces += [w, gap]
        spans.append((t, t + w.size / SAMPLE_RATE))
        t += w.size / SAMPLE_RATE + 1.0
    segments = tiny.transcribe(np.concatenate(pieces))
    words = [w for s in segments for w in s.words]
    ref = normalized_tokens(" ".join(SENTENCES[k] for k in keys))
    hyp = normalized_tokens(" ".join(w.text for w in words))
    # no sentence dropped: the same number of words, at most one misheard
    assert len(hyp) == len(ref) and sum(a != b for a, b in zip(hyp, ref)) <= 1, hyp
    first_of_last = words[len(normalized_tokens(SENTENCES["chicken"] + " " + SENTENCES["juice"]))]
    assert spans[2][0] - 0.5 <= first_of_last.start <= spans[2][1]  # times are in the recording's clock
    assert all(a.start <= b.start for a, b in zip(words, words[1:]))


def test_timed_words_are_the_plain_text_over_several_windows(tiny, tts):
    """Timing the words changes no word: the segments' texts are those decoded without word times, over
    more than one 30 s window, and each segment's words are its text's words ("cold-hearted" one word)."""
    utterances = [load_audio(tts(v, k)) for v in ["rms", "slt"] for k in SENTENCES]
    gap = np.zeros(SAMPLE_RATE // 2, np.float32)
    wave = np.concatenate([x for u in utterances for x in (u, gap)])
    assert wave.size > 35 * SAMPLE_RATE
    plain = tiny.transcribe(wave, words=False)
    timed = tiny.transcribe(wave)
    assert [s.text for s in timed] == [s.text for s in plain] and len(timed) > 1
    for s in timed:
        assert " ".join(w.text for w in s.words) == " ".join(s.text.split())
        assert all(s.start - 0.01 <= w.start <= w.end <= s.end + 0.01 for w in s.words)


def test_pieces_without_a_leading_space_continue_the_word():
    from faster_whisper.transcribe import Word as Piece

    from speakerlm.pretrained.fast_whisper import _whole_words

    pieces = [Piece(0.0, 0.4, " cold", 0.9), Piece(0.4, 0.7, "-hearted", 0.9), Piece(0.8, 1.0, " o", 0.9),
              Piece(1.0, 1.3, "'clock.", 0.9)]
    assert [(w.text, w.start, w.end) for w in _whole_words(pieces, 10.0)] == [("cold-hearted", 10.0, 10.7),
                                                                              ("o'clock.", 10.8, 11.3)]


def test_silence_gives_no_segments(tiny):
    assert tiny.transcribe(np.zeros(5 * SAMPLE_RATE, np.float32)) == []


@pytest.mark.slow
def test_base_is_joined_once_from_its_two_packages(tts):
    folder = ct2_dir("base")
    stamp = (folder / "model.bin").stat().st_mtime_ns
    assert ct2_dir("base") == folder and (folder / "model.bin").stat().st_mtime_ns == stamp
    base = FastWhisper("base")
    assert base.multilingual
    text = " ".join(s.text for s in base.transcribe(load_audio(tts("rms", "glue")), language="en"))
    assert normalized_tokens(text) == normalized_tokens(SENTENCES["glue"])


def test_local_hugging_face_whisper_folder_is_converted(tmp_path, monkeypatch):
    """A (tiny, random) Hugging Face Whisper folder: converted by CTranslate2 into the cache once, then
    decoded; its words are noise, but the path a larger local model takes is the same."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from speakerlm.pretrained.ct2 import read_ct2
    from speakerlm.pretrained.whisper import whisper_dir

    monkeypatch.setenv("SPEAKERLM_CACHE", str(tmp_path / "cache"))
    real = whisper_dir("tiny.en")
    config = WhisperConfig.from_pretrained(real)
    for key in ("d_model", "encoder_ffn_dim", "decoder_ffn_dim"):
        setattr(config, key, 64 if key == "d_model" else 128)
    config.encoder_layers = config.decoder_layers = 1
    config.encoder_attention_heads = config.decoder_attention_heads = 2
    folder = tmp_path / "tiny-random-whisper"
    WhisperForConditionalGeneration(config).save_pretrained(folder)
    for name in ("tokenizer.json", "generation_config.json"):
        (folder / name).write_bytes((real / name).read_bytes())
    converted = ct2_dir(str(folder))
    assert (converted / "model.bin").exists() and converted.is_relative_to(tmp_path / "cache")
    stamp = (converted / "model.bin").stat().st_mtime_ns
    model = FastWhisper(str(folder))  # converted once: the second look-up finds the same file
    assert (converted / "model.bin").stat().st_mtime_ns == stamp and not model.multilingual  # tiny.en's vocabulary
    _, variables = read_ct2(converted / "model.bin")  # the weights faster-whisper runs are the folder's
    hf = WhisperForConditionalGeneration.from_pretrained(folder).model.decoder.embed_tokens.weight.detach().numpy()
    assert np.allclose(variables["decoder/embeddings/weight"].astype(np.float32), hf, atol=1e-6)
    wave = np.random.default_rng(0).normal(0, 0.1, 3 * SAMPLE_RATE).astype(np.float32)
    model.transcribe(wave, num_beams=1, vad=False, words=False)  # decodes (noise, from random weights)


def test_blocks_end_in_the_quietest_stretch_before_the_block_length():
    from speakerlm.pretrained.fast_whisper import BLOCK_SECONDS, block_end

    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(int(3 * BLOCK_SECONDS * SAMPLE_RATE))).astype(np.float32)
    pause = int((BLOCK_SECONDS - 7.0) * SAMPLE_RATE)
    wave[pause : pause + SAMPLE_RATE // 2] = 0.0  # a half-second pause 7 s before the block length
    assert pause <= block_end(wave, 0) < pause + SAMPLE_RATE // 2
    assert block_end(wave, wave.size - int(1.1 * BLOCK_SECONDS * SAMPLE_RATE)) == wave.size  # the last block runs to the end


def test_english_only_whisper_refuses_another_language():
    """faster-whisper would quietly write English for French speech with tiny.en; the engines refuse it."""
    from speakerlm.errors import UserError

    with pytest.raises(UserError, match="English-only.*--whisper base"):
        FastWhisper("tiny.en", language="fr")
    assert not FastWhisper("tiny.en", language=None).multilingual  # detect: allowed, English is all it knows


def test_temperature_fallback_is_seeded_so_a_run_gives_the_same_text(tts, tmp_path):
    """Two voices at once: Whisper's log-probability check fails and faster-whisper falls back to
    sampling (four decodings in one process differ), and two runs give the same four texts."""
    import subprocess
    import sys

    voices = [load_audio(tts(v, k)) for v, k in zip(["slt", "awb"], ["juice", "rice"])]
    n = max(v.size for v in voices)
    np.save(tmp_path / "wave.npy", np.tile(sum(np.pad(v, (0, n - v.size)) for v in voices).astype(np.float32), 3))
    script = ("import sys, numpy as np; from speakerlm.pretrained.fast_whisper import FastWhisper; "
              "m = FastWhisper('tiny.en'); w = np.load(sys.argv[1]); "
              "print([' | '.join(s.text for s in m.transcribe(w)) for _ in range(4)])")

    def run():
        return subprocess.run([sys.executable, "-c", script, str(tmp_path / "wave.npy")], capture_output=True,
                              text=True, check=True).stdout

    first = run()
    assert len(set(eval(first))) > 1
    assert run() == first


def test_piecewise_features_are_the_library_features():
    from faster_whisper.feature_extractor import FeatureExtractor

    from speakerlm.pretrained.fast_whisper import FEATURE_PIECE_FRAMES, _piecewise_features

    rng = np.random.default_rng(0)
    for seconds in (0.3, 7.1, 2.5 * FEATURE_PIECE_FRAMES / 100):
        wave = (0.1 * rng.normal(size=int(seconds * SAMPLE_RATE))).astype(np.float32)
        expected, got = FeatureExtractor()(wave), _piecewise_features()()(wave)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


def test_vad_in_small_batches_gives_the_same_probabilities(tiny, tts, monkeypatch):
    from faster_whisper.vad import get_vad_model

    from speakerlm.pretrained import fast_whisper

    model = get_vad_model()
    assert isinstance(model.session, fast_whisper._BatchedVadSession)  # FastWhisper installed it
    wave = np.concatenate([load_audio(tts(v, "juice")) for v in ("rms", "slt", "awb")])
    wave = np.pad(wave, (0, 512 - wave.size % 512))
    monkeypatch.setattr(fast_whisper, "VAD_BATCH_WINDOWS", 7)
    batched = model(wave)
    monkeypatch.setattr(model, "session", model.session.session)  # the library's one call
    whole = model(wave)
    assert batched.shape == whole.shape and len(whole) > 7 * 3
    np.testing.assert_allclose(batched, whole, atol=1e-6)
