"""The one record that flows through the whole project: who said what, and when.

Simulator references, model targets, decoded output, the cascade baseline, the writers and the
metrics all speak in lists of `Turn`. Times are optional because the paper's model emits none.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Optional

Seconds = float


@dataclass(frozen=True)
class Turn:
    speaker: str  # an enrolled name ("Alice") or an anonymous label ("spk 0")
    text: str  # what was said, as written (punctuation kept)
    start: Optional[Seconds] = None  # turn start in the recording, if known
    end: Optional[Seconds] = None  # turn end in the recording, if known

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "Turn":
        return Turn(
            speaker=str(d["speaker"]),
            text=str(d["text"]),
            start=None if d.get("start") is None else float(d["start"]),
            end=None if d.get("end") is None else float(d["end"]),
        )


def speakers_in_order(turns: Iterable[Turn]) -> list[str]:
    """Speakers in order of first appearance (the order anonymous `spk k` labels follow)."""
    seen: dict[str, None] = {}
    for t in turns:
        seen.setdefault(t.speaker, None)
    return list(seen)


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
