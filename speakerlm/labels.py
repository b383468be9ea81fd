"""The transcript grammar: turns ↔ `Alice: hi, how are you? spk 0: fine.` (the paper's Fig. 2–3 format).

Targets are chronological turns. A registered speaker who speaks is written with their name; an
unregistered one as `spk k`, k counting unregistered speakers in order of first appearance. Distractors
(registered but silent) never appear. One formatter and one parser; `parse(format(t), names) == t`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

from speakerlm.turns import Turn

ANONYMOUS = "spk {}"  # label of the k-th unregistered speaker
_ANON_RE = re.compile(r"spk \d+")


def is_anonymous(label: str) -> bool:
    return bool(_ANON_RE.fullmatch(label))


def target_turns(reference: Sequence[Turn], registered: Iterable[str] = ()) -> list[Turn]:
    """Relabel reference turns (any speaker ids) as the model must write them: registered speakers keep
    their names, the others become `spk 0`, `spk 1`, … by first appearance. Chronological when timed."""
    registered = set(registered)
    ordered = sorted(reference, key=lambda t: t.start) if all(t.start is not None for t in reference) else list(reference)
    anonymous: dict[str, str] = {}
    out = []
    for t in ordered:
        if t.speaker in registered:
            label = t.speaker
        else:
            label = anonymous.setdefault(t.speaker, ANONYMOUS.format(len(anonymous)))
        out.append(Turn(label, t.text, t.start, t.end))
    return out


def format_turns(turns: Sequence[Turn]) -> str:
    """`Alice: hi. spk 0: fine.` — one line, a space between turns."""
    return " ".join(f"{t.speaker}: {t.text.strip()}" for t in turns)


@dataclass(frozen=True)
class Parsed:
    turns: list[Turn]  # what could be read
    unknown_names: list[str] = field(default_factory=list)  # labels that were neither enrolled nor `spk k`
    malformed: bool = False  # text before the first label, or an empty turn


def parse_turns(text: str, names: Optional[Iterable[str]] = None) -> Parsed:
    """Read `Label: text Label: text …`. Never raises on malformed model output.

    Labels are `spk k`, the enrolled `names` (any spelling), and any run of up to four capitalised
    words before a colon. With `names` given, a label of the last kind that is not enrolled is kept but
    reported in `unknown_names` (a hallucinated or misspelt name).
    """
    known = set(names or ())
    alternatives = [re.escape(n) for n in sorted(known, key=len, reverse=True)]
    alternatives += [r"spk \d+", r"[A-Z][\w.'-]*(?: [A-Z][\w.'-]*){0,3}"]
    label_re = re.compile(r"(?:^|(?<=\s))(" + "|".join(alternatives) + r"):(?=\s|$)")
    matches = list(label_re.finditer(text))
    malformed = bool(text.strip()) and (not matches or text[: matches[0].start()].strip() != "")
    turns, unknown = [], []
    for i, m in enumerate(matches):
        body = text[m.end() : matches[i + 1].start() if i + 1 < len(matches) else len(text)].strip()
        label = m.group(1)
        if not body:
            malformed = True
            continue
        if names is not None and label not in known and not _ANON_RE.fullmatch(label):
            unknown.append(label)
        turns.append(Turn(label, body))
    if malformed and not matches and text.strip():
        turns = [Turn(ANONYMOUS.format(0), text.strip())]  # keep the words: unlabelled text is one speaker
    return Parsed(turns, sorted(set(unknown)), malformed)
