"""Scoring speaker-attributed transcripts: WER, cpWER, saWER, tcpWER and DER (SpeakerLM §5).

Every metric here returns raw counts per clip (`ErrorCounts`); `aggregate` turns a list of clips
into corpus percentages by MICRO-averaging (sum of errors / sum of reference length), as the paper
does. Averaging per-clip rates would let a short clip weigh as much as a long one.

Metrics
-------
- WER: speaker-agnostic. Reference = all reference turns joined in time order (by `start` when every
  reference turn has one, otherwise in the given order); hypothesis = hypothesis turns joined in
  output order. For Mandarin the tokens are characters, so the same number is the CER.
- cpWER: per-speaker concatenations, best reference/hypothesis speaker permutation (meeteval,
  Hungarian algorithm); the side with fewer speakers is padded with empty speakers.
- saWER: speakers matched by NAME, no permutation. Meaningful only for registered (enrolled)
  speakers, where the model must output the right name. A hypothesis name absent from the
  reference contributes all its words as insertions; a reference name absent from the hypothesis
  contributes all its words as deletions. Normaliser: total reference words.
- tcpWER (meeteval, default collar 5 s) and DER (pyannote.metrics, default collar 0.25 s,
  overlap scored) only when every reference and hypothesis turn carries `start` and `end`;
  otherwise they are None. Note pyannote's collar is the TOTAL width removed around each reference
  boundary (0.25 s = 0.125 s on each side), whereas meeteval's tcpWER collar is added on each side
  of every hypothesis word.

Text normalisation (applied identically to reference and hypothesis)
--------------------------------------------------------------------
Both languages: Unicode NFKC first, which maps full-width forms to half-width ("Ａ１，" -> "A1,").
Punctuation and symbols are any character of Unicode category P* or S*; the typographic
apostrophe "’" counts as "'".

English (`language="en"`):
  1. lower-case;
  2. digit groups separated by thousands commas are joined ("1,000" -> "1000"); a decimal point
     between digits is spoken ("3.14" -> "3 point 1 4");
  3. punctuation and symbols become spaces, except an apostrophe between two word characters
     ("don't" stays, "'quoted'" loses its quotes, "twenty-one" -> "twenty one");
  4. every token made only of digits is spelled out (`number_to_words`: "9" -> "nine",
     "42" -> "forty two", "1000" -> "one thousand"); tokens mixing letters and digits ("mp3")
     are kept as they are; ordinals, currency and percent are not expanded;
  5. whitespace collapsed; tokens are words.

Mandarin (`language="zh"`):
  1. punctuation and symbols (ASCII and full-width: ，。、？！：；“”‘’（）《》【】…～ ...) are removed,
     except an apostrophe inside a Latin word;
  2. Latin letters are upper-cased;
  3. tokens: each run of ASCII letters/digits is ONE token ("iPhone15" -> "IPHONE15"), every other
     non-space character (each CJK character) is one token. Numbers are not converted.

Edge cases
----------
- Empty hypothesis: every reference token is a deletion (100 %).
- Empty reference with a non-empty hypothesis: the hypothesis tokens are counted as insertions
  and the reference length is 0. In `aggregate`, a rate whose reference length sums to 0 is
  `inf` when there are errors and None (undefined) when there are none.
- A metric that some clips lack (saWER on unregistered clips, tcpWER/DER on clips without times)
  aggregates to None rather than to a score over a different subset of clips than the WER.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import kaldialign
from meeteval.wer import cp_word_error_rate
from meeteval.wer import time_constrained_minimum_permutation_word_error_rate as tcp_word_error_rate

from speakerlm.turns import Turn

LANGUAGES = ("en", "zh")
DEFAULT_TCP_COLLAR = 5.0  # seconds, meeteval's usual tcpWER setting
DEFAULT_DER_COLLAR = 0.25  # seconds, total width in pyannote's convention


# ---------------------------------------------------------------------------------------------
# Text normalisation
# ---------------------------------------------------------------------------------------------

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred"))


def number_to_words(n: int) -> str:
    """Spell a non-negative integer in English words without hyphens or "and": 42 -> "forty two".

    Numbers of a trillion or more are read digit by digit (they are phone numbers, codes, ...).
    """
    if n < 0:
        raise ValueError(f"number_to_words takes a non-negative integer, got {n}")
    if n >= 10**12:
        return " ".join(_ONES[int(d)] for d in str(n))
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    for scale, name in _SCALES:
        if n >= scale:
            head, rest = divmod(n, scale)
            return f"{number_to_words(head)} {name}" + ("" if rest == 0 else " " + number_to_words(rest))
    raise AssertionError("unreachable")


def _is_punctuation_or_symbol(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PS"


def _strip_punctuation(text: str, word_char: str) -> str:
    """Punctuation/symbols -> spaces; an apostrophe survives only between two `word_char`s."""
    text = text.replace("’", "'")
    text = "".join(" " if ch != "'" and _is_punctuation_or_symbol(ch) else ch for ch in text)
    return re.sub(rf"(?<!{word_char})'|'(?!{word_char})", " ", text)


def _spell_decimal(match: re.Match) -> str:
    return f"{match.group(1)} point {' '.join(match.group(2))}"


def _english_tokens(text: str) -> list[str]:
    text = text.lower()
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = re.sub(r"(\d+)\.(\d+)", _spell_decimal, text)
    # "_" is a word character for regexes but punctuation for a transcript.
    text = _strip_punctuation(text, word_char=r"[^\W_]").replace("_", " ")
    spelled = (number_to_words(int(tok)) if tok.isascii() and tok.isdigit() else tok for tok in text.split())
    # A spelled number is several tokens ("forty two"); re-split so each word counts once.
    return " ".join(spelled).split()


def _mandarin_tokens(text: str) -> list[str]:
    text = _strip_punctuation(text, word_char="[A-Za-z0-9]").upper()
    # A Latin word or number is one token; anything else non-blank (a CJK character) is one each.
    return re.findall(r"[A-Z0-9]+(?:'[A-Z0-9]+)*|\S", text)


def scoring_language(language: Optional[str]) -> str:
    """How speech in `language` (a Whisper code) is scored: "zh" (characters) for Chinese, else "en" (words)."""
    return "zh" if (language or "").startswith("zh") else "en"


def normalized_tokens(text: str, language: str = "en") -> list[str]:
    """The scoring tokens of `text`: English words or Mandarin characters (see module docstring)."""
    text = unicodedata.normalize("NFKC", text)
    if language == "en":
        return _english_tokens(text)
    if language == "zh":
        return _mandarin_tokens(text)
    raise ValueError(f"language must be one of {LANGUAGES}, got {language!r}")


# ---------------------------------------------------------------------------------------------
# Counts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorCounts:
    """Raw error counts of one metric on one clip (or summed over clips).

    For the WER family the unit is tokens. For DER the unit is seconds, with
    insertions = false alarm, deletions = missed detection, substitutions = speaker confusion.
    """

    errors: float
    reference_length: float
    insertions: float
    deletions: float
    substitutions: float

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        return ErrorCounts(
            self.errors + other.errors,
            self.reference_length + other.reference_length,
            self.insertions + other.insertions,
            self.deletions + other.deletions,
            self.substitutions + other.substitutions,
        )

    @staticmethod
    def zero() -> "ErrorCounts":
        return ErrorCounts(0, 0, 0, 0, 0)


@dataclass(frozen=True)
class ClipScores:
    """All metric counts for one clip. None = the metric does not apply to this clip."""

    wer: ErrorCounts  # CER for Mandarin
    cpwer: ErrorCounts
    sawer: Optional[ErrorCounts]  # only for registered (named) speakers
    tcpwer: Optional[ErrorCounts]  # only when every turn has start and end
    der: Optional[ErrorCounts]  # only when every turn has start and end


# ---------------------------------------------------------------------------------------------
# Metrics on one clip
# ---------------------------------------------------------------------------------------------


def _reference_order(turns: Sequence[Turn]) -> list[Turn]:
    # The paper's model emits no times; references usually have them, and time order is reading order.
    if all(t.start is not None for t in turns):
        return sorted(turns, key=lambda t: t.start)  # stable: ties keep the given order
    return list(turns)


def _tokens(turns: Iterable[Turn], language: str) -> list[str]:
    return [tok for t in turns for tok in normalized_tokens(t.text, language)]


def _tokens_by_speaker(turns: Iterable[Turn], language: str) -> dict[str, list[str]]:
    by_speaker: dict[str, list[str]] = {}
    for t in turns:
        by_speaker.setdefault(t.speaker, []).extend(normalized_tokens(t.text, language))
    return by_speaker


def _edit_counts(reference: list[str], hypothesis: list[str]) -> ErrorCounts:
    d = kaldialign.edit_distance(reference, hypothesis)
    return ErrorCounts(d["total"], len(reference), d["ins"], d["del"], d["sub"])


def _has_times(turns: Iterable[Turn]) -> bool:
    return all(t.start is not None and t.end is not None for t in turns)


def wer(reference: Sequence[Turn], hypothesis: Sequence[Turn], language: str = "en") -> ErrorCounts:
    """Speaker-agnostic WER counts (CER for "zh"): all words of the clip, speakers ignored."""
    return _edit_counts(
        _tokens(_reference_order(reference), language), _tokens(hypothesis, language)
    )


def cpwer(reference: Sequence[Turn], hypothesis: Sequence[Turn], language: str = "en") -> ErrorCounts:
    """cpWER counts: per-speaker concatenations under the best speaker permutation (meeteval)."""

    def as_meeteval(turns):
        # meeteval splits "words" on whitespace, so each Mandarin character becomes a word.
        return {spk: " ".join(toks) for spk, toks in _tokens_by_speaker(turns, language).items()}

    # Turns are already in scoring order; sort=False also stops meeteval from looking for times.
    er = cp_word_error_rate(
        as_meeteval(_reference_order(reference)),
        as_meeteval(hypothesis),
        reference_sort=False,
        hypothesis_sort=False,
    )
    return ErrorCounts(er.errors, er.length, er.insertions, er.deletions, er.substitutions)


def sawer(reference: Sequence[Turn], hypothesis: Sequence[Turn], language: str = "en") -> ErrorCounts:
    """Speaker-attributed WER counts: speakers matched by name, no permutation."""
    ref = _tokens_by_speaker(_reference_order(reference), language)
    hyp = _tokens_by_speaker(hypothesis, language)
    total = ErrorCounts.zero()
    for name in ref.keys() | hyp.keys():
        total += _edit_counts(ref.get(name, []), hyp.get(name, []))
    return total


def tcpwer(
    reference: Sequence[Turn],
    hypothesis: Sequence[Turn],
    language: str = "en",
    collar: float = DEFAULT_TCP_COLLAR,
) -> Optional[ErrorCounts]:
    """Time-constrained cpWER counts (meeteval); None unless every turn has start and end."""
    if not (_has_times(reference) and _has_times(hypothesis)):
        return None

    def as_seglst(turns):
        return [
            {
                "speaker": t.speaker,
                "words": " ".join(normalized_tokens(t.text, language)),
                "start_time": t.start,
                "end_time": t.end,
            }
            for t in turns
        ]

    er = tcp_word_error_rate(as_seglst(reference), as_seglst(hypothesis), collar=collar)
    return ErrorCounts(er.errors, er.length, er.insertions, er.deletions, er.substitutions)


def der(
    reference: Sequence[Turn], hypothesis: Sequence[Turn], collar: float = DEFAULT_DER_COLLAR
) -> Optional[ErrorCounts]:
    """Diarization error counts in seconds (pyannote.metrics, overlap scored); None without times."""
    if not (_has_times(reference) and _has_times(hypothesis)):
        return None
    if not reference and not hypothesis:
        return ErrorCounts.zero()
    # pyannote takes seconds to import; only clips with times need it.
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    def as_annotation(turns):
        annotation = Annotation()
        for track, t in enumerate(turns):  # one track per turn, so overlapping turns all count
            if t.end < t.start:
                raise ValueError(f"turn ends before it starts: {t}")
            annotation[Segment(t.start, t.end), track] = t.speaker
        return annotation

    # Outside every turn there is nothing to get wrong, so the turns' extent is the whole
    # evaluation map; passing it silences pyannote's "uem was approximated" warning.
    timed = [*reference, *hypothesis]
    uem = Timeline([Segment(min(t.start for t in timed), max(t.end for t in timed))])
    metric = DiarizationErrorRate(collar=collar, skip_overlap=False)
    c = metric.compute_components(as_annotation(reference), as_annotation(hypothesis), uem=uem)
    return ErrorCounts(
        errors=c["false alarm"] + c["missed detection"] + c["confusion"],
        reference_length=c["total"],
        insertions=c["false alarm"],
        deletions=c["missed detection"],
        substitutions=c["confusion"],
    )


def score_clip(
    reference: Sequence[Turn],
    hypothesis: Sequence[Turn],
    *,
    registered: bool,
    language: str = "en",
    tcp_collar: float = DEFAULT_TCP_COLLAR,
    der_collar: float = DEFAULT_DER_COLLAR,
) -> ClipScores:
    """Every applicable metric's counts for one clip.

    `registered`: the speakers are enrolled and named, so saWER (match by name) is computed;
    with anonymous labels ("spk 0") it is not.
    """
    return ClipScores(
        wer=wer(reference, hypothesis, language),
        cpwer=cpwer(reference, hypothesis, language),
        sawer=sawer(reference, hypothesis, language) if registered else None,
        tcpwer=tcpwer(reference, hypothesis, language, collar=tcp_collar),
        der=der(reference, hypothesis, collar=der_collar),
    )


# ---------------------------------------------------------------------------------------------
# Corpus scores
# ---------------------------------------------------------------------------------------------


def error_rate_percent(counts: Optional[ErrorCounts]) -> Optional[float]:
    """100 * errors / reference length; inf when only the reference is empty, None for 0/0."""
    if counts is None:
        return None
    if counts.reference_length == 0:
        return math.inf if counts.errors > 0 else None
    return 100.0 * counts.errors / counts.reference_length


def _micro_sum(parts: list[Optional[ErrorCounts]]) -> Optional[ErrorCounts]:
    if not parts or any(p is None for p in parts):
        return None
    return sum(parts[1:], parts[0])


def _difference(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return a - b


def aggregate(clips: Sequence[ClipScores]) -> dict[str, Optional[float]]:
    """Corpus percentages, micro-averaged over `clips`.

    Keys (always present): "wer", "cpwer", "sawer", "delta_cp" (= cpwer - wer),
    "delta_sa" (= sawer - wer), "tcpwer", "der". A value is None when the metric is missing
    from any clip, when there are no clips, or (for a rate) when both errors and reference
    length sum to 0; a rate is inf when the reference length sums to 0 but errors do not.
    """
    rates = {
        name: error_rate_percent(_micro_sum([getattr(c, name) for c in clips]))
        for name in ("wer", "cpwer", "sawer", "tcpwer", "der")
    }
    return {
        "wer": rates["wer"],
        "cpwer": rates["cpwer"],
        "sawer": rates["sawer"],
        "delta_cp": _difference(rates["cpwer"], rates["wer"]),
        "delta_sa": _difference(rates["sawer"], rates["wer"]),
        "tcpwer": rates["tcpwer"],
        "der": rates["der"],
    }
