"""The bundled SpeakerLM checkpoint as a user runs it: enrolled names come from the enrolment audio."""

import pytest

from speakerlm.audio import load_audio
from speakerlm.transcribe import Enrolled, SpeakerLMEngine, TranscribeOptions, bundled_model, enroll_voiceprint
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
        out.setdefault(t.text.split()[0].strip(",.").lower(), t.speaker)
    return out


def test_match_regist_names_each_turn_by_voice(engine, prints):
    turns = engine.transcribe(load_audio(EX / "meeting.wav"), Enrolled(dict(prints)))
    first = _first_words(turns)
    # the reference: Alice says "Good morning…", "That is…", "Agreed…"; Bob "I did…", "Then we…"
    assert first["good"] == first["that"] == first["agreed"] == "Alice", turns
    assert first["i"] == first["then"] == "Bob", turns
    assert all(t.start is not None and t.end >= t.start for t in turns)


def test_swapping_enrolment_audio_swaps_the_names(engine, prints):
    swapped = engine.transcribe(load_audio(EX / "meeting.wav"), Enrolled({"Alice": prints["Bob"], "Bob": prints["Alice"]}))
    first = _first_words(swapped)
    assert first["good"] == first["that"] == "Bob" and first["then"] == "Alice", swapped


def test_no_regist_gives_anonymous_labels(engine):
    turns = engine.transcribe(load_audio(EX / "meeting.wav"), Enrolled())
    assert turns and all(t.speaker.startswith("spk ") for t in turns)
    assert "budget" in " ".join(t.text for t in turns).lower() or "morning" in turns[0].text.lower()
