"""Evaluation data: every reference format loads into the same `EvalClip`s, and enrolment never leaks."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speakerlm.audio import SAMPLE_RATE, load_audio
from speakerlm.data.datasets import (AudioSpan, EvalClip, complete_enrolment, detect_format, load_dataset,
                                split_clip)
from speakerlm.errors import UserError
from tests.conftest import write_wave
from speakerlm.turns import Turn

VOICES = {"Alice": "rms", "Bob": "slt", "Carol": "awb"}
SCRIPT = {  # clip id → (speaker, sentence) in order; c1 has 2 speakers, c2 has 3
    "c1": [("Alice", "glue"), ("Bob", "canoe"), ("Alice", "rice")],
    "c2": [("Bob", "well"), ("Carol", "chicken"), ("Alice", "juice")],
}
ENROL_SENTENCE = {"Alice": "chicken", "Bob": "glue", "Carol": "rice"}
GAP = 0.3  # seconds of silence around every turn


@dataclass
class Corpus:
    root: Path
    audio: dict[str, Path]  # clip id → wav
    turns: dict[str, list[Turn]]  # clip id → reference
    enrol: dict[str, Path]  # speaker → enrolment wav (other sentences than in the clips)


def make_corpus(tts, root: Path) -> Corpus:
    """Two conversations made of flite sentences, their references, and enrolment clips."""
    (root / "audio").mkdir(parents=True)
    (root / "enrol").mkdir()
    audio, turns = {}, {}
    for clip, lines in SCRIPT.items():
        pieces, clip_turns, t = [], [], GAP
        pieces.append(np.zeros(int(GAP * SAMPLE_RATE), np.float32))
        for speaker, key in lines:
            wave = load_audio(tts(VOICES[speaker], key))
            from tests.conftest import SENTENCES

            clip_turns.append(Turn(speaker, SENTENCES[key], round(t, 3), round(t + wave.size / SAMPLE_RATE, 3)))
            pieces += [wave, np.zeros(int(GAP * SAMPLE_RATE), np.float32)]
            t += wave.size / SAMPLE_RATE + GAP
        audio[clip] = root / "audio" / f"{clip}.wav"
        sf.write(str(audio[clip]), np.concatenate(pieces), SAMPLE_RATE)
        turns[clip] = clip_turns
    enrol = {}
    for speaker, key in ENROL_SENTENCE.items():
        enrol[speaker] = root / "enrol" / f"{speaker.lower()}.wav"
        sf.write(str(enrol[speaker]), load_audio(tts(VOICES[speaker], key)), SAMPLE_RATE)
    return Corpus(root, audio, turns, enrol)


def write_lhotse(c: Corpus, folder: Path) -> Path:
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

    folder.mkdir(parents=True, exist_ok=True)
    RecordingSet.from_recordings(Recording.from_file(c.audio[k], recording_id=k) for k in c.audio).to_file(
        folder / "recordings.jsonl.gz")
    SupervisionSet.from_segments(
        SupervisionSegment(f"{k}-{i}", k, t.start, round(t.end - t.start, 3), channel=0, text=t.text, speaker=t.speaker)
        for k, ts in c.turns.items() for i, t in enumerate(ts)
    ).to_file(folder / "supervisions.jsonl.gz")
    return folder


def write_stm(c: Corpus, path: Path, speakers: bool = True) -> Path:
    lines = [";; a comment line", "c1 1 inter_segment_gap 0.000 0.300 ignore_time_segment_in_scoring"]
    for k, ts in c.turns.items():
        for t in ts:
            lines.append(f"{k} 1 {t.speaker if speakers else 'unknown'} {t.start:.3f} {t.end:.3f} <o,f0,male> {t.text}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_seglst(c: Corpus, path: Path) -> Path:
    segs = [{"session_id": k, "speaker": t.speaker, "start_time": t.start, "end_time": t.end, "words": t.text}
            for k, ts in c.turns.items() for t in ts]
    path.write_text(json.dumps(segs))
    return path


def write_rttm(c: Corpus, path: Path) -> Path:
    path.write_text("".join(f"SPEAKER {k} 1 {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> {t.speaker} <NA> <NA>\n"
                            for k, ts in c.turns.items() for t in ts))
    return path


def write_sidecar(c: Corpus, path: Path, distractors: dict[str, list[str]] | None = None) -> Path:
    table = {k: {"enrolment": {s: [str(c.enrol[s].relative_to(path.parent))] for s in {t.speaker for t in ts}},
                 **({"distractors": distractors} if distractors else {})}
             for k, ts in c.turns.items()}
    path.write_text(json.dumps(table))
    return path


@pytest.fixture(scope="module")
def corpus(tts, tmp_path_factory):
    return make_corpus(tts, tmp_path_factory.mktemp("corpus"))


def _references(clips):
    return {c.id: list(c.reference) for c in clips}


# ------------------------------------------------------------------ each format round-trips


def test_lhotse_manifests_round_trip(corpus, tmp_path):
    clips = load_dataset(write_lhotse(corpus, tmp_path / "lhotse"))
    assert [c.id for c in clips] == ["c1", "c2"]
    assert _references(clips) == corpus.turns
    assert clips[0].audio == AudioSpan(corpus.audio["c1"]) and clips[1].speakers == ["Bob", "Carol", "Alice"]
    # the supervisions file alone finds its recordings partner
    assert _references(load_dataset(tmp_path / "lhotse" / "supervisions.jsonl.gz")) == corpus.turns


def test_lhotse_cuts_give_spans_with_relative_times(corpus, tmp_path):
    from lhotse import CutSet, load_manifest

    folder = write_lhotse(corpus, tmp_path / "lhotse")
    cuts = CutSet.from_manifests(load_manifest(folder / "recordings.jsonl.gz"), load_manifest(folder / "supervisions.jsonl.gz"))
    second_half = [cut.truncate(offset=corpus.turns[cut.recording_id][1].start - 0.1) for cut in cuts]
    CutSet.from_cuts(second_half).to_file(tmp_path / "cuts.jsonl.gz")
    clip = next(c for c in load_dataset(tmp_path / "cuts.jsonl.gz") if c.recording == "c1")
    shift = corpus.turns["c1"][1].start - 0.1
    assert clip.audio.path == corpus.audio["c1"] and clip.audio.start == pytest.approx(shift, abs=1e-3)
    expected = [Turn(t.speaker, t.text, round(t.start - shift, 3), round(t.end - shift, 3)) for t in corpus.turns["c1"][1:]]
    assert [(t.speaker, t.text) for t in clip.reference] == [(t.speaker, t.text) for t in expected]
    assert [t.start for t in clip.reference] == pytest.approx([t.start for t in expected], abs=2e-3)
    # the span reads exactly the cut's samples
    assert clip.audio.load().size == pytest.approx(load_audio(corpus.audio["c1"]).size - shift * SAMPLE_RATE, abs=2)


def test_stm_round_trip_skips_comments_labels_and_gaps(corpus, tmp_path):
    stm = write_stm(corpus, tmp_path / "ref.stm")
    clips = load_dataset(stm, audio_dir=corpus.root / "audio")
    assert _references(clips) == corpus.turns


def test_seglst_round_trip(corpus):
    clips = load_dataset(write_seglst(corpus, corpus.root / "audio" / "ref.json"))  # audio found beside it
    assert _references(clips) == corpus.turns


def test_rttm_gives_the_speakers_and_stm_the_words(corpus, tmp_path):
    rttm = write_rttm(corpus, tmp_path / "ref.rttm")
    write_stm(corpus, tmp_path / "ref.stm", speakers=False)  # STM speakers are placeholders
    clips = load_dataset(rttm, audio_dir=corpus.root / "audio")
    assert _references(clips) == corpus.turns
    assert detect_format(tmp_path) == "rttm"


def test_formats_are_detected(corpus, tmp_path):
    assert detect_format(write_lhotse(corpus, tmp_path / "l")) == "lhotse"
    assert detect_format(write_stm(corpus, tmp_path / "x.stm")) == "stm"
    assert detect_format(write_seglst(corpus, tmp_path / "x.json")) == "seglst"
    with pytest.raises(UserError, match="--format"):
        detect_format(tmp_path / "x.txt")


# ------------------------------------------------------------------ clear errors


def test_bad_paths_and_mismatched_ids_are_one_line_user_errors(corpus, tmp_path):
    cases = []
    cases.append((lambda: load_dataset(tmp_path / "nowhere"), "no such file or directory"))
    stm = write_stm(corpus, tmp_path / "ref.stm")
    cases.append((lambda: load_dataset(stm, audio_dir=tmp_path), "no audio for recording 'c1'"))
    rttm = tmp_path / "other.rttm"
    rttm.write_text("SPEAKER zz 1 0.0 1.0 <NA> <NA> A <NA> <NA>\n")
    (tmp_path / "other.stm").write_text(stm.read_text())
    cases.append((lambda: load_dataset(rttm, audio_dir=corpus.root / "audio"), "name different recordings"))
    lone = tmp_path / "lone.rttm"
    lone.write_text(rttm.read_text())
    cases.append((lambda: load_dataset(lone), "no STM next to"))
    bad_stm = tmp_path / "bad.stm"
    bad_stm.write_text("c1 1 Alice zero 1.0 hello\n")
    cases.append((lambda: load_dataset(bad_stm, audio_dir=corpus.root / "audio"), "bad.stm:1: start 'zero'"))
    for load, words in cases:
        with pytest.raises(UserError, match=words) as e:
            load()
        assert "\n" not in str(e.value)


def test_supervision_of_an_unknown_recording_is_refused(corpus, tmp_path):
    import gzip

    folder = write_lhotse(corpus, tmp_path / "l")
    with gzip.open(folder / "supervisions.jsonl.gz", "rt") as f:
        lines = f.read().splitlines()
    lines[0] = lines[0].replace('"recording_id": "c1"', '"recording_id": "c9"')
    with gzip.open(folder / "supervisions.jsonl.gz", "wt") as f:
        f.write("\n".join(lines) + "\n")
    with pytest.raises(UserError, match="names recording 'c9'"):
        load_dataset(folder)


def test_sidecar_errors(corpus, tmp_path):
    folder = write_lhotse(corpus, tmp_path / "l")
    side = tmp_path / "side.json"
    side.write_text(json.dumps({"c1": {"enrolment": {"Carol": [str(corpus.enrol["Carol"])]}}}))
    with pytest.raises(UserError, match="enrols 'Carol', who is not among"):
        load_dataset(folder, enrolment=side)
    side.write_text(json.dumps({"c1": {"enrolment": {"Alice": ["missing.wav"]}}}))
    with pytest.raises(UserError, match="missing.wav for 'Alice' in c1 not found"):
        load_dataset(folder, enrolment=side)
    side.write_text(json.dumps({"c7": {}}))
    with pytest.raises(UserError, match="'c7', which the dataset lacks"):
        load_dataset(folder, enrolment=side)
    with pytest.raises(UserError, match="enrolment file not found"):
        load_dataset(folder, enrolment=tmp_path / "none.json")


# ------------------------------------------------------------------ enrolment


def test_sidecar_enrolment_and_distractors_are_attached(corpus):
    folder = write_lhotse(corpus, corpus.root / "with_sidecar")
    write_sidecar(corpus, corpus.root / "enrolment.json", distractors={"Zed": ["enrol/carol.wav"]})
    try:
        clips = load_dataset(folder, enrolment=corpus.root / "enrolment.json")
    finally:
        (corpus.root / "enrolment.json").unlink()
    c1 = clips[0]
    assert c1.enrolment == {"Alice": (AudioSpan(corpus.enrol["Alice"]),), "Bob": (AudioSpan(corpus.enrol["Bob"]),)}
    assert c1.distractors == {"Zed": (AudioSpan(corpus.enrol["Carol"]),)}


def test_enrolment_cut_from_other_recordings_never_from_the_clip(corpus, tmp_path):
    clips = load_dataset(write_lhotse(corpus, tmp_path / "l"))
    c1, c2 = clips
    # c1's Alice and Bob are enrolled from c2's audio (the only place outside c1 where they talk)
    for speaker in ("Alice", "Bob"):
        spans = c1.enrolment[speaker]
        assert spans and all(s.path == corpus.audio["c2"] for s in spans)
        assert all(not s.overlaps(c1.audio) for s in spans)
        mine = [t for t in corpus.turns["c2"] if t.speaker == speaker]
        assert [(s.start, s.end) for s in spans] == [(t.start, t.end) for t in mine]
    assert "Carol" not in c1.enrolment or not c1.enrolment["Carol"]  # Carol never speaks in c1
    assert "Carol" not in c2.enrolment  # Carol talks only in c2: nothing outside it to enrol from
    assert set(c1.distractors) == {"Carol"} and c2.distractors == {}


def test_recording_scope_never_crosses_recordings(corpus, tmp_path):
    clips = load_dataset(write_lhotse(corpus, tmp_path / "l"), speaker_scope="recording")
    assert all(c.enrolment == {} for c in clips)
    assert set(clips[0].distractors) == {"c2/Alice", "c2/Bob", "c2/Carol"}


def test_windows_of_one_recording_enrol_each_other_without_overlap(corpus, tmp_path):
    clips = load_dataset(write_lhotse(corpus, tmp_path / "l"), clip_seconds=4.0, speaker_scope="recording")
    c1_windows = [c for c in clips if c.recording == "c1"]
    assert len(c1_windows) == 3  # one turn each: every pause is a cut once a window passes 4 s
    first, _, third = c1_windows
    assert first.enrolment["Alice"] == (AudioSpan(corpus.audio["c1"], corpus.turns["c1"][2].start, corpus.turns["c1"][2].end),)
    assert third.enrolment["Alice"][0].overlaps(first.audio) and not third.enrolment["Alice"][0].overlaps(third.audio)
    assert "Bob" not in c1_windows[1].enrolment  # Bob talks only once in c1


def test_overlapped_turns_are_not_used_for_enrolment(tmp_path):
    wav = tmp_path / "r.wav"
    sf.write(str(wav), np.random.default_rng(0).normal(0, 0.1, 12 * SAMPLE_RATE).astype(np.float32), SAMPLE_RATE)
    other = tmp_path / "s.wav"
    sf.write(str(other), np.random.default_rng(1).normal(0, 0.1, 12 * SAMPLE_RATE).astype(np.float32), SAMPLE_RATE)
    clip = EvalClip("a", AudioSpan(wav), (Turn("A", "x", 0.0, 2.0), Turn("B", "y", 1.0, 3.0)), recording="a")
    later = EvalClip("b", AudioSpan(other), (Turn("A", "x", 0.0, 2.0), Turn("B", "y", 1.5, 3.0), Turn("A", "z", 4.0, 6.0)), recording="b")
    done = {c.id: c for c in complete_enrolment([clip, later])}
    assert done["a"].enrolment["A"] == (AudioSpan(other, 4.0, 6.0),)  # b's 0–2 s is talked over by B
    assert "B" not in done["a"].enrolment  # B's b turn overlaps A's, and that's the only one


def test_split_clip_tiles_and_keeps_every_turn(corpus):
    clip = EvalClip("c2", AudioSpan(corpus.audio["c2"]), tuple(corpus.turns["c2"]), recording="c2")
    windows = split_clip(clip, 6.0)
    assert len(windows) == 2 and windows[0].audio.start == 0.0 and windows[-1].audio.end is None
    assert windows[0].audio.end == windows[1].audio.start
    restored = [Turn(t.speaker, t.text, round(t.start + w.audio.start, 3), round(t.end + w.audio.start, 3))
                for w in windows for t in w.reference]
    assert restored == corpus.turns["c2"]
    with pytest.raises(UserError, match="no times"):
        split_clip(EvalClip("u", AudioSpan(corpus.audio["c2"]), (Turn("A", "x"),)), 5.0)


def test_sidecar_enrolment_of_absent_speakers_becomes_the_distractor_pool(corpus, tmp_path):
    folder = write_lhotse(corpus, tmp_path / "l")
    side = tmp_path / "side.json"
    two = [str(corpus.enrol["Carol"]), str(corpus.enrol["Bob"])]  # every file given is kept, whole
    side.write_text(json.dumps({"c2": {"enrolment": {"Carol": two + [str(corpus.audio["c1"])]}}}))
    c1, c2 = load_dataset(folder, enrolment=side)
    assert c1.distractors["Carol"] == tuple(AudioSpan(Path(p)) for p in two)  # but never c1's own audio
    assert len(c2.enrolment["Carol"]) == 3


def test_the_simulator_layout_loads_in_every_format(corpus, tmp_path):
    """speakerlm/data/simulate.py's output: audio/, enrolment/<conv>/<voice>.wav, distractors/<voice>.wav,
    lhotse manifests, references.{stm,rttm,seglst.json} and an enrolment.json of its own form."""
    import shutil

    root = tmp_path / "sim"
    (root / "audio").mkdir(parents=True)
    (root / "distractors").mkdir()
    for k, path in corpus.audio.items():
        shutil.copy(path, root / "audio" / f"{k}.wav")
    table = {}
    for k, turns in corpus.turns.items():
        speakers = {}
        for s in dict.fromkeys(t.speaker for t in turns):
            (root / "enrolment" / k).mkdir(parents=True, exist_ok=True)
            shutil.copy(corpus.enrol[s], root / "enrolment" / k / f"{s}.wav")  # same stems in every conv folder
            speakers[s] = {"path": f"enrolment/{k}/{s}.wav", "texts": ["..."], "duration": 2.5}
        others = [s for s in VOICES if s not in speakers] + ["Dora"]
        for s in others:
            shutil.copy(corpus.enrol.get(s, corpus.enrol["Alice"]), root / "distractors" / f"{s}.wav")
        table[k] = {"audio": f"audio/{k}.wav", "speakers": speakers,
                    "distractors": [{"voice": s, "person": s.lower(), "path": f"distractors/{s}.wav"} for s in others]}
    (root / "enrolment.json").write_text(json.dumps(table))
    (root / "simulation.json").write_text("{}")
    moved = Corpus(root, {k: root / "audio" / f"{k}.wav" for k in corpus.audio}, corpus.turns, corpus.enrol)
    write_lhotse(moved, root)
    write_stm(moved, root / "references.stm")
    write_rttm(moved, root / "references.rttm")
    write_seglst(moved, root / "references.seglst.json")
    for source in (root, root / "references.stm", root / "references.rttm", root / "references.seglst.json"):
        c1, c2 = load_dataset(source)
        assert _references([c1, c2]) == corpus.turns, source
        assert c1.audio.path == root / "audio" / "c1.wav"
        assert c1.enrolment == {s: (AudioSpan(root / "enrolment" / "c1" / f"{s}.wav"),) for s in ("Alice", "Bob")}
        assert sorted(c1.distractors) == ["Carol", "Dora"] and sorted(c2.distractors) == ["Dora"]
        assert c2.distractors["Dora"] == (AudioSpan(root / "distractors" / "Dora.wav"),)
    assert load_dataset(root, format="seglst")[0].reference == c1.reference  # a folder: the *seglst* json is picked


def write_long_meeting(folder: Path, minutes: float = 10.0, seed: int = 0) -> tuple[Path, list]:
    """An AMI-like recipe output: one long meeting (quiet noise as audio), four speakers whose turns
    follow each other with short pauses, overlaps, and a 90 s stretch with no pause at all; every
    word is unique, so where each one lands can be checked."""
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    total = minutes * 60
    wav = write_wave(folder / "ES2002a.Mix-Headset.wav", (rng.standard_normal(int(total * SAMPLE_RATE)) * 0.01).astype(np.float32))
    sups, t, k = [], 0.5, 0
    while t < total - 10:
        length = float(rng.uniform(3, 9))
        words = " ".join(f"w{k + i}" for i in range(int(length * 2.5)))
        k += int(length * 2.5)
        sups.append(SupervisionSegment(f"ES2002a-{len(sups):04d}", "ES2002a", round(t, 3), round(length, 3),
                                       speaker=f"MEE00{len(sups) % 4 + 1}", text=words))
        no_pause = 200 < t < 290
        t += length + (float(rng.uniform(-1.0, -0.2)) if no_pause or rng.random() < 0.3 else float(rng.uniform(0.3, 1.0)))
    RecordingSet.from_recordings([Recording.from_file(wav, recording_id="ES2002a")]).to_file(folder / "ami-ihm-mix_recordings_train.jsonl.gz")
    SupervisionSet.from_segments(sups).to_file(folder / "ami-ihm-mix_supervisions_train.jsonl.gz")
    return folder, sups


def test_long_meeting_is_cut_into_training_segments_with_only_their_words(tmp_path):
    from speakerlm.train import TrainConfig, training_clips

    folder, sups = write_long_meeting(tmp_path / "ami")
    segments = training_clips(folder, TrainConfig())
    lengths = [c.audio.duration() for c in segments]
    assert len(segments) >= 11 and max(lengths) <= 50.0 and sum(x < 40 for x in lengths) <= 2  # only the last two may share a short tail
    assert [c.audio.start for c in segments] == sorted(c.audio.start for c in segments)
    word_turn = {w: s for s in sups for w in s.text.split()}
    seen = [w for c in segments for t in c.reference for w in t.text.split()]
    assert sorted(seen) == sorted(word_turn)  # every word kept, in exactly one segment
    for c in segments:
        a, b = c.audio.start, c.audio.start + c.audio.duration()
        for t in c.reference:
            assert -1e-3 <= t.start <= t.end <= b - a + 1e-3
            for w in t.text.split():  # a word lands only in a segment its turn runs through
                assert word_turn[w].start < b and word_turn[w].end > a
        for speaker in c.speakers:  # enrolment from the same speaker elsewhere in the meeting
            assert c.enrolment[speaker] and not any(span.overlaps(c.audio) for span in c.enrolment[speaker])


def test_long_meeting_lhotse_cut_over_a_turn_keeps_only_the_words_inside(tmp_path):
    from lhotse import CutSet, load_manifest

    folder, sups = write_long_meeting(tmp_path / "ami", minutes=3)
    cuts = CutSet.from_manifests(load_manifest(folder / "ami-ihm-mix_recordings_train.jsonl.gz"),
                                 load_manifest(folder / "ami-ihm-mix_supervisions_train.jsonl.gz"))
    middle = sups[5]
    offset = (middle.start + middle.end) / 2  # the cut starts inside a turn
    CutSet.from_cuts([c.truncate(offset=offset, duration=45.0) for c in cuts]).to_file(tmp_path / "cuts.jsonl.gz")
    clip = load_dataset(tmp_path / "cuts.jsonl.gz")[0]
    words = middle.text.split()
    first = clip.reference[0]
    assert first.speaker == middle.speaker and 0 < len(first.text.split()) < len(words)
    assert first.text.split() == words[-len(first.text.split()):]  # the turn's tail, no word it lost
    assert all(t.start >= 0 and t.end <= 45.0 + 1e-3 for t in clip.reference)


def test_stage1_data_mode_gives_single_speaker_utterances(tmp_path):
    from speakerlm.train import STAGES, TrainConfig, stage_config, training_clips

    folder, sups = write_long_meeting(tmp_path / "ami", minutes=3)
    cfg = stage_config(TrainConfig(), 1)
    assert STAGES[1]["data_mode"] == cfg.data_mode == "asr"
    utterances = training_clips(folder, cfg)
    assert utterances and all(len(u.reference) == 1 for u in utterances)
    by_text = {s.text: s for s in sups}
    for u in utterances:
        s = by_text[u.reference[0].text]  # one whole turn that nobody talks over
        assert not any(o is not s and o.start < s.end and s.start < o.end for o in sups)
        assert u.audio.start == pytest.approx(s.start, abs=1e-3) and u.audio.end == pytest.approx(s.end, abs=1e-3)


def test_long_meeting_channels_of_multi_source_and_multi_channel_recordings(tmp_path):
    """AMI ihm-like: one file per headset (lhotse sources with channel ids); a recording in one
    multi-channel file. A channel is chosen by id; without one, the channels (files) are mixed."""
    from lhotse import AudioSource, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    rng = np.random.default_rng(1)
    n = 3 * SAMPLE_RATE
    heads = [write_wave(tmp_path / f"head{i}.wav", (rng.standard_normal(n) * 0.05 * (i + 1)).astype(np.float32)) for i in range(2)]
    ihm = Recording("mtg", [AudioSource("file", channels=[i], source=str(p)) for i, p in enumerate(heads)],
                    SAMPLE_RATE, n, 3.0)
    folder = tmp_path / "ihm"
    folder.mkdir()
    RecordingSet.from_recordings([ihm]).to_file(folder / "ami-ihm_recordings_train.jsonl.gz")
    SupervisionSet.from_segments([SupervisionSegment("s0", "mtg", 0.0, 2.0, speaker="A", text="hello there")]).to_file(
        folder / "ami-ihm_supervisions_train.jsonl.gz")
    mix = load_dataset(folder)[0]  # no channel: the mean of the recording's files (as AMI's ihm-mix, unscaled)
    assert mix.audio.path == heads[0] and mix.audio.mix == (heads[1],)
    assert np.allclose(mix.audio.load(), (load_audio(heads[0]) + load_audio(heads[1])) / 2, atol=1e-4)
    window = replace(mix.audio, start=1.0, end=2.5).load()  # a span of the mix reads that span of every file
    assert window.size == int(1.5 * SAMPLE_RATE) and np.allclose(window, mix.audio.load()[SAMPLE_RATE:int(2.5 * SAMPLE_RATE)], atol=1e-6)
    second = load_dataset(folder, channel=1)[0]
    assert second.audio.path == heads[1] and np.allclose(second.audio.load(), load_audio(heads[1]), atol=1e-4)
    with pytest.raises(UserError, match="no channel 5"):
        load_dataset(folder, channel=5)

    stereo = tmp_path / "stereo" / "mtg.wav"
    stereo.parent.mkdir()
    both = np.stack([load_audio(heads[0]), load_audio(heads[1])], axis=1)
    sf.write(stereo, both, SAMPLE_RATE, subtype="FLOAT")
    RecordingSet.from_recordings([Recording.from_file(stereo, recording_id="mtg")]).to_file(
        stereo.parent / "x_recordings.jsonl.gz")
    SupervisionSet.from_segments([SupervisionSegment("s0", "mtg", 0.0, 2.0, speaker="A", text="hello there")]).to_file(
        stereo.parent / "x_supervisions.jsonl.gz")
    mixed, right = load_dataset(stereo.parent)[0], load_dataset(stereo.parent, channel=1)[0]
    assert np.allclose(right.audio.load(), both[:, 1], atol=1e-6)
    assert np.allclose(mixed.audio.load(), both.mean(axis=1), atol=1e-6)


def test_long_meeting_word_alignments_decide_where_a_cut_turn_splits(tmp_path):
    """A supervision with a word alignment (as the AMI recipe writes) is split at a cut by its words'
    own times, not by the length-spread estimate; a cuts manifest's alignments (kept in the recording's
    clock by lhotse) are read in the cut's."""
    from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet
    from lhotse.supervision import AlignmentItem

    from speakerlm.data.datasets import training_segments

    wav = write_wave(tmp_path / "mtg.wav", (np.random.default_rng(0).standard_normal(120 * SAMPLE_RATE) * 0.01).astype(np.float32))
    # A talks 30–60 s with no pause around 40–50 s, so the first cut lands at 50 s, inside the turn. The
    # alignment puts 8 of its 10 words before 34 s; spread evenly by length, only 7 would lie before 50 s.
    words = [f"w{i}" for i in range(10)]
    times = [(30.0 + 0.5 * i, 30.4 + 0.5 * i) for i in range(8)] + [(51.0, 52.0), (58.0, 60.0)]
    long_turn = SupervisionSegment("s1", "mtg", 30.0, 30.0, speaker="A", text=" ".join(words),
                                   alignment={"word": [AlignmentItem(w, a, round(b - a, 3)) for w, (a, b) in zip(words, times)]})
    others = [SupervisionSegment(f"s{k}", "mtg", t, 4.0, speaker="B", text=f"x{k} y{k}") for k, t in ((0, 5.0), (2, 62.0), (3, 90.0))]
    folder = tmp_path / "ami"
    folder.mkdir()
    RecordingSet.from_recordings([Recording.from_file(wav, recording_id="mtg")]).to_file(folder / "ami_recordings.jsonl.gz")
    SupervisionSet.from_segments([long_turn, *others]).to_file(folder / "ami_supervisions.jsonl.gz")
    clip = load_dataset(folder)[0]
    assert [t.word_times for t in clip.reference if t.speaker == "A"] == [tuple(times)]
    assert "word_times" not in clip.reference[0].to_dict() and "word_times" in clip.reference[1].to_dict()
    said_by_a = lambda segment: [w for t in segment.reference if t.speaker == "A" for w in t.text.split()]
    segments = training_segments(clip, 40.0, 50.0)
    assert segments[1].audio.start == 50.0
    assert said_by_a(segments[0]) == words[:8] and said_by_a(segments[1]) == words[8:]
    assert [t.word_times for t in segments[1].reference if t.speaker == "A"] == [((1.0, 2.0), (8.0, 10.0))]
    unaligned = replace(clip, reference=tuple(replace(t, word_times=None) for t in clip.reference))
    assert said_by_a(training_segments(unaligned, 40.0, 50.0)[0]) == words[:7]

    cuts = CutSet.from_manifests(RecordingSet.from_recordings([Recording.from_file(wav, recording_id="mtg")]),
                                 SupervisionSet.from_segments([long_turn]))
    CutSet.from_cuts([c.truncate(offset=32.3, duration=30.0) for c in cuts]).to_file(tmp_path / "cuts.jsonl.gz")
    (turn,) = load_dataset(tmp_path / "cuts.jsonl.gz")[0].reference
    assert turn.text.split() == words[5:]  # w5 (32.5–32.9 s) is the first word whose middle is inside
    assert turn.word_times[0] == pytest.approx((0.2, 0.6)) and turn.word_times[-1] == pytest.approx((25.7, 27.7))


def test_multilingual_language_per_dataset_from_manifests_and_from_the_flag(tmp_path):
    """lhotse recipes name a language ("Chinese" in AliMeeting/AISHELL-4); it becomes each clip's
    Whisper code, and `--language` overrides it for all data or per dataset."""
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

    from speakerlm.train import TrainConfig, dataset_languages, training_clips

    def dataset(name: str, language: str | None) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        wav = write_wave(folder / "a.wav", (np.random.default_rng(0).standard_normal(4 * SAMPLE_RATE) * 0.05).astype(np.float32))
        RecordingSet.from_recordings([Recording.from_file(wav, recording_id="a")]).to_file(folder / "x_recordings.jsonl.gz")
        SupervisionSet.from_segments([SupervisionSegment("s", "a", 0.0, 2.0, speaker="A", text="ni hao", language=language)]).to_file(
            folder / "x_supervisions.jsonl.gz")
        return folder

    zh, en, unsaid = dataset("alimeeting", "Chinese"), dataset("ami", "English"), dataset("plain", None)
    assert [load_dataset(p)[0].language for p in (zh, en, unsaid)] == ["zh", "en", None]
    assert training_clips(en, TrainConfig(), "zh")[0].language == "zh"
    assert dataset_languages(("en", "Mandarin"), [zh, en]) == {zh: "en", en: "zh"}
    assert dataset_languages(("zh",), [zh, en]) == {zh: "zh", en: "zh"}
    assert dataset_languages((), [zh, en]) == {}
    with pytest.raises(UserError, match="one per --data"):
        dataset_languages(("en", "zh", "fr"), [zh, en])
    with pytest.raises(UserError, match="Klingon"):
        dataset_languages(("Klingon",), [zh])
    # the bundled English-only Whisper refuses Chinese data in one line, before any input is cached
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "speakerlm", "train", "--data", str(en), str(zh), "--out",
                           str(tmp_path / "runs" / "x"), "--language", "en", "zh"], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0, done.stderr[-2000:]
    assert "zh" in done.stderr and "English-only" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "runs" / "features").exists()
    # evaluation reads the language from the manifests too: Chinese data is not decoded as English
    done = subprocess.run([sys.executable, "-m", "speakerlm", "evaluate", str(zh), "--systems", "plain",
                           "--out", str(tmp_path / "eval")], capture_output=True, text=True)
    assert done.returncode == 2 and "--language zh" in done.stderr and "English-only" in done.stderr, done.stderr[-2000:]
