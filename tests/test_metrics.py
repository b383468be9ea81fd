"""Hand-computed checks of speakerlm.metrics (WER, cpWER, saWER, tcpWER, DER, normalisation)."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speakerlm.metrics import (
    ErrorCounts,
    aggregate,
    cpwer,
    der,
    normalized_tokens,
    number_to_words,
    sawer,
    score_clip,
    tcpwer,
    wer,
)
from speakerlm.turns import Turn


def rates(ref, hyp, **kwargs):
    return aggregate([score_clip(ref, hyp, registered=True, **kwargs)])


# ---------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------


def test_english_case_and_punctuation():
    assert normalized_tokens("Hello, World! I don't KNOW...") == ["hello", "world", "i", "don't", "know"]


def test_english_quotes_and_hyphens_are_separators_but_inner_apostrophe_stays():
    assert normalized_tokens("'Quoted' twenty-one it’s") == ["quoted", "twenty", "one", "it's"]


def test_english_digits_become_words():
    assert normalized_tokens("9") == ["nine"]
    assert normalized_tokens("I have 42 cats.") == ["i", "have", "forty", "two", "cats"]
    assert normalized_tokens("1,000 and 3.14") == ["one", "thousand", "and", "three", "point", "one", "four"]


@pytest.mark.parametrize(
    "n, words",
    [(0, "zero"), (9, "nine"), (13, "thirteen"), (20, "twenty"), (42, "forty two"), (99, "ninety nine"),
     (100, "one hundred"), (215, "two hundred fifteen"), (12345, "twelve thousand three hundred forty five")],
)
def test_number_to_words(n, words):
    assert number_to_words(n) == words


def test_spelled_number_matches_digits_in_wer():
    ref = [Turn("A", "I have 9 cats.")]
    hyp = [Turn("A", "i have nine cats")]
    assert wer(ref, hyp) == ErrorCounts(0, 4, 0, 0, 0)


def test_mandarin_tokens_strip_punctuation_and_group_latin():
    # Full-width letters map to half-width and are upper-cased; a Latin/digit run is one token.
    assert normalized_tokens("“你好，世界！”我用ｉＰｈｏｎｅ15。（好的）《书》、", "zh") == [
        "你", "好", "世", "界", "我", "用", "IPHONE15", "好", "的", "书"
    ]


def test_unknown_language_is_rejected():
    with pytest.raises(ValueError):
        normalized_tokens("hello", "fr")


# ---------------------------------------------------------------------------------------------
# WER family on one clip
# ---------------------------------------------------------------------------------------------

TWO_SPEAKERS = [Turn("Alice", "Good morning, everyone.", 0.0, 3.0), Turn("Bob", "Thank you!", 3.0, 5.0)]


def test_perfect_match_is_zero_everywhere():
    result = rates(TWO_SPEAKERS, TWO_SPEAKERS)
    assert result == {"wer": 0.0, "cpwer": 0.0, "sawer": 0.0, "delta_cp": 0.0, "delta_sa": 0.0,
                      "tcpwer": 0.0, "der": 0.0}


def test_swapped_names_cost_nothing_in_cpwer_but_count_in_sawer():
    hyp = [Turn("Bob", "good morning everyone"), Turn("Alice", "thank you")]
    # Alice: ref [good morning everyone] vs hyp [thank you] -> 2 sub + 1 del = 3
    # Bob:   ref [thank you] vs hyp [good morning everyone] -> 2 sub + 1 ins = 3
    # saWER = 6 / 5 ref words = 120 %
    assert sawer(TWO_SPEAKERS, hyp) == ErrorCounts(6, 5, 1, 1, 4)
    assert cpwer(TWO_SPEAKERS, hyp) == ErrorCounts(0, 5, 0, 0, 0)
    result = rates(TWO_SPEAKERS, hyp)
    assert result["wer"] == 0.0
    assert result["cpwer"] == 0.0
    assert result["sawer"] == pytest.approx(120.0)


def test_extra_hypothesis_speaker_is_insertions():
    ref = [Turn("Alice", "we can start")]
    hyp = [Turn("Alice", "we can start"), Turn("Carol", "hold on")]
    # 2 inserted words / 3 ref words = 66.67 % in all three metrics
    expected = ErrorCounts(errors=2, reference_length=3, insertions=2, deletions=0, substitutions=0)
    assert wer(ref, hyp) == expected
    assert cpwer(ref, hyp) == expected
    assert sawer(ref, hyp) == expected
    assert rates(ref, hyp)["cpwer"] == pytest.approx(200 / 3)


def test_missing_speaker_is_deletions():
    ref = [Turn("Alice", "we can start"), Turn("Bob", "hold on")]
    hyp = [Turn("Alice", "we can start")]
    # 2 deleted words / 5 ref words = 40 %
    expected = ErrorCounts(errors=2, reference_length=5, insertions=0, deletions=2, substitutions=0)
    assert wer(ref, hyp) == expected
    assert cpwer(ref, hyp) == expected
    assert sawer(ref, hyp) == expected
    assert rates(ref, hyp)["sawer"] == pytest.approx(40.0)


def test_empty_hypothesis_is_all_deletions():
    clip = score_clip(TWO_SPEAKERS, [], registered=True)
    # 5 ref words, all deleted -> 100 %; DER: all 5 s of speech missed (collar 0.25 trims
    # 0.125 s at 0, 3 (twice: end of Alice and start of Bob) and 5 -> 5 - 0.5 = 4.5 s)
    assert clip.wer == ErrorCounts(5, 5, 0, 5, 0)
    assert clip.der == ErrorCounts(4.5, 4.5, 0.0, 4.5, 0.0)
    result = aggregate([clip])
    for name in ("wer", "cpwer", "sawer", "tcpwer", "der"):
        assert result[name] == pytest.approx(100.0), name


def test_empty_reference_counts_insertions_over_zero_length():
    hyp = [Turn("Alice", "hello there")]
    clip = score_clip([], hyp, registered=True)
    assert clip.wer == ErrorCounts(2, 0, 2, 0, 0)
    assert clip.cpwer == ErrorCounts(2, 0, 2, 0, 0)
    result = aggregate([clip])
    assert result["wer"] == math.inf
    assert result["delta_cp"] is None  # inf - inf is undefined


def test_empty_reference_and_hypothesis_is_undefined_not_zero():
    assert aggregate([score_clip([], [], registered=True)])["wer"] is None
    assert aggregate([])["wer"] is None


def test_overlapping_turns_serialisation_order():
    # Bob starts (2 s) inside Alice's turn (0-4 s); the hypothesis writes Bob first.
    ref = [Turn("Alice", "one two", 0.0, 4.0), Turn("Bob", "three", 2.0, 6.0)]
    hyp = [Turn("Bob", "three", 2.0, 6.0), Turn("Alice", "one two", 0.0, 4.0)]
    # WER: ref [one two three] (time order) vs hyp [three one two] -> 1 ins + 1 del = 2 / 3
    assert wer(ref, hyp) == ErrorCounts(2, 3, 1, 1, 0)
    # Per speaker the words are right: cpWER = saWER = tcpWER = 0, DER = 0.
    clip = score_clip(ref, hyp, registered=True)
    assert clip.cpwer.errors == clip.sawer.errors == clip.tcpwer.errors == 0
    assert clip.der.errors == 0


def test_overlap_in_der_counts_each_speaker():
    ref = [Turn("A", "x", 0.0, 10.0), Turn("B", "y", 5.0, 15.0)]
    hyp = [Turn("A", "x y", 0.0, 15.0)]
    # collar 0. Ref speech = 10 + 10 = 20 s. Hyp A maps to ref A:
    # 5-10 s two ref speakers, one hyp -> 5 s missed; 10-15 s B labelled A -> 5 s confusion.
    # DER = (5 + 5) / 20 = 50 %
    assert der(ref, hyp, collar=0.0) == ErrorCounts(10.0, 20.0, 0.0, 5.0, 5.0)


def test_reference_sorted_by_time_only_when_all_starts_known():
    hyp = [Turn("A", "hello"), Turn("B", "world")]
    timed_ref = [Turn("B", "world", 5.0, 6.0), Turn("A", "hello", 0.0, 1.0)]
    assert wer(timed_ref, hyp).errors == 0
    # Without times the given order stands: [world hello] vs [hello world] -> 1 ins + 1 del = 2
    untimed_ref = [Turn("B", "world"), Turn("A", "hello")]
    assert wer(untimed_ref, hyp) == ErrorCounts(2, 2, 1, 1, 0)
    # One unknown start is enough to keep the given order.
    partly_timed_ref = [Turn("B", "world", 5.0, 6.0), Turn("A", "hello")]
    assert wer(partly_timed_ref, hyp) == ErrorCounts(2, 2, 1, 1, 0)


def test_mandarin_cer():
    ref = [Turn("张三", "你好，世界！"), Turn("李四", "我用iPhone。")]
    hyp = [Turn("张三", "你好世届"), Turn("李四", "我用 iphone 15")]
    # ref tokens: 你 好 世 界 | 我 用 IPHONE = 7
    # hyp tokens: 你 好 世 届 | 我 用 IPHONE 15 -> 界/届 sub + 15 ins = 2 errors
    # CER = cpCER = saCER = 2 / 7
    expected = ErrorCounts(2, 7, 1, 0, 1)
    assert wer(ref, hyp, "zh") == expected
    assert cpwer(ref, hyp, "zh") == expected
    assert sawer(ref, hyp, "zh") == expected
    assert rates(ref, hyp, language="zh")["wer"] == pytest.approx(200 / 7)


# ---------------------------------------------------------------------------------------------
# Timed metrics
# ---------------------------------------------------------------------------------------------


def test_timed_metrics_need_every_turn_timed():
    untimed_hyp = [Turn("Alice", "good morning everyone"), Turn("Bob", "thank you")]
    clip = score_clip(TWO_SPEAKERS, untimed_hyp, registered=True)
    assert clip.tcpwer is None and clip.der is None
    half_timed_ref = [TWO_SPEAKERS[0], Turn("Bob", "Thank you!", 3.0, None)]
    clip = score_clip(half_timed_ref, TWO_SPEAKERS, registered=True)
    assert clip.tcpwer is None and clip.der is None
    result = aggregate([clip])
    assert result["tcpwer"] is None and result["der"] is None
    assert result["wer"] == 0.0


def test_tcpwer_penalises_words_outside_the_collar():
    ref = [Turn("A", "yes please", 0.0, 2.0)]
    far = [Turn("A", "yes please", 100.0, 102.0)]
    # Right words, 98 s late (collar 5 s): 2 del + 2 ins = 4 errors / 2 words = 200 %; cpWER 0.
    assert tcpwer(ref, far) == ErrorCounts(4, 2, 2, 2, 0)
    assert cpwer(ref, far).errors == 0
    near = [Turn("A", "yes please", 1.0, 3.0)]  # 1 s late, inside the 5 s collar
    assert tcpwer(ref, near).errors == 0


def test_der_hand_case():
    ref = [Turn("A", "a", 0.0, 10.0), Turn("B", "b", 10.0, 20.0)]
    hyp = [Turn("A", "a b", 0.0, 20.0)]
    # collar 0: B's 10 s are confused / 20 s = 50 %
    assert der(ref, hyp, collar=0.0) == ErrorCounts(10.0, 20.0, 0.0, 0.0, 10.0)
    # default collar 0.25 s (pyannote: total width, 0.125 s per side) trims 0.125 at 0 and 20 and
    # 0.25 around 10: scored = 20 - 0.5 = 19.5 s, confusion = 10 - 0.25 = 9.75 s -> still 50 %
    assert der(ref, hyp) == ErrorCounts(9.75, 19.5, 0.0, 0.0, 9.75)
    assert rates(ref, hyp)["der"] == pytest.approx(50.0)


# ---------------------------------------------------------------------------------------------
# Corpus aggregation
# ---------------------------------------------------------------------------------------------


def test_micro_average_differs_from_macro():
    long_clip = score_clip(
        [Turn("A", "one two three four five six seven eight nine ten")],
        [Turn("A", "one two three four five six seven eight nine tan")],
        registered=True,
    )  # 1 error / 10 words = 10 %
    short_clip = score_clip([Turn("A", "hello world")], [], registered=True)  # 2 / 2 = 100 %
    result = aggregate([long_clip, short_clip])
    # micro: (1 + 2) / (10 + 2) = 25 %; macro would be (10 + 100) / 2 = 55 %
    assert result["wer"] == pytest.approx(25.0)
    assert result["wer"] != pytest.approx(55.0)


def test_deltas_are_cp_and_sa_minus_wer():
    ref = [Turn("A", "red green"), Turn("B", "blue")]
    hyp = [Turn("B", "red"), Turn("A", "green blue")]
    # WER: [red green blue] vs [red green blue] = 0
    # cpWER: best pairing A<->B(hyp), B<->A(hyp): [red green] vs [red] 1 del, [blue] vs
    #        [green blue] 1 ins -> 2 / 3
    # saWER: A: [red green] vs [green blue] 1 del + 1 ins = 2; B: [blue] vs [red] 1 sub -> 3 / 3
    clip = score_clip(ref, hyp, registered=True)
    assert (clip.wer.errors, clip.cpwer.errors, clip.sawer.errors) == (0, 2, 3)
    # A perfect 3-word clip halves the rates: cpWER 2/6 = 33.3 %, saWER 3/6 = 50 %
    perfect = score_clip([Turn("A", "yes no maybe")], [Turn("A", "yes no maybe")], registered=True)
    result = aggregate([clip, perfect])
    assert result["wer"] == 0.0
    assert result["delta_cp"] == pytest.approx(100 / 3)
    assert result["delta_sa"] == pytest.approx(50.0)

    # with a nonzero WER the deltas are still differences of the corpus rates
    worse = score_clip([Turn("A", "yes no maybe")], [Turn("A", "yes no")], registered=True)
    result = aggregate([clip, worse])
    # WER 1/6, cpWER (2+1)/6, saWER (3+1)/6 -> deltas 2/6 and 3/6
    assert result["wer"] == pytest.approx(100 / 6)
    assert result["delta_cp"] == pytest.approx(100 * 2 / 6)
    assert result["delta_sa"] == pytest.approx(50.0)


def test_sawer_skipped_for_anonymous_speakers():
    clip = score_clip(TWO_SPEAKERS, TWO_SPEAKERS, registered=False)
    assert clip.sawer is None
    result = aggregate([clip, score_clip(TWO_SPEAKERS, TWO_SPEAKERS, registered=True)])
    # one clip without saWER: no saWER over a different subset of clips than the WER
    assert result["sawer"] is None and result["delta_sa"] is None
    assert result["cpwer"] == 0.0


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

_words = st.sampled_from(["yes", "no", "maybe", "hello"])
_turns = st.lists(
    st.builds(Turn, speaker=st.sampled_from(["A", "B", "C"]), text=st.lists(_words, max_size=4).map(" ".join)),
    max_size=4,
)


@settings(max_examples=60, deadline=None)
@given(ref=_turns, hyp=_turns)
def test_counts_are_consistent_and_name_matching_never_beats_best_permutation(ref, hyp):
    clip = score_clip(ref, hyp, registered=True)
    for counts in (clip.wer, clip.cpwer, clip.sawer):
        assert counts.errors == counts.insertions + counts.deletions + counts.substitutions
        assert counts.reference_length == len(normalized_tokens(" ".join(t.text for t in ref)))
    # matching by name is one of the pairings cpWER minimises over
    assert clip.cpwer.errors <= clip.sawer.errors
    # identical transcripts score zero
    assert score_clip(ref, ref, registered=True).sawer.errors == 0
