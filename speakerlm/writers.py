"""Output formats: a small registry of writers, each turning a transcript into the text of one file.

txt   `Name: text` lines (the model's own grammar)
json  {"audio": ..., "turns": [{"speaker", "text", "start", "end"}], ...run metadata}
srt   SubRip subtitles, speaker name as a prefix
vtt   WebVTT with <v Speaker> voice tags
rttm  NIST RTTM speaker segments (needs times)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

from speakerlm.turns import Transcript, Turn

def _timestamp(seconds: float, sep: str) -> str:
    ms = int(round(max(seconds, 0.0) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _timed(t: Transcript) -> list[Turn]:
    """Turns with times; a turn without times gets the whole recording (subtitles need some span)."""
    return [
        tr if tr.start is not None and tr.end is not None else Turn(tr.speaker, tr.text, 0.0, t.duration)
        for tr in t.turns
    ]


def write_txt(t: Transcript) -> str:
    return "".join(f"{tr.speaker}: {tr.text}\n" for tr in t.turns)


def write_json(t: Transcript) -> str:
    body = {"audio": t.audio, "duration": round(t.duration, 3), "turns": [tr.to_dict() for tr in t.turns], **t.metadata}
    return json.dumps(body, ensure_ascii=False, indent=2) + "\n"


def write_srt(t: Transcript) -> str:
    blocks = [
        f"{i}\n{_timestamp(tr.start, ',')} --> {_timestamp(tr.end, ',')}\n{tr.speaker}: {tr.text}\n"
        for i, tr in enumerate(_timed(t), start=1)
    ]
    return "\n".join(blocks)


def write_vtt(t: Transcript) -> str:
    blocks = [
        f"{_timestamp(tr.start, '.')} --> {_timestamp(tr.end, '.')}\n<v {tr.speaker}>{tr.text}\n" for tr in _timed(t)
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def rttm_line(recording_id: str, speaker: str, start: float, duration: float) -> str:
    """One NIST RTTM speaker segment (spaces, which RTTM fields cannot hold, become underscores)."""
    return (f"SPEAKER {recording_id.replace(' ', '_')} 1 {start:.3f} {duration:.3f} <NA> <NA> "
            f"{speaker.replace(' ', '_')} <NA> <NA>\n")


def write_rttm(t: Transcript) -> str:
    file_id = Path(t.audio).stem or "audio"
    return "".join(rttm_line(file_id, tr.speaker, tr.start, tr.end - tr.start) for tr in _timed(t))


WRITERS: dict[str, Callable[[Transcript], str]] = {
    "txt": write_txt,
    "json": write_json,
    "srt": write_srt,
    "vtt": write_vtt,
    "rttm": write_rttm,
}


def get_writer(fmt: str) -> Callable[[Transcript], str]:
    return WRITERS[fmt]


def output_path(audio: str, fmt: str, output_dir: Optional[Path]) -> Optional[Path]:
    """`DIR/<input stem>.<format>`, or None for stdout."""
    return None if output_dir is None else Path(output_dir) / f"{Path(audio).stem}.{fmt}"
