"""The simulator: references match the audio, overlap on target, enrolment clean, splits disjoint,
seeded, resumable, and the CLI writes every promised file. A tiny bank of flite voices keeps it fast."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import itertools
import json
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf

from speakerlm.audio import SAMPLE_RATE
from speakerlm.plots import plot_timeline
from speakerlm.data.simulate import (ConversationSimulator, SimulationConfig, add_simulate_parser,
                                overlap_ratio, simulate, speech_and_overlap)
from speakerlm.data.texts import TextPool
from speakerlm.data.voices import Voice, VoiceBank, build_voice_bank
from speakerlm.turns import Turn

ADJECTIVES = ("small", "old", "green", "quiet", "heavy", "bright")
NOUNS = ("dog", "boat", "lamp", "garden", "teacher", "river")
VERBS = ("found", "painted", "moved", "watched", "carried")
CLEAN = SimulationConfig(speakers=(2, 3), duration=(12.0, 14.0), noise_prob=0.0, reverb_prob=0.0,
                         max_cross_cosine=0.95, distractors=4)


def make_sentences() -> list[str]:
    """90 distinct short sentences, e.g. "The small dog found the old boat."."""
    combos = itertools.product(ADJECTIVES, NOUNS, VERBS, ADJECTIVES[::-1], NOUNS[::-1])
    return [f"The {a} {n} {v} the {b} {m}." for a, n, v, b, m in itertools.islice(combos, 0, 900, 10)]


def tiny_voices() -> list[Voice]:
    """Nine flite pseudo-speakers: four recorded speakers, some pitch-shifted by sox."""
    return [Voice("flite", base, base, pitch) for base, pitch in (
        ("rms", 0), ("slt", 0), ("awb", 0), ("kal16", 0), ("rms", -500), ("slt", -500), ("awb", 500),
        ("kal16", 500), ("rms", 500))]


@pytest.fixture(scope="session")
def texts() -> TextPool:
    sentences = make_sentences()
    return TextPool({"train": sentences[:50], "dev": sentences[50:70], "test": sentences[70:]})


@pytest.fixture(scope="session")
def bank(tmp_path_factory) -> VoiceBank:
    probes = ("Glue the sheet to the dark blue background.", "It is easy to tell the depth of a well.")
    return build_voice_bank(tmp_path_factory.mktemp("bank"), tiny_voices(), probes=probes,
                            split_fractions=(1 / 3, 1 / 3, 1 / 3), progress=False)


@pytest.fixture(scope="session")
def clean_clips(bank, texts):
    sim = ConversationSimulator(bank, texts, CLEAN, "train", seed=1)
    return sim, [sim.conversation(i) for i in range(4)]


def test_tiny_bank_has_voices_in_every_split(bank):
    assert all(len(bank.split(s)) >= 2 for s in ("train", "dev", "test"))
    assert sum(len(bank.split(s)) for s in ("train", "dev", "test")) == len(bank.voices)


def test_supervisions_point_at_the_utterances_in_the_audio(clean_clips):
    sim, clips = clean_clips
    for conv in clips:
        audio = conv.audio
        active = np.zeros(audio.size, dtype=bool)
        for s in conv.supervisions:
            a, b = round(s.start * SAMPLE_RATE), round(s.end * SAMPLE_RATE)
            active[a:b] = True
            # the utterance's own edges are speech (TTS silence was trimmed before placement)
            assert np.sqrt(np.mean(audio[a : a + 320] ** 2)) > 1e-3, (conv.id, s)
            assert np.sqrt(np.mean(audio[b - 320 : b] ** 2)) > 1e-3, (conv.id, s)
        assert np.abs(audio[~active]).max() < 1e-4  # clean config: silence outside every supervision
        for s in conv.supervisions:  # a turn nobody overlaps is exactly its (scaled) utterance
            others = [o for o in conv.supervisions if o is not s and o.start < s.end and o.end > s.start]
            if others:
                continue
            voice = sim.bank.by_id()[s.speaker]
            utt = sim.bank.utterance(voice, s.text)
            seg = audio[round(s.start * SAMPLE_RATE) :][: utt.size]
            assert np.corrcoef(seg, utt)[0, 1] > 0.99, (conv.id, s)


def test_clip_lengths_and_speakers_follow_the_config(clean_clips):
    _, clips = clean_clips
    for conv in clips:
        assert 12.0 <= conv.duration <= 14.0 + 1e-3
        assert 2 <= len(conv.speakers) <= 3 and set(conv.speakers) == {s.speaker for s in conv.supervisions}
        assert all(0 <= s.start and s.end <= conv.duration for s in conv.supervisions)
        persons = [s.person for s in conv.supervisions]
        assert len(set(persons)) == len(conv.speakers)


@pytest.mark.parametrize("target", [0.0, 0.2])
def test_measured_overlap_is_near_the_target(bank, texts, target):
    config = SimulationConfig(speakers=(2, 3), duration=(20.0, 20.0), overlap=target, noise_prob=0.0,
                              reverb_prob=0.0, max_cross_cosine=0.95)
    sim = ConversationSimulator(bank, texts, config, "train", seed=3)
    ratios = []
    for i in range(5):
        conv = sim.conversation(i)
        ratios.append(overlap_ratio(conv.supervisions))
        assert conv.info["overlap_ratio"] == pytest.approx(ratios[-1], abs=1e-3)
        assert np.allclose(ratios[-1], target, atol=0.1), ratios
    assert abs(np.mean(ratios) - target) < 0.04, ratios


def test_speech_and_overlap_counts_time_not_pairs():
    assert speech_and_overlap([(0, 2), (1, 3)]) == (3, 1)
    assert speech_and_overlap([(0, 1), (2, 3)]) == (2, 0)
    turns = [Turn("x", "t", 0.0, 4.0), Turn("y", "t", 3.0, 5.0)]
    assert overlap_ratio(turns) == pytest.approx(1 / 5)


def test_enrolment_uses_other_sentences_of_the_same_voice(clean_clips):
    sim, clips = clean_clips
    for conv in clips:
        clip_texts = {s.text for s in conv.supervisions}
        for voice_id, wave in conv.enrolment.items():
            assert not clip_texts & set(conv.enrolment_texts[voice_id])
            assert 2.0 <= wave.size / SAMPLE_RATE <= 10.0
            first = sim.bank.utterance(sim.bank.by_id()[voice_id], conv.enrolment_texts[voice_id][0])
            assert np.corrcoef(wave[: first.size], first)[0, 1] > 0.99
        speakers = {sim.bank.by_id()[v].person for v in conv.speakers}
        assert not speakers & {sim.bank.by_id()[d].person for d in conv.distractors}
        assert len(conv.distractors) == min(CLEAN.distractors, len(sim.voices) - len(speakers))


def test_conversation_voices_are_mutually_distinct_by_measurement(bank, texts):
    train = bank.split("train")
    crosses = sorted(bank.cross(a, b) for a, b in itertools.combinations(train, 2))
    threshold = (crosses[0] + crosses[-1]) / 2  # some train pairs allowed, some not
    config = SimulationConfig(speakers=(2, 2), duration=(6.0, 6.0), noise_prob=0, reverb_prob=0,
                              max_cross_cosine=threshold)
    sim = ConversationSimulator(bank, texts, config, "train", 0)
    for i in range(6):
        voices = [bank.by_id()[v] for v in sim.conversation(i).speakers]
        assert all(bank.cross(a, b) < threshold for a, b in itertools.combinations(voices, 2))


def test_splits_are_disjoint_in_voices_and_sentences(bank, texts):
    seen = {}
    for split in ("train", "dev", "test"):
        sim = ConversationSimulator(bank, texts, CLEAN, split, seed=0)
        clips = [sim.conversation(i) for i in range(2)]
        persons = {s.person for c in clips for s in c.supervisions}
        sentences = {s.text for c in clips for s in c.supervisions if not s.backchannel}
        sentences |= {t for c in clips for ts in c.enrolment_texts.values() for t in ts}
        assert sentences <= set(texts.split(split))
        assert persons <= {v.person for v in bank.split(split)}
        seen[split] = (persons, sentences)
    for a, b in itertools.combinations(seen, 2):
        assert not seen[a][0] & seen[b][0] and not seen[a][1] & seen[b][1], (a, b)


def test_same_seed_same_conversation_other_seed_another(bank, texts):
    config = SimulationConfig(speakers=(2, 3), duration=(8.0, 10.0), noise_prob=1.0, reverb_prob=1.0,
                              max_cross_cosine=0.95, distractors=3)
    a = ConversationSimulator(bank, texts, config, "train", seed=5).conversation(2)
    b = ConversationSimulator(bank, texts, config, "train", seed=5).conversation(2)
    c = ConversationSimulator(bank, texts, config, "train", seed=6).conversation(2)
    assert np.array_equal(a.audio, b.audio) and a.supervisions == b.supervisions and a.info == b.info
    assert a.distractors == b.distractors and a.enrolment_texts == b.enrolment_texts
    assert not (a.audio.size == c.audio.size and np.array_equal(a.audio, c.audio))
    assert a.info["noise"] is not None and a.info["rt60"] is not None


def _digest(path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def test_resume_regenerates_only_the_missing_conversation(bank, texts, tmp_path):
    sim = ConversationSimulator(bank, texts, CLEAN, "dev", seed=2)
    simulate(tmp_path, sim, 3, progress=False)
    ids = [sim.conversation_id(i) for i in range(3)]
    before = {i: (tmp_path / "audio" / f"{i}.wav").stat().st_mtime_ns for i in ids}
    digest = _digest(tmp_path / "audio" / f"{ids[1]}.wav")
    manifest = _digest(tmp_path / "supervisions.jsonl.gz")
    (tmp_path / "conversations" / f"{ids[1]}.json").unlink()
    (tmp_path / "audio" / f"{ids[1]}.wav").unlink()
    simulate(tmp_path, sim, 3, progress=False)
    after = {i: (tmp_path / "audio" / f"{i}.wav").stat().st_mtime_ns for i in ids}
    assert after[ids[0]] == before[ids[0]] and after[ids[2]] == before[ids[2]]
    assert _digest(tmp_path / "audio" / f"{ids[1]}.wav") == digest
    assert (tmp_path / "supervisions.jsonl.gz").exists()
    from lhotse import load_manifest

    assert len(load_manifest(tmp_path / "supervisions.jsonl.gz")) > 0 and manifest  # reassembled
    with pytest.raises(Exception, match="other settings"):
        simulate(tmp_path, ConversationSimulator(bank, texts, CLEAN, "dev", seed=3), 3, progress=False)


def test_cli_writes_every_promised_file(bank, tmp_path):
    (tmp_path / "sentences.txt").write_text("\n".join(make_sentences()) + "\n")
    parser = argparse.ArgumentParser()
    add_simulate_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "out"
    args = parser.parse_args(["simulate", "--out", str(out), "--conversations", "2", "--speakers", "2-3",
                              "--duration", "8-9", "--overlap", "0.1", "--seed", "4", "--split", "train",
                              "--bank", str(bank.root), "--texts", str(tmp_path / "sentences.txt"),
                              "--max-cross-cosine", "0.95", "--distractors", "3", "--workers", "1"])
    args.func(args)
    from lhotse import load_manifest
    from meeteval.io import STM, SegLST  # SegLST.load needs simplejson, which is not installed here

    recordings = load_manifest(out / "recordings.jsonl.gz")
    supervisions = load_manifest(out / "supervisions.jsonl.gz")
    assert len(recordings) == 2 and len(supervisions) >= 4
    for rec in recordings:
        wave = rec.load_audio()
        assert rec.sampling_rate == SAMPLE_RATE and wave.shape == (1, rec.num_samples)
        assert sf.info(rec.sources[0].source).samplerate == SAMPLE_RATE
    sup = next(iter(supervisions))
    assert sup.speaker and sup.text and sup.duration > 0 and sup.custom["person"]
    seglst = SegLST(json.loads((out / "references.seglst.json").read_text()))
    assert len(seglst) == len(supervisions)
    assert len(STM.load(out / "references.stm").lines) == len(supervisions)
    rttm = (out / "references.rttm").read_text().splitlines()
    assert len(rttm) == len(supervisions) and all(line.startswith("SPEAKER ") for line in rttm)
    enrolment = json.loads((out / "enrolment.json").read_text())
    assert set(enrolment) == {r.id for r in recordings}
    for entry in enrolment.values():
        for spk in entry["speakers"].values():
            assert sf.info(out / spk["path"]).duration >= 2.0
        assert all((out / d["path"]).exists() for d in entry["distractors"])
    assert (out / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "simulation.json").read_text())["conversations"] == 2


def test_plot_timeline_writes_a_png(clean_clips, tmp_path):
    path = plot_timeline(clean_clips[1][0].supervisions, tmp_path / "t.png")
    assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 5000


def test_bad_config_is_refused():
    from speakerlm.errors import UserError

    with pytest.raises(UserError):
        SimulationConfig(speakers=(3, 2))
    with pytest.raises(UserError):
        SimulationConfig(noise_types=("pink", "traffic"))


def test_parallel_workers_write_the_same_files_as_one_process(bank, texts, tmp_path):
    sim = ConversationSimulator(bank, texts, CLEAN, "test", seed=7)
    simulate(tmp_path / "one", sim, 3, workers=1, progress=False)
    simulate(tmp_path / "two", sim, 3, workers=2, progress=False)
    for name in ("references.seglst.json", "references.stm", "enrolment.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    one, two = (gzip.decompress((tmp_path / d / "supervisions.jsonl.gz").read_bytes()) for d in ("one", "two"))
    assert one == two
    for wav in (tmp_path / "one" / "audio").glob("*.wav"):
        assert _digest(wav) == _digest(tmp_path / "two" / "audio" / wav.name)


@pytest.mark.parametrize("channel", ["telephone", "muffled", "clipped"])
def test_degraded_channels_change_the_sound_not_the_timing(channel):
    from speakerlm.data.simulate import degrade

    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(2 * SAMPLE_RATE)).astype(np.float32)
    out = degrade(wave, channel)
    assert out.shape == wave.shape and out.dtype == np.float32 and np.isfinite(out).all()
    spectrum = lambda x: np.abs(np.fft.rfft(x)) ** 2  # noqa: E731
    f = np.fft.rfftfreq(wave.size, 1 / SAMPLE_RATE)
    high = lambda x: spectrum(x)[f > 4500].sum() / spectrum(x).sum()  # noqa: E731
    if channel == "clipped":
        assert np.abs(out).max() <= 0.5 and np.mean(np.abs(out) == 0.5) > 0.05
    else:  # band-limited: little energy left above 4.5 kHz (white noise has half of it there)
        assert high(wave) > 0.4 and high(out) < 0.02


def test_channel_off_keeps_the_clips_of_a_preset(bank, texts):
    """A config with channel_prob 0 draws no channel, so existing presets' clips are unchanged."""
    base = ConversationSimulator(bank, texts, CLEAN, "train", seed=3).conversation(0)
    again = ConversationSimulator(bank, texts, replace(CLEAN, channel_prob=0.0),
                                  "train", seed=3).conversation(0)
    assert np.array_equal(base.audio, again.audio) and "channel" not in base.info
    degraded = ConversationSimulator(bank, texts, replace(CLEAN, channel_prob=1.0),
                                     "train", seed=3).conversation(0)
    assert degraded.info["channel"] in ("telephone", "muffled", "clipped")
    assert [s.text for s in degraded.supervisions] == [s.text for s in base.supervisions]


def test_meeting_talk_is_its_own_source():
    from speakerlm.data.texts import load_text_pool, meeting_pool, meeting_sentences, normalise

    talk = meeting_sentences(500)
    assert talk == meeting_sentences(500) and len(set(talk)) == 500
    pool = meeting_pool(500)
    assert pool.split("train") == pool.split("dev") == talk  # one source for the held-out presets
    assert all(s[0].isupper() and s[-1] in ".?" for s in talk)
    built_in = {normalise(s) for s in load_text_pool().split("train")}
    assert not built_in & {normalise(s) for s in talk}


def test_held_out_voices_are_a_neural_engine_and_a_real_reader():
    from speakerlm.data.voices import VOICE_SETS, default_voices, held_out_voices

    voices = held_out_voices()
    assert {v.engine for v in voices} == {"piper", "recording"}
    assert not {v.engine for v in default_voices()} & {"piper"}
    assert VOICE_SETS["held-out"][2] == (0.0, 1.0, 0.0)  # never in a train split
    speech = voices[0].synthesize("Can we move the budget review to Thursday?")
    assert speech.dtype == np.float32 and 1.5 < speech.size / SAMPLE_RATE < 5 and np.abs(speech).max() > 0.5


def test_many_recurring_voices_in_one_long_recording(tmp_path, texts):
    """Long-form presets put up to 16 voices in one recording, each speaking again and again."""
    with pytest.raises(Exception, match="1 ≤ min ≤ max ≤ 16"):
        SimulationConfig(speakers=(6, 17))
    probes = ("Glue the sheet to the dark blue background.",)
    one_split = build_voice_bank(tmp_path / "bank", tiny_voices(), probes=probes, split_fractions=(1.0, 0.0, 0.0),
                                 progress=False)
    config = replace(CLEAN, speakers=(9, 9), duration=(70.0, 70.0), max_cross_cosine=1.01)
    conv = ConversationSimulator(one_split, texts, config, "train", seed=2).conversation(0)
    turns_of = {s: sum(t.speaker == s for t in conv.supervisions) for s in conv.speakers}
    assert len(turns_of) == 9 and min(turns_of.values()) >= 2, turns_of


def test_speaker_count_figure_is_written(tmp_path):
    from speakerlm.plots import plot_speaker_counts

    out = plot_speaker_counts({"before": [(6, 2), (9, 3)], "default": [(6, 6), (9, 8)]}, tmp_path / "counts.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
