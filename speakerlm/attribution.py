"""Where attribution fails: the words a system recognised correctly, sorted by why their speaker is
wrong.

cpWER mixes recognition and attribution errors; Δcp says how much attribution costs, not why. Here
the hypothesis is aligned to the reference speaker-agnostically (the WER alignment), so each correctly
recognised word has a reference speaker and a hypothesis speaker. Hypothesis speakers are mapped to
reference speakers by the assignment that keeps the most correct words (the cpWER assignment up to
ties), and every correct word whose mapped speaker is not its own is *misattributed*. Each such word
is counted twice:

- by the reference around it (`CONTEXTS`, first that applies): spoken while another speaker talks
  (`overlap`), in a reference turn under 2 s (`short turn`), within 1 s of its turn's start or end
  (`turn edge`), or in the middle of a longer, clean turn (`mid turn`). A word's time is placed
  uniformly within its reference turn: the simulator records turn times, not word times.
- by the hypothesis turn that holds it: the turn's words come from several reference speakers and
  this word is not of the turn's main one (`segmentation`: a turn boundary is missing), or the turn's
  main speaker is this word's but the turn carries the wrong label (`speaker choice`).

Written by hand: meeteval reports cpWER's counts and assignment, not which words moved speaker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from speakerlm.metrics import normalized_tokens
from speakerlm.turns import Turn

CONTEXTS = ("overlap", "short turn", "turn edge", "mid turn")
SHORT_TURN_S = 2.0
EDGE_S = 1.0


@dataclass
class AttributionCounts:
    """Counts over correctly recognised words (add clips with +)."""

    correct: int = 0  # reference words recognised correctly
    misattributed: int = 0  # of those, under a hypothesis speaker mapped to another reference speaker
    by_context: dict[str, list[int]] = field(default_factory=lambda: {c: [0, 0] for c in CONTEXTS})  # [correct, mis]
    segmentation: int = 0  # misattributed, in a hypothesis turn mainly of another speaker
    speaker_choice: int = 0  # misattributed, in a hypothesis turn mainly of their own speaker
    turns: int = 0  # hypothesis turns holding correct words
    mixed_turns: int = 0  # of those, holding correct words of more than one reference speaker

    def __add__(self, other: "AttributionCounts") -> "AttributionCounts":
        contexts = {c: [a + b for a, b in zip(self.by_context[c], other.by_context[c])] for c in CONTEXTS}
        return AttributionCounts(self.correct + other.correct, self.misattributed + other.misattributed, contexts,
                                 self.segmentation + other.segmentation, self.speaker_choice + other.speaker_choice,
                                 self.turns + other.turns, self.mixed_turns + other.mixed_turns)

    def summary(self) -> dict[str, float]:
        """Percentages: misattributed of correct words, per context (of that context's correct words),
        the split into segmentation and speaker choice (of misattributed words), mixed turns."""
        pct = lambda a, b: 100.0 * a / b if b else float("nan")  # noqa: E731
        out = {"correct words": float(self.correct), "misattributed": pct(self.misattributed, self.correct)}
        for c in CONTEXTS:
            n, mis = self.by_context[c]
            out[f"{c} share"] = pct(n, self.correct)
            out[f"{c} misattributed"] = pct(mis, n)
        out["segmentation"] = pct(self.segmentation, self.misattributed)
        out["speaker choice"] = pct(self.speaker_choice, self.misattributed)
        out["mixed turns"] = pct(self.mixed_turns, self.turns)
        return out


def _reference_words(reference: Sequence[Turn], language: str) -> list[tuple[str, str, str]]:
    """(token, speaker, context) of every reference word, turns in time order."""
    turns = sorted(reference, key=lambda t: t.start if t.start is not None else 0.0)
    timed = all(t.start is not None and t.end is not None for t in turns)
    words = []
    for i, t in enumerate(turns):
        tokens = normalized_tokens(t.text, language)
        for k, tok in enumerate(tokens):
            if not timed:
                words.append((tok, t.speaker, "mid turn"))
                continue
            at = t.start + (k + 0.5) / len(tokens) * (t.end - t.start)
            if any(o.speaker != t.speaker and o.start <= at < o.end for j, o in enumerate(turns) if j != i):
                context = "overlap"
            elif t.end - t.start < SHORT_TURN_S:
                context = "short turn"
            elif at - t.start < EDGE_S or t.end - at < EDGE_S:
                context = "turn edge"
            else:
                context = "mid turn"
            words.append((tok, t.speaker, context))
    return words


def attribution_counts(reference: Sequence[Turn], hypothesis: Sequence[Turn], language: str = "en") -> AttributionCounts:
    import kaldialign
    from scipy.optimize import linear_sum_assignment

    ref = _reference_words(reference, language)
    hyp = [(tok, t.speaker, i) for i, t in enumerate(hypothesis) for tok in normalized_tokens(t.text, language)]
    eps = "\x00"
    pairs = kaldialign.align([w[0] for w in ref], [w[0] for w in hyp], eps)
    # walk the alignment: correct pairs give (reference word, hypothesis word)
    correct, r, h = [], 0, 0
    for a, b in pairs:
        if a != eps and b != eps and a == b:
            correct.append((ref[r], hyp[h]))
        r += a != eps
        h += b != eps
    out = AttributionCounts(correct=len(correct))
    if not correct:
        return out
    ref_speakers = sorted({w[1] for w, _ in correct})
    hyp_speakers = sorted({w[1] for _, w in correct})
    counts = np.zeros((len(hyp_speakers), len(ref_speakers)), int)
    for rw, hw in correct:
        counts[hyp_speakers.index(hw[1]), ref_speakers.index(rw[1])] += 1
    rows, cols = linear_sum_assignment(-counts)
    mapped = {hyp_speakers[i]: ref_speakers[j] for i, j in zip(rows, cols)}
    # each hypothesis turn's main reference speaker, from its correct words
    by_turn: dict[int, dict[str, int]] = {}
    for rw, hw in correct:
        by_turn.setdefault(hw[2], {}).setdefault(rw[1], 0)
        by_turn[hw[2]][rw[1]] += 1
    main = {i: max(c, key=c.get) for i, c in by_turn.items()}
    out.turns, out.mixed_turns = len(by_turn), sum(len(c) > 1 for c in by_turn.values())
    for rw, hw in correct:
        wrong = mapped.get(hw[1]) != rw[1]
        out.by_context[rw[2]][0] += 1
        if wrong:
            out.misattributed += 1
            out.by_context[rw[2]][1] += 1
            if main[hw[2]] != rw[1]:
                out.segmentation += 1
            else:
                out.speaker_choice += 1
    return out
