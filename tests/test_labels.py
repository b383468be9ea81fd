from hypothesis import given, settings
from hypothesis import strategies as st

from speakerlm.labels import format_turns, parse_turns, target_turns
from speakerlm.turns import Turn

NAMES = ["Alice", "Bob", "Dr. Chen", "Mary Ann"]


def test_targets_name_registered_and_number_the_rest_by_first_appearance():
    ref = [Turn("s7", "hi", 0, 1), Turn("s2", "yo", 1, 2), Turn("s9", "hey", 2, 3), Turn("s2", "ok", 3, 4)]
    assert [t.speaker for t in target_turns(ref)] == ["spk 0", "spk 1", "spk 2", "spk 1"]
    assert [t.speaker for t in target_turns(ref, registered=["s2"])] == ["spk 0", "s2", "spk 1", "s2"]


def test_targets_are_chronological():
    ref = [Turn("b", "second", 2, 3), Turn("a", "first", 0, 1)]
    assert [t.text for t in target_turns(ref)] == ["first", "second"]


def test_format_and_parse_paper_example():
    text = "Mike: hi, how are you? Lucy: hi, I'm fine. spk 0: great."
    parsed = parse_turns(text, names=["Mike", "Lucy"])
    assert parsed.turns == [Turn("Mike", "hi, how are you?"), Turn("Lucy", "hi, I'm fine."), Turn("spk 0", "great.")]
    assert format_turns(parsed.turns) == text and not parsed.unknown_names and not parsed.malformed


def test_unknown_names_are_reported_not_dropped():
    parsed = parse_turns("Alice: hello. Carol: who am I?", names=["Alice", "Bob"])
    assert parsed.unknown_names == ["Carol"] and parsed.turns[1] == Turn("Carol", "who am I?")


@given(st.text(max_size=200))
@settings(max_examples=300)
def test_parser_never_crashes_on_garbage(text):
    parsed = parse_turns(text, names=NAMES)
    assert all(t.text for t in parsed.turns)


def test_malformed_output_keeps_its_words():
    parsed = parse_turns("real real real real", names=["Alice"])
    assert parsed.malformed and parsed.turns == [Turn("spk 0", "real real real real")]
    assert parse_turns("Alice: Bob: hi", names=["Alice", "Bob"]).malformed  # an empty turn


words = st.text(alphabet="abcdefghij klmnop,.?'", min_size=1, max_size=40).filter(lambda s: s.strip())
labels = st.sampled_from(NAMES + ["spk 0", "spk 1", "spk 12"])


@given(st.lists(st.tuples(labels, words), max_size=8))
@settings(max_examples=300)
def test_round_trip(pairs):
    turns = [Turn(label, " ".join(text.split())) for label, text in pairs]
    assert parse_turns(format_turns(turns), names=NAMES).turns == turns
