"""The text pool: clean, speakable sentences; stable, disjoint splits; Mandarin behind pypinyin."""

import importlib.util

import pytest

from speakerlm.errors import UserError
from speakerlm.data.texts import (FORTUNES_DIR, SPLITS, TextPool, clean_sentence, fortune_paragraphs, normalise,
                             split_of, split_sentences, to_pinyin)

LEXICON = frozenset("the cat sat on a mat it was warm and i like tea".split())


@pytest.mark.parametrize("raw,expected", [
    ("  The cat\tsat on  the mat. ", "The cat sat on the mat."),
    ("\u201cIt was warm,\u201d I said.", '"It was warm," I said.'),
    ("Solution: Check the cat first.", "Check the cat first."),
])
def test_clean_sentence_normalises_what_it_keeps(raw, expected):
    assert clean_sentence(raw) == expected


@pytest.mark.parametrize("raw", [
    "See http://example.org for more.",  # URL
    "I have 3 cats.",  # digits: TTS and reference would disagree
    "The NASA rocket is big.",  # acronym: spelled by TTS
    "Call foo_bar now.",  # identifier
    "Too short.",  # 2 words
    " ".join(["word"] * 21) + ".",  # 21 words
    "no capital letter here.",
    "An unfinished sentence",
    "Use (parentheses) here.",
])
def test_clean_sentence_rejects_unspeakable_text(raw):
    assert clean_sentence(raw) is None


def test_lexicon_filter_keeps_known_words_and_names():
    assert clean_sentence("I like the warm tea.", LEXICON) == "I like the warm tea."
    assert clean_sentence("I like Zorblax tea.", LEXICON) == "I like Zorblax tea."  # a capitalised name mid-sentence
    assert clean_sentence("I like zorblax tea.", LEXICON) is None


def test_sentences_split_but_not_after_titles():
    assert split_sentences("Hello there. Mr. Smith came in! Did he? Yes.") == [
        "Hello there.", "Mr. Smith came in!", "Did he?", "Yes."]


def test_splits_are_deterministic_disjoint_and_deduplicated():
    sentences = [f"The cat number {w} sat on the mat." for w in ("one", "two", "three")] * 2
    sentences += ["THE CAT NUMBER ONE SAT ON THE MAT!"]  # a duplicate up to case and punctuation
    pool = TextPool.from_sentences(sentences * 3)
    assert sum(pool.counts().values()) == 3
    keys = {s: {normalise(t) for t in pool.split(s)} for s in SPLITS}
    assert not (keys["train"] & keys["dev"] or keys["train"] & keys["test"] or keys["dev"] & keys["test"])
    assert pool == TextPool.from_sentences(list(reversed(sentences)))
    for s in SPLITS:
        assert all(split_of(normalise(t)) == s for t in pool.split(s))


def test_split_fractions_are_roughly_as_configured():
    counts = {s: 0 for s in SPLITS}
    for i in range(20000):
        counts[split_of(f"sentence {i}")] += 1
    assert 0.88 < counts["train"] / 20000 < 0.92 and 0.04 < counts["dev"] / 20000 < 0.06


@pytest.mark.skipif(not FORTUNES_DIR.is_dir(), reason="Debian fortunes not installed")
def test_fortunes_yield_thousands_of_clean_sentences():
    kept = {c for p in fortune_paragraphs() for c in map(clean_sentence, split_sentences(p)) if c}
    assert len(kept) > 5000


def test_pinyin_needs_pypinyin_and_says_so():
    if importlib.util.find_spec("pypinyin") is None:
        with pytest.raises(UserError, match="pypinyin"):
            to_pinyin("你好")
    else:
        assert to_pinyin("你好") == "ni3 hao3"
