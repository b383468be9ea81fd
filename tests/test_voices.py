"""Voices: ids and persons, trimmed synthesis, sox transforms, cached utterances, similarity logic."""

from pathlib import Path

import numpy as np
import pytest

from speakerlm.audio import SAMPLE_RATE
from speakerlm.data.voices import (SPLIT_LINK, TRIM_FRAME, Similarity, Voice, VoiceBank, assign_splits, default_voices,
                              recording_set, similarity_matrix, trim)

TEXT = "The birch canoe slid on the smooth planks."


def test_engine_duplicates_are_one_person_and_transforms_are_new_ones():
    kal_flite, kal_festival = Voice("flite", "kal16", "kal"), Voice("festival", "kal_diphone", "kal")
    assert kal_flite.person == kal_festival.person and kal_flite.id != kal_festival.id
    shifted = Voice("flite", "kal16", "kal", pitch=200, tempo=0.92, tilt="warm")
    assert shifted.person == "kal.p+200" and shifted.id == "flite-kal16.p+200.t0.92.warm"
    assert Voice.from_dict(shifted.to_dict()) == shifted
    assert Voice("flite", "kal16", "kal", pitch=200).person == shifted.person  # tempo and tilt: same person


def test_default_voices_are_many_unique_and_split_by_person():
    voices = default_voices()
    assert len({v.id for v in voices}) == len(voices)
    assert len({v.person for v in voices}) >= 200
    assert {v.hash_split for v in voices} == {"train", "dev", "test"}


def test_synthesis_is_trimmed_16k_speech():
    wave = Voice("flite", "slt", "slt").synthesize(TEXT)
    assert wave.dtype == np.float32 and 1.5 < wave.size / SAMPLE_RATE < 4.0
    frames = wave[: wave.size // TRIM_FRAME * TRIM_FRAME].reshape(-1, TRIM_FRAME)
    rms = np.sqrt((frames**2).mean(axis=1))
    assert rms[0] > rms.max() * 0.01 and rms[-1] > rms.max() * 0.01  # no silence left at either end


def test_sox_transform_changes_pitch_and_keeps_length():
    plain = Voice("flite", "rms", "rms").synthesize(TEXT)
    up = Voice("flite", "rms", "rms", pitch=700).synthesize(TEXT)
    slow = Voice("flite", "rms", "rms", tempo=0.8).synthesize(TEXT)
    assert abs(up.size - plain.size) / plain.size < 0.05  # sox pitch keeps the tempo
    assert slow.size / plain.size == pytest.approx(1 / 0.8, rel=0.05)

    assert median_f0(up) / median_f0(plain) == pytest.approx(2 ** (700 / 1200), rel=0.15)


def median_f0(wave: np.ndarray) -> float:
    """Median autocorrelation pitch (60–500 Hz) over the loudest 40 ms frames."""
    n = SAMPLE_RATE * 40 // 1000
    frames = wave[: wave.size // n * n].reshape(-1, n)
    loud = frames[np.sqrt((frames**2).mean(axis=1)) > 0.3 * np.sqrt((frames**2).mean(axis=1)).max()]
    lags = np.arange(SAMPLE_RATE // 500, SAMPLE_RATE // 60)
    f0 = []
    for f in loud:
        ac = np.correlate(f, f, "full")[n - 1 :]
        f0.append(SAMPLE_RATE / lags[np.argmax(ac[lags])])
    return float(np.median(f0))


def test_trim_removes_silence_only():
    tone = np.sin(np.arange(SAMPLE_RATE) / 5).astype(np.float32)
    padded = np.concatenate([np.zeros(8000, np.float32), tone, np.zeros(4000, np.float32)])
    assert trim(padded).size == pytest.approx(tone.size, abs=2 * TRIM_FRAME)


def test_bank_caches_utterances_on_disk(tmp_path):
    voice = Voice("flite", "awb", "awb")
    bank = VoiceBank(tmp_path, [voice])
    first = bank.utterance(voice, TEXT)
    files = list(tmp_path.rglob("*.wav"))
    assert len(files) == 1
    files[0].write_bytes(files[0].read_bytes())  # the cache is read, not re-synthesised
    assert np.array_equal(bank.utterance(voice, TEXT), first)


def test_recordings_come_with_transcripts():
    cards = recording_set("cards")
    if not cards:
        pytest.skip("pocketsphinx-testdata not installed")
    voice = Voice("recording", "cards", "pocketsphinx-cards")
    text = next(iter(cards))
    assert voice.texts() == list(cards) and voice.synthesize(text).size > SAMPLE_RATE // 2


def test_similarity_is_mean_pairwise_cosine_and_greedy_set_respects_threshold():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 8))
    centres[2] = centres[1] + 0.05 * rng.standard_normal(8)  # voice c sounds like voice b
    emb = {}
    for name, c in zip("abc", centres):
        e = c + 0.1 * rng.standard_normal((4, 8))
        emb[name] = e / np.linalg.norm(e, axis=1, keepdims=True)
    sim = similarity_matrix(emb)
    assert sim.cross[0, 1] == pytest.approx(np.mean(emb["a"] @ emb["b"].T), abs=1e-5)
    assert sim.self_cosine[0] == pytest.approx(np.mean((emb["a"] @ emb["a"].T)[~np.eye(4, dtype=bool)]), abs=1e-5)
    voices = [Voice("espeak", f"en-us+{n}", n) for n in "abc"]
    bank = VoiceBank("/nonexistent", voices, Similarity([v.id for v in voices], sim.cross, sim.self_cosine))
    chosen = bank.greedy_distinct(0.9)
    assert len(chosen) == 2 and not {voices[1], voices[2]} <= set(chosen)


def test_voices_as_alike_as_one_voice_share_a_split():
    voices = [Voice("espeak", f"en-us+v{i}", f"v{i}") for i in range(40)]
    cross = np.full((40, 40), 0.2, dtype=np.float32)
    np.fill_diagonal(cross, 1.0)
    for chain in (range(0, 12), range(20, 24)):  # two chains of look-alikes
        for a, b in zip(chain, list(chain)[1:]):
            cross[a, b] = cross[b, a] = SPLIT_LINK + 0.01
    splits = assign_splits(voices, Similarity([v.id for v in voices], cross, np.ones(40)), (0.8, 0.1, 0.1))
    assert len({splits[f"v{i}"] for i in range(12)}) == 1 and len({splits[f"v{i}"] for i in range(20, 24)}) == 1
    counts = {s: list(splits.values()).count(s) for s in ("train", "dev", "test")}
    assert counts["dev"] >= 3 and counts["test"] >= 3 and counts["train"] >= 28
    bank = VoiceBank("/nonexistent", voices, None, splits)
    assert {bank.split_of(v) for v in bank.split("dev")} == {"dev"}


def test_real_recordings_are_never_in_the_training_split():
    voices = [Voice("recording", name, f"pocketsphinx-{name}") for name in ("cards", "librivox")]
    voices += [Voice("flite", "slt", "slt")]
    bank = VoiceBank(Path("/nonexistent"), voices, splits={v.person: "train" for v in voices})
    assert [v.base for v in bank.split("train")] == ["slt"]
    assert {v.base for v in bank.split("dev")} == {"cards", "librivox"}
