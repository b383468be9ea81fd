"""The records that flow through the whole project: who said what, and when.

Simulator references, model targets, decoded output, every engine, the writers and the metrics speak
in lists of `Turn`; a transcription returns a `Transcript`. Times are optional because the paper's
model emits none. Speakers are enrolled names (`Alice`) or anonymous labels (`spk 0`, `spk 1`, …,
numbered by first appearance), the paper's `Name: text` grammar (its Fig. 2–3).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Iterable, Optional, Sequence

Seconds = float
ANONYMOUS = "spk {}"  # label of the k-th unregistered speaker
_ANON_RE = re.compile(r"spk \d+")


@dataclass(frozen=True)
class Turn:
    speaker: str  # an enrolled name ("Alice") or an anonymous label ("spk 0")
    text: str  # what was said, as written (punctuation kept)
    start: Optional[Seconds] = None  # turn start in the recording, if known
    end: Optional[Seconds] = None  # turn end in the recording, if known
    # (start, end) of each word of `text` (split on whitespace), where a reference has word alignments
    # (lhotse's); only cutting a reference into segments reads them
    word_times: Optional[tuple[tuple[Seconds, Seconds], ...]] = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["word_times"] is None:
            del d["word_times"]
        return d

    @staticmethod
    def from_dict(d: dict) -> "Turn":
        return Turn(
            speaker=str(d["speaker"]),
            text=str(d["text"]),
            start=None if d.get("start") is None else float(d["start"]),
            end=None if d.get("end") is None else float(d["end"]),
            word_times=tuple((float(a), float(b)) for a, b in d["word_times"]) if d.get("word_times") else None,
        )


@dataclass(frozen=True)
class Transcript:
    """What a transcription returns (and the writers write)."""

    audio: str  # path of the transcribed file, as given
    turns: list[Turn]  # chronological
    duration: Seconds  # of the audio
    metadata: dict = field(default_factory=dict)  # engine, model, timings…: whatever the run records


def is_anonymous(label: str) -> bool:
    return bool(_ANON_RE.fullmatch(label))


def speakers_in_order(turns: Iterable[Turn]) -> list[str]:
    """Speakers in order of first appearance (the order anonymous `spk k` labels follow)."""
    return list(dict.fromkeys(t.speaker for t in turns))


def target_turns(reference: Sequence[Turn], registered: Iterable[str] = ()) -> list[Turn]:
    """Relabel reference turns (any speaker ids) as the model must write them: registered speakers keep
    their names, the others become `spk 0`, `spk 1`, … by first appearance. Chronological when timed."""
    registered = set(registered)
    ordered = sorted(reference, key=lambda t: t.start) if all(t.start is not None for t in reference) else list(reference)
    anonymous: dict[str, str] = {}
    out = []
    for t in ordered:
        label = t.speaker if t.speaker in registered else anonymous.setdefault(t.speaker, ANONYMOUS.format(len(anonymous)))
        out.append(Turn(label, t.text, t.start, t.end))
    return out


def renumber_anonymous(turns: Sequence[Turn]) -> list[Turn]:
    """Anonymous labels renumbered spk 0, spk 1, … by first appearance."""
    order = list(dict.fromkeys(t.speaker for t in turns if is_anonymous(t.speaker)))
    rename = {label: ANONYMOUS.format(i) for i, label in enumerate(order)}
    return [Turn(rename.get(t.speaker, t.speaker), t.text, t.start, t.end) for t in turns]


def check_speaker_name(name: str) -> str:
    """Refuse names that would break the `Name: text` grammar or collide with anonymous labels."""
    from speakerlm.errors import UserError

    stripped = name.strip()
    if not stripped:
        raise UserError("speaker name is empty; give a name such as Alice")
    if ":" in stripped or "\n" in stripped:
        raise UserError(f"speaker name {name!r} contains ':' or a newline, which the `Name: text` output cannot hold")
    if stripped.lower().startswith("spk ") and stripped[4:].strip().isdigit():
        raise UserError(f"speaker name {name!r} looks like an anonymous label (spk k); choose another name")
    if len(stripped) > 64:
        raise UserError(f"speaker name {name[:20]!r}… is longer than 64 characters; use a shorter name")
    return stripped
