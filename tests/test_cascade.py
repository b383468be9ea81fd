"""The cascaded baseline: words find their speakers, names match, speaker-count hints are honoured."""

import numpy as np
import pytest

from speakerlm.audio import SAMPLE_RATE, load_audio
from speakerlm.diarize import FRAMES_PER_SECOND, SpeakerCount, frame_labels
from speakerlm.engines.cascade import Cascade
from speakerlm.word_speakers import sentence_speakers, sentence_spans, word_speaker, words_to_turns
from speakerlm.metrics import cpwer
from speakerlm.pretrained.fast_whisper import Word
from speakerlm.transcribe import TranscribeOptions
from speakerlm.turns import Turn
from speakerlm.vad import Region
from tests.conftest import SENTENCES
from speakerlm.voiceprints import enroll_voiceprint


def test_words_follow_frame_labels_and_merge_into_turns():
    regions = [Region(0.0, 2.0), Region(2.0, 4.0)]
    times = np.array([[0, 1.5], [0.5, 2.0], [2.0, 3.5], [2.5, 4.0]])
    frames = frame_labels(times, np.eye(2)[[0, 0, 1, 1]], regions, 4 * FRAMES_PER_SECOND)
    words = [Word("hi", 0.1, 0.5), Word("there.", 0.6, 1.8), Word("yes", 2.1, 2.6), Word("indeed", 2.7, 3.9)]
    speakers = [["A", "B"][word_speaker(w, frames)] for w in words]
    assert words_to_turns(words, speakers, gap_s=2.0) == [Turn("A", "hi there.", 0.1, 1.8), Turn("B", "yes indeed", 2.1, 3.9)]
    # words that step back in time (the model's overlapping turns) join into a turn spanning them all
    back = [Word("so", 26.7, 27.0), Word("uh", 23.0, 23.5)]
    assert words_to_turns(back, ["A", "A"], gap_s=2.0) == [Turn("A", "so uh", 23.0, 27.0)]


@pytest.fixture(scope="module")
def cascade():
    return Cascade(TranscribeOptions(engine="cascade"))


def test_a_short_run_of_another_speaker_inside_a_sentence_takes_the_sentence_speaker():
    words = [Word(t, 0.4 * i, 0.4 * i + 0.35) for i, t in
             enumerate("we should book the flights. yes, I do agree with that plan.".split())]
    assert sentence_spans(words, pause_s=1.0) == [(0, 5), (5, 12)]
    # "flights." smeared to speaker 1 by the embedding windows; speaker 1's sentence starts with a
    # word given to speaker 0; "that plan." is a real run of speaker 0 longer than min_run_s
    labels = [0, 0, 0, 0, 1, 0, 1, 1, 1, 1, 0, 0]
    assert sentence_speakers(words, labels, min_run_s=0.5, pause_s=1.0) == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0]
    assert sentence_speakers(words, labels, min_run_s=5.0, pause_s=1.0) == [0] * 5 + [1] * 7
    # a pause ends a sentence too
    late = words[:3] + [Word("later", 5.0, 5.3)]
    assert sentence_spans(late, pause_s=1.0) == [(0, 3), (3, 4)]


def test_speaker_change_without_a_pause(cascade, tts):
    # two sentences a voice (one each gives the clustering too few windows to tell the voices apart),
    # each utterance's own silence trimmed so one voice follows the other with no gap at all
    trim = lambda w: w[np.flatnonzero(np.abs(w) > 0.02)[0] : np.flatnonzero(np.abs(w) > 0.02)[-1]]
    a = [trim(load_audio(tts("rms", k))) for k in ("chicken", "glue")]
    b = [trim(load_audio(tts("slt", k))) for k in ("juice", "well")]
    silence = np.zeros(SAMPLE_RATE // 2, np.float32)
    wave = np.concatenate([silence, *a, *b, silence])
    turns = cascade.transcribe(wave, {})
    ref = [Turn("x", f"{SENTENCES['chicken']} {SENTENCES['glue']}"), Turn("y", f"{SENTENCES['juice']} {SENTENCES['well']}")]
    assert len({t.speaker for t in turns}) == 2, turns
    assert cpwer(ref, turns).errors <= 2, turns


@pytest.mark.slow
def test_enrolled_names_on_the_bundled_example(cascade):
    from tests.conftest import REPO

    ex = REPO / "examples"
    enrolled = {n: enroll_voiceprint([ex / f"{n.lower()}.wav"]) for n in ("Alice", "Bob")}
    turns = cascade.transcribe(load_audio(ex / "meeting.wav"), enrolled)
    assert [t.speaker for t in turns] == ["Alice", "Bob", "Alice", "Bob", "Alice"], turns
    # a partial roster: only Bob enrolled, Alice becomes spk 0
    enrolled = {"Bob": enroll_voiceprint([ex / "bob.wav"])}
    assert [t.speaker for t in cascade.transcribe(load_audio(ex / "meeting.wav"), enrolled)] == ["spk 0", "Bob", "spk 0", "Bob", "spk 0"]


@pytest.mark.slow
def test_a_known_speaker_count_reaches_the_diarizer(cascade):
    from tests.conftest import REPO

    wave = load_audio(REPO / "examples" / "meeting.wav")
    assert {t.speaker for t in cascade.transcribe(wave, {}, SpeakerCount(num=1))} == {"spk 0"}
    assert len({t.speaker for t in cascade.transcribe(wave, {}, SpeakerCount(num=2))}) == 2


@pytest.mark.slow
def test_interrupted_run_resumes_after_its_last_segment(cascade, monkeypatch, tmp_path):
    """A run killed while writing a segment's record resumes after the last whole one: the diarization
    is read back, not redone, and decoding starts where the recorded segments end."""
    from tests.conftest import REPO

    wave = np.concatenate([load_audio(REPO / "examples" / "meeting.wav")] * 2)  # ≈ 43 s
    state = tmp_path / "state.jsonl"
    full = cascade.transcribe(wave, {}, state=state)
    lines = state.read_text().splitlines()
    diarization = [line for line in lines if "diarization" in line]
    segments = [line for line in lines if "diarization" not in line]
    assert len(diarization) == 1 and len(segments) >= 3  # the diarization and one line per segment, as they finish
    keep = len(segments) // 2
    state.write_text("\n".join(segments[:1] + diarization + segments[1:keep]) + "\n" + segments[keep][:15])  # killed mid-line
    monkeypatch.setattr(cascade.diarizer, "diarize", lambda *a: pytest.fail("diarized again"))
    starts = []
    real = cascade.asr.transcribe
    monkeypatch.setattr(cascade.asr, "transcribe", lambda *a, **k: starts.append(k["start"]) or real(*a, **k))
    again = cascade.transcribe(wave, {}, state=state)
    assert starts and starts[0] > 5.0  # not from the beginning
    assert [t.speaker for t in again] == [t.speaker for t in full]
    # the words after the cut are decoded again with the recorded text as context: allow a little drift
    assert cpwer(full, again).errors <= 3, (full, again)
