"""The bundled SpeakerLM checkpoint as a user runs it: enrolled names come from the enrolment audio."""

import pytest

from speakerlm.audio import load_audio
from speakerlm.checkpoint import bundled_model
from speakerlm.diarize import FRAMES_PER_SECOND, SpeakerCount
from speakerlm.engines.speakerlm import SpeakerLMEngine, SpeakerLMEngineConfig
from speakerlm.transcribe import TranscribeOptions
from speakerlm.voiceprints import enroll_voiceprint, retrieve
from tests.conftest import REPO

EX = REPO / "examples"
pytestmark = pytest.mark.skipif(bundled_model() is None, reason="this build ships no trained checkpoint")


@pytest.fixture(scope="module")
def engine():
    return SpeakerLMEngine(TranscribeOptions(engine="speakerlm"))


@pytest.fixture(scope="module")
def prints():
    return {n: enroll_voiceprint([EX / f"{n.lower()}.wav"]) for n in ("Alice", "Bob")}


def _first_words(turns):
    """First word of each turn → the speaker of the first turn that starts with it."""
    out = {}
    for t in turns:
        out.setdefault(t.text.split()[0].strip(",.!?\"'").lower(), t.speaker)
    return out


def test_match_regist_names_each_turn_by_voice(engine, prints):
    turns = engine.transcribe(load_audio(EX / "meeting.wav"), dict(prints))
    first = _first_words(turns)
    # the reference: Alice says "Good morning…", "That is…", "Agreed…"; Bob "I did…", "Then we…"
    assert first["good"] == first["that"] == first["agreed"] == "Alice", turns
    assert first["i"] == first["then"] == "Bob", turns
    assert all(t.start is not None and t.end >= t.start for t in turns)


def test_swapping_enrolment_audio_swaps_the_names(engine, prints):
    swapped = engine.transcribe(load_audio(EX / "meeting.wav"), {"Alice": prints["Bob"], "Bob": prints["Alice"]})
    first = _first_words(swapped)
    assert first["good"] == first["that"] == "Bob" and first["then"] == "Alice", swapped


def test_no_regist_gives_anonymous_labels(engine):
    turns = engine.transcribe(load_audio(EX / "meeting.wav"), {})
    assert turns and all(t.speaker.startswith("spk ") for t in turns)
    assert "budget" in " ".join(t.text for t in turns).lower() or "morning" in turns[0].text.lower()


def test_partial_roster_names_the_enrolled_and_numbers_the_rest(engine, prints):
    turns = engine.transcribe(load_audio(EX / "meeting.wav"), {"Alice": prints["Alice"]})
    first = _first_words(turns)
    assert first["good"] == first["agreed"] == "Alice", turns
    assert first["then"] == "spk 0" and {t.speaker for t in turns} == {"Alice", "spk 0"}, turns


def test_distractors_are_filtered_and_never_named(engine, prints, tts):
    # 6 enrolled TTS voices that never speak, with room for only 3 voices per window
    voices = [(v, k) for v in ("awb", "kal", "kal16") for k in ("glue", "canoe")]  # Alice is slt, Bob rms
    distractors = {f"D{i}": enroll_voiceprint([tts(v, k)]) for i, (v, k) in enumerate(voices)}
    names = retrieve({**distractors, **prints}, _stream(engine), k=3)
    assert {"Alice", "Bob"} <= set(names) and len(names) == 3
    narrow = SpeakerLMEngine(TranscribeOptions(engine="speakerlm"), SpeakerLMEngineConfig(retrieval_k=3))
    turns = narrow.transcribe(load_audio(EX / "meeting.wav"), {**distractors, **prints})
    first = _first_words(turns)
    assert first["good"] == first["that"] == "Alice", turns
    # the model still points at a retrieved distractor now and then: one turn of five at most
    assert sum(t.speaker.startswith("D") for t in turns) <= 1, turns


def _stream(engine):
    from speakerlm.features import frame_speaker_stream, n_frames

    wave = load_audio(EX / "meeting.wav")
    return frame_speaker_stream(engine.encoder, wave, n_frames(wave)).numpy()


def test_posthoc_naming_baseline_names_anonymous_speakers(prints):
    # greedy: the four beams' answer holds a third anonymous voice here, which no naming can fix
    posthoc = SpeakerLMEngine(TranscribeOptions(engine="speakerlm", num_beams=1),
                              SpeakerLMEngineConfig(naming="posthoc", discover_speakers=False))
    turns = posthoc.transcribe(load_audio(EX / "meeting.wav"), dict(prints))
    assert {t.speaker for t in turns} <= {"Alice", "Bob", "spk 0", "spk 1"} and "Alice" in {t.speaker for t in turns}


def test_speaker_count_hint_reaches_the_discovery(engine):
    assert {t.speaker for t in engine.transcribe(load_audio(EX / "meeting.wav"), {}, SpeakerCount(num=1))} == {"spk 0"}


@pytest.mark.slow
def test_interrupted_run_resumes_from_its_last_window(engine, prints, tmp_path, monkeypatch):
    import numpy as np

    wave = np.concatenate([load_audio(EX / "meeting.wav")] * 2)  # ≈ 43 s: three windows
    state = tmp_path / "state.jsonl"
    full = engine.transcribe(wave, dict(prints), state=state)
    lines = state.read_text().splitlines()
    assert len(lines) >= 2
    state.write_text(lines[0] + "\n" + lines[1][:20])  # killed while writing the second window
    calls = []
    real = engine.window_inputs
    monkeypatch.setattr(engine, "window_inputs", lambda *a: calls.append(1) or real(*a))
    again = engine.transcribe(wave, dict(prints), state=state)
    assert again == full and len(calls) == len(lines) - 1


def test_a_voice_heard_in_a_window_is_registered_with_its_voice_there(engine, prints):
    import numpy as np

    from speakerlm.vad import Region

    FRAME_RATE = FRAMES_PER_SECOND
    wave = load_audio(EX / "meeting.wav")
    frames = np.full(int(wave.size / 16000 * FRAME_RATE), -1)
    frames[: 3 * FRAME_RATE] = 0  # voice 0: 3 s inside the window
    frames[3 * FRAME_RATE : 4 * FRAME_RATE] = 1  # voice 1: 1 s, too little to voiceprint
    frames[4 * FRAME_RATE : 7 * FRAME_RATE] = 2  # Alice (enrolled), 3 s
    voices = {"~spk 0": prints["Bob"], "~spk 1": prints["Bob"], "Alice": prints["Alice"]}
    clusters = {"~spk 0": 0, "~spk 1": 1, "Alice": 2}
    window = Region(0.0, 10.0)
    local = engine._window_voiceprints(voices, clusters, window, wave, frames)
    assert not np.allclose(local["~spk 0"], voices["~spk 0"])  # replaced by the window's own audio
    assert np.array_equal(local["~spk 1"], voices["~spk 1"])
    assert not np.allclose(local["Alice"], voices["Alice"])  # enrolled_from_recording is on by default
    strict = SpeakerLMEngine.__new__(SpeakerLMEngine)
    strict.__dict__.update(engine.__dict__, config=SpeakerLMEngineConfig(enrolled_from_recording=False))
    assert np.array_equal(strict._window_voiceprints(voices, clusters, window, wave, frames)["Alice"], voices["Alice"])


@pytest.mark.slow
def test_window_voiceprints_only_in_long_recordings(engine, prints, monkeypatch):
    """A short recording's windows keep the recording-wide voiceprints (made of nearby audio anyway);
    past local_after_seconds each window gets its own."""
    from dataclasses import replace

    wave = load_audio(EX / "meeting.wav")  # 21 s
    calls = []
    real = engine._window_voiceprints
    monkeypatch.setattr(engine, "_window_voiceprints", lambda *a: calls.append(1) or real(*a))
    engine.transcribe(wave, dict(prints))
    assert calls == []
    monkeypatch.setattr(engine, "config", replace(engine.config, local_after_seconds=10.0))
    engine.transcribe(wave, dict(prints))
    assert len(calls) >= 1


def test_an_english_only_model_refuses_another_language_in_one_line():
    from speakerlm.errors import UserError

    with pytest.raises(UserError, match="English-only.*--whisper base"):
        SpeakerLMEngine.resolve(TranscribeOptions(engine="speakerlm", language="zh"))
    assert SpeakerLMEngine.resolve(TranscribeOptions(engine="speakerlm", language="en")).whisper == "tiny.en"


def test_the_model_searches_four_beams_unless_told_and_word_fusion_asks_for_greedy():
    from speakerlm.errors import UserError

    assert SpeakerLMEngine.resolve(TranscribeOptions(engine="speakerlm")).num_beams == 4
    assert SpeakerLMEngine.resolve(TranscribeOptions(engine="speakerlm", num_beams=1)).num_beams == 1
    with pytest.raises(UserError, match="word fusion decodes greedily; add --beams 1"):
        SpeakerLMEngine(TranscribeOptions(engine="speakerlm"), SpeakerLMEngineConfig(word_fusion=0.3))


def test_speakers_from_frames_splits_a_turn_where_the_diarization_changes_voice():
    import numpy as np

    from speakerlm.engines.speakerlm import _speakers_from_frames
    from speakerlm.turns import Turn
    from speakerlm.vad import Region

    frames = np.full(6 * FRAMES_PER_SECOND, -1)
    frames[: 3 * FRAMES_PER_SECOND], frames[3 * FRAMES_PER_SECOND :] = 0, 1
    turns = [Turn("Alice", "one two three. four five six.", 0.0, 6.0)]  # the pointer gave it all to Alice
    out = _speakers_from_frames(turns, [Region(0.0, 6.0)], frames, {"Alice": 0, "~spk 0": 1})
    assert [(t.speaker, t.text) for t in out] == [("Alice", "one two three."), ("spk 0", "four five six.")]
    assert out[0].start == 0.0 and out[1].end == 6.0 and out[0].end <= out[1].start


def test_turn_times_the_model_wrote_move_into_the_recording_and_stay_in_their_window():
    from speakerlm.engines.speakerlm import _shifted
    from speakerlm.turns import Turn
    from speakerlm.vad import Region

    written = [Turn("A", "one", 0.5, 3.0), Turn("B", "two", 2.5, None), Turn("A", "three", 6.0, 25.0)]
    assert _shifted(written, Region(100.0, 110.0)) == [
        Turn("A", "one", 100.5, 103.0),
        Turn("B", "two", 102.5, 106.0),  # no end written: it runs to the next turn's start
        Turn("A", "three", 106.0, 110.0),  # an end past the window is held at the window's end
    ]


def test_beam_search_on_two_threads_writes_what_one_thread_writes(prints):
    """With two threads (the windows' beams searched as one batch on both cores, the side thread
    computing inputs beside): the same turns as one thread."""
    import torch

    beams = SpeakerLMEngine(TranscribeOptions(engine="speakerlm", num_beams=2))
    wave, threads = load_audio(EX / "meeting.wav"), torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = beams.transcribe(wave, dict(prints))
        torch.set_num_threads(2)
        side_by_side = beams.transcribe(wave, dict(prints))
    finally:
        torch.set_num_threads(threads)
    assert alone and side_by_side == alone


def test_unmatched_enrolled_people_leave_the_prompt_unless_registered(engine, prints, monkeypatch):
    """An enrolled voice that no discovered voice matches (a distractor) is in every window's prompt by
    default, and in none with register_unmatched=False, where the prompts hold the discovered voices."""
    from dataclasses import replace

    import numpy as np

    zed = np.random.default_rng(0).standard_normal(len(prints["Alice"])).astype(np.float32)
    enrolled = {**prints, "Zed": zed / np.linalg.norm(zed)}
    wave, seen = load_audio(EX / "meeting.wav"), []
    real = engine.decode_windows
    monkeypatch.setattr(engine, "decode_windows", lambda inputs, voices: seen.append(voices) or real(inputs, voices))
    with_zed = engine.transcribe(wave, dict(enrolled))
    assert seen and all("Zed" in v and {"Alice", "Bob"} <= set(v) for window in seen for v in window)
    seen.clear()
    monkeypatch.setattr(engine, "config", replace(engine.config, register_unmatched=False))
    without = engine.transcribe(wave, dict(enrolled))
    assert seen and all("Zed" not in v and {"Alice", "Bob"} <= set(v) for window in seen for v in window)
    assert {t.speaker for t in without} == {t.speaker for t in with_zed} == {"Alice", "Bob"}


def test_the_rest_of_a_window_after_its_last_written_turn_is_found_only_when_speech_is_left():
    from speakerlm.engines.speakerlm import _rest_after
    from speakerlm.turns import Turn
    from speakerlm.vad import Region

    window, speech = Region(10.0, 30.0), [Region(10.0, 14.0), Region(15.0, 18.0), Region(25.0, 26.0)]
    stopped = [Turn("A", "one", 0.0, 2.0), Turn("B", "two", 1.0, None)]  # the last end written: 2 s in
    assert _rest_after(window, stopped, speech, 2.0) == Region(12.0, 30.0)  # 2 + 3 + 1 s of speech left
    assert _rest_after(window, stopped, speech, 7.0) is None
    assert _rest_after(window, [Turn("A", "one", 0.0, 8.5)], speech, 2.0) is None  # only 1 s left
    assert _rest_after(window, [Turn("A", "one", 0.0, None)], speech, 2.0) is None  # no time to go on from
    assert _rest_after(window, [], speech, 2.0) is None  # nothing written: decoding again repeats it


def test_a_window_the_model_ends_early_is_decoded_again_from_where_it_stopped(prints, monkeypatch):
    """The model's first answer for each window is cut after its first turn (as when it ends a window
    early; the meeting's first window holds five turns, 0.2-16.9 s): the engine decodes the rest again
    and writes the window's later sentences; told not to (`continue_after_s=0`), they are lost."""
    def transcript(continue_after_s):
        engine = SpeakerLMEngine(TranscribeOptions(engine="speakerlm", num_beams=1),
                                 SpeakerLMEngineConfig(continue_after_s=continue_after_s))
        decode, calls = engine.decode_windows, []

        def first_turn_only(inputs, voiceprints):
            found = decode(inputs, voiceprints)
            calls.append(len(inputs))
            return [f[:1] for f in found] if len(calls) == 1 else found

        monkeypatch.setattr(engine, "decode_windows", first_turn_only)
        turns = engine.transcribe(load_audio(EX / "meeting.wav"), dict(prints))
        return " ".join(t.text for t in turns).lower(), calls

    continued, calls = transcript(2.0)
    assert "conference" in continued and "flights" in continued and len(calls) >= 2
    stopped, calls = transcript(0.0)
    assert "conference" not in stopped and "flights" not in stopped and len(calls) == 1
