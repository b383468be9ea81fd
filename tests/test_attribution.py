"""The attribution diagnostic sorts misattributed words by context and by the kind of error."""

from speakerlm.attribution import attribution_counts
from speakerlm.turns import Turn

REFERENCE = [
    Turn("A", "one two three four five six", 0.0, 6.0),
    Turn("B", "seven eight nine ten eleven twelve", 6.5, 12.5),
    Turn("A", "yes", 13.0, 13.5),
]


def test_a_relabelled_transcript_is_fully_attributed():
    hyp = [Turn("spk 1", t.text) if t.speaker == "A" else Turn("spk 0", t.text) for t in REFERENCE]
    counts = attribution_counts(REFERENCE, hyp)
    assert (counts.correct, counts.misattributed, counts.mixed_turns) == (13, 0, 0)


def test_a_wrong_label_on_a_whole_turn_is_a_speaker_choice_error():
    hyp = [Turn("x", REFERENCE[0].text), Turn("y", REFERENCE[1].text), Turn("y", "yes")]
    counts = attribution_counts(REFERENCE, hyp)
    assert counts.misattributed == 1 and counts.speaker_choice == 1 and counts.segmentation == 0
    assert counts.by_context["short turn"] == [1, 1]  # "yes" lasts 0.5 s


def test_a_missing_turn_boundary_is_a_segmentation_error():
    hyp = [Turn("x", "one two three four five six seven eight"), Turn("y", "nine ten eleven twelve"), Turn("x", "yes")]
    counts = attribution_counts(REFERENCE, hyp)
    assert counts.misattributed == 2 and counts.segmentation == 2  # "seven eight" inside A's turn
    assert counts.mixed_turns == 1 and counts.turns == 3
    # B's words last 1 s each: "seven" is in the turn's first second, "eight" past it
    assert counts.by_context["turn edge"][1] == 1 and counts.by_context["mid turn"][1] == 1
    summary = (counts + counts).summary()
    assert summary["misattributed"] == 100.0 * 2 / 13 and summary["segmentation"] == 100.0


def test_words_said_while_another_speaker_talks_are_overlap():
    reference = [Turn("A", "one two three four", 0.0, 4.0), Turn("B", "five six", 2.0, 3.0)]
    counts = attribution_counts(reference, [Turn("x", "one two three four five six")])
    assert counts.by_context["overlap"][0] == 3  # "three" (said at 2.5 s, inside B's turn) and both of B's words
    assert counts.misattributed == 2
