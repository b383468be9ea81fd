"""Evaluation data: multi-speaker recordings with a who-said-what reference → `EvalClip`s.

Every format ends up as the same record, so the evaluator never cares where the data came from:

  lhotse   a directory (or one manifest file) of lhotse manifests: a recordings + supervisions pair
           (`*recordings*.jsonl[.gz]`, `*supervisions*.jsonl[.gz]`) or a cuts manifest
           (`*cuts*.jsonl[.gz]`); supervisions need speaker and text.
  stm      NIST STM lines `file channel speaker start end [<label>] words`; audio `<audio dir>/<file>.*`.
  seglst   meeteval SegLST json (a list, or jsonl) of {"session_id", "speaker", "start_time",
           "end_time", "words"}; audio `<audio dir>/<session_id>.*`.
  rttm     RTTM (who spoke when) + STM (the words): each STM segment is attributed to the RTTM speaker
           whose turns overlap it most (the nearest one when none overlaps); times stay the STM's.

Enrolment (optional, any format): a JSON sidecar (default `enrolment.json` beside the data), paths
relative to the sidecar's folder. Ours, and the simulator's (`speakerlm/data/simulate.py`), are both read:

  {"<clip or recording id>": {"enrolment":   {"<reference speaker>": ["alice_1.wav", ...], ...},
                              "distractors": {"<other speaker>": ["zed_1.wav", ...], ...}}, ...}
  {"<conversation id>": {"audio": ..., "speakers": {"<voice id>": {"path": "enrolment/…wav", ...}},
                         "distractors": [{"voice": "<voice id>", "path": "distractors/…wav"}, ...]}}

A speaker the sidecar does not enrol gets enrolment cut from their own reference turns OUTSIDE the
evaluated clip (other recordings, or other windows of the same one), taking only turns no one else
talks over; a clip without a distractor pool is offered every other speaker of the dataset. What
cannot be found stays missing, and the evaluator refuses Match/Over-Regist for it: the evaluated audio
is never used as its own enrolment.

`speaker_scope` says what a speaker label means: "dataset" (the same label is the same person in
every recording, as in AMI or the simulator) or "recording" (labels such as A/B restart in every
recording, as in CALLHOME); with "recording", enrolment and distractors never cross recordings by name.
"""

from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from speakerlm.audio import Pathlike, readable, load_audio, prepare_wave
from speakerlm.errors import UserError
from speakerlm.turns import Seconds, Turn, speakers_in_order
from speakerlm.voiceprints import MIN_ENROL_SECONDS

FORMATS = ("lhotse", "stm", "seglst", "rttm")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus")
SPEAKER_SCOPES = ("dataset", "recording")
ENROL_SECONDS = 10.0  # cut this much per speaker (the paper enrols 2–10 s clips)
STM_SKIP = ("ignore_time_segment_in_scoring", "inter_segment_gap")  # NIST markers, not speech


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioSpan:
    """A whole audio file, or the [start, end) seconds of one; or the mix of several files (the
    per-channel files of a multi-source recording, e.g. AMI's headsets) over the same span."""

    path: Path
    start: Seconds = 0.0
    end: Optional[Seconds] = None  # None = to the end of the file
    channel: Optional[int] = None  # one channel of a multi-channel file; None = the mean of all
    mix: tuple[Path, ...] = ()  # further files of the same recording, averaged with `path`

    def load(self) -> np.ndarray:
        """SAMPLE_RATE mono float32 samples of the span (only the span is read from disk)."""
        if self.start == 0.0 and self.end is None and self.channel is None and not self.mix:
            return load_audio(self.path)
        parts = [self._read(p) for p in (self.path, *self.mix)]
        rates = {sr for _, sr in parts}
        if len(rates) > 1:
            raise UserError(f"{self.path}: the files of this recording have different sample rates "
                            f"({', '.join(map(str, sorted(rates)))} Hz); resample them to one rate")
        n = min(w.size for w, _ in parts)
        wave = np.stack([w[:n] for w, _ in parts], axis=1) if len(parts) > 1 else parts[0][0]
        return prepare_wave(wave, rates.pop(), source=f"{self.path} [{self.start:.2f}–{self.end or math.inf:.2f} s]")

    def _read(self, path: Path) -> tuple[np.ndarray, int]:
        """The span of one file, mono (`channel`, or the mean of its channels), at the file's rate."""
        import soundfile as sf

        if not path.exists():
            raise UserError(f"{path}: no such file; check the path")
        with readable(path):
            rate = sf.info(str(path)).samplerate
            stop = None if self.end is None else int(round(self.end * rate))
            wave, sr = sf.read(str(path), start=int(round(self.start * rate)), stop=stop, dtype="float32", always_2d=True)
        if self.channel is not None:
            if self.channel >= wave.shape[1]:
                raise UserError(f"{path}: no channel {self.channel} (the file has {wave.shape[1]}); choose another")
            return wave[:, self.channel], sr
        return wave.mean(axis=1), sr

    def duration(self) -> Seconds:
        """Length of the span in seconds (the file's header is read when the span runs to its end)."""
        if self.end is not None:
            return self.end - self.start
        import soundfile as sf

        with readable(self.path):
            return sf.info(str(self.path)).duration - self.start

    def overlaps(self, other: "AudioSpan") -> bool:
        if self.path != other.path:
            return False
        a_end = math.inf if self.end is None else self.end
        b_end = math.inf if other.end is None else other.end
        return self.start < b_end and other.start < a_end

    def to_dict(self) -> dict:
        channel = {} if self.channel is None else {"channel": self.channel}
        mix = {"mix": [str(p) for p in self.mix]} if self.mix else {}
        return {"path": str(self.path), "start": self.start, "end": self.end, **channel, **mix}


@dataclass(frozen=True)
class EvalClip:
    """One evaluation item: the audio a system hears, what was said, and who can be enrolled."""

    id: str  # unique in the dataset
    audio: AudioSpan  # what the systems transcribe
    reference: tuple[Turn, ...]  # who said what; times relative to audio.start
    enrolment: dict[str, tuple[AudioSpan, ...]] = field(default_factory=dict)  # reference speaker → audio
    distractors: dict[str, tuple[AudioSpan, ...]] = field(default_factory=dict)  # absent speakers → audio
    recording: str = ""  # source recording id (windows of one recording share it)
    language: Optional[str] = None  # spoken language (Whisper's code, e.g. "en", "zh"), where the data says

    @property
    def speakers(self) -> list[str]:
        return speakers_in_order(self.reference)


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def load_dataset(
    path: Pathlike,
    format: Optional[str] = None,
    *,
    audio_dir: Optional[Pathlike] = None,
    stm: Optional[Pathlike] = None,
    enrolment: Optional[Pathlike] = None,
    clip_seconds: Optional[float] = None,
    speaker_scope: str = "dataset",
    segments: Optional[tuple[float, float]] = None,
    channel: Optional[int] = None,
) -> list[EvalClip]:
    """Clips of the dataset at `path`, sorted by id, with enrolment and distractor pools filled in.

    `format`: one of FORMATS, or None to detect it from `path`. `audio_dir`: where STM/SegLST/RTTM
    audio lives (default: the reference file's folder). `stm`: the STM that goes with an RTTM (default:
    the RTTM's name with .stm). `enrolment`: the sidecar (default: `enrolment.json` beside the data, if
    any). `clip_seconds`: cut each recording into windows of about this length, at pauses.
    `segments`: (shortest, longest) seconds: cut recordings longer than `longest` into training
    segments with clipped references (`training_segments`). `channel`: which channel of a lhotse
    recording to read (its channel id: of a multi-channel file, or the source that holds it in a
    multi-source recording such as AMI's ihm); None mixes all its channels (of one file, or of all its files).
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory; give a lhotse manifest folder, an STM, a SegLST json or an RTTM")
    if speaker_scope not in SPEAKER_SCOPES:
        raise UserError(f"speaker scope {speaker_scope!r}: choose one of {', '.join(SPEAKER_SCOPES)}")
    format = format or detect_format(path)
    folder = path if path.is_dir() else path.parent
    audio_root = Path(audio_dir) if audio_dir is not None else folder
    if format == "lhotse":
        clips = load_lhotse(path, channel)
    elif format == "stm":
        clips = load_stm(_one_file(path, "*.stm", "STM"), audio_root)
    elif format == "seglst":
        clips = load_seglst(_one_file(path, "*.json", "SegLST json", prefer="*seglst*.json"), audio_root)
    elif format == "rttm":
        rttm = _one_file(path, "*.rttm", "RTTM")
        clips = load_rttm_stm(rttm, Path(stm) if stm else rttm.with_suffix(".stm"), audio_root)
    else:
        raise UserError(f"format {format!r}: choose one of {', '.join(FORMATS)}")
    if not clips:
        raise UserError(f"{path}: no recording with reference turns was found")
    _check_unique_ids(clips, path)
    sidecar = Path(enrolment) if enrolment else folder / "enrolment.json"
    if enrolment or sidecar.exists():
        clips = attach_sidecar(clips, sidecar)
    if clip_seconds is not None:
        if clip_seconds <= 0:
            raise UserError(f"clip length {clip_seconds} s: give a positive number of seconds")
        clips = [w for c in clips for w in split_clip(c, clip_seconds)]
    if segments is not None:
        clips = [w for c in clips for w in training_segments(c, *segments)]
    return sorted(complete_enrolment(clips, speaker_scope), key=lambda c: c.id)


def detect_format(path: Path) -> str:
    """lhotse for a manifest folder or file, else by extension; STM beside an RTTM means rttm."""
    if path.is_dir():
        if _manifests(path, "recordings") or _manifests(path, "cuts"):
            return "lhotse"
        found = {ext: sorted(path.glob(f"*{ext}")) for ext in (".rttm", ".stm", ".json")}
        for fmt, ext in (("rttm", ".rttm"), ("stm", ".stm"), ("seglst", ".json")):
            if found[ext]:
                return fmt
        raise UserError(f"{path}: no lhotse manifests, .rttm, .stm or .json reference here; pass the file itself or --format")
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")) and any(k in name for k in ("recordings", "supervisions", "cuts")):
        return "lhotse"
    for fmt, ext in (("rttm", ".rttm"), ("stm", ".stm"), ("seglst", ".json"), ("seglst", ".jsonl")):
        if name.endswith(ext):
            return fmt
    raise UserError(f"{path}: cannot tell the format from the name; add --format ({', '.join(FORMATS)})")


def _one_file(path: Path, pattern: str, what: str, prefer: Optional[str] = None) -> Path:
    """`path` itself, or the one file in folder `path` matching `prefer` (if any match) else `pattern`."""
    if path.is_file():
        return path
    files = sorted(path.glob(prefer)) if prefer else []
    files = files or [p for p in sorted(path.glob(pattern)) if p.name not in ("enrolment.json", "simulation.json")]
    if len(files) != 1:
        names = ", ".join(p.name for p in files[:5]) or "none"
        raise UserError(f"{path}: expected one {what} file here, found {len(files)} ({names}); pass the file itself")
    return files[0]


def _check_unique_ids(clips: Sequence[EvalClip], path: Path) -> None:
    seen: set[str] = set()
    for c in clips:
        if c.id in seen:
            raise UserError(f"{path}: recording id {c.id!r} appears twice; ids must be unique")
        seen.add(c.id)


# ---------------------------------------------------------------------------------------------
# Reading the formats
# ---------------------------------------------------------------------------------------------


def _read_lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read it ({e}); is it the right file?") from None


def _audio_index(audio_dir: Path, wanted: set[str]) -> dict[str, Path]:
    """Recording id → its audio file under `audio_dir` (searched recursively, matched by file stem)."""
    if not audio_dir.is_dir():
        raise UserError(f"{audio_dir}: audio folder not found; pass --audio-dir")
    index: dict[str, Path] = {}
    for p in sorted(audio_dir.rglob("*")):
        if p.stem in wanted and p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file():
            if p.stem in index:
                raise UserError(f"{audio_dir}: two audio files are named {p.stem} ({index[p.stem]}, {p}); keep one")
            index[p.stem] = p
    return index


def _clips_from_turns(by_recording: dict[str, list[Turn]], audio_dir: Path, source: Path) -> list[EvalClip]:
    index = _audio_index(audio_dir, set(by_recording))
    missing = sorted(r for r in by_recording if r not in index)
    if missing:
        raise UserError(
            f"{source}: no audio for recording {missing[0]!r}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + f" in {audio_dir}; expected {audio_dir}/{missing[0]}.wav, or pass --audio-dir"
        )
    return [EvalClip(rec, AudioSpan(index[rec]), _in_time_order(turns), recording=rec) for rec, turns in by_recording.items()]


def _in_time_order(turns: list[Turn]) -> tuple[Turn, ...]:
    # SegLST times are optional: keep the file's order when any turn lacks one.
    return tuple(sorted(turns, key=lambda t: t.start)) if all(t.start is not None for t in turns) else tuple(turns)


def _float(value: str, source: Path, lineno: int, what: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise UserError(f"{source}:{lineno}: {what} {value!r} is not a number") from None


def parse_stm(path: Path) -> dict[str, list[Turn]]:
    """Recording id → turns of an STM file (comments, empty and NIST-ignored segments dropped)."""
    by_recording: dict[str, list[Turn]] = {}
    for lineno, line in enumerate(_read_lines(path), start=1):
        if not line.strip() or line.startswith(";;"):
            continue
        fields = line.split(maxsplit=5)
        if len(fields) < 5:
            raise UserError(f"{path}:{lineno}: an STM line needs `file channel speaker start end words`, got {line.strip()!r}")
        rec, _channel, speaker, start, end = fields[:5]
        rest = fields[5] if len(fields) > 5 else ""
        if rest.startswith("<"):  # optional <o,f0,male> label
            rest = rest.split(">", 1)[1] if ">" in rest else ""
        text = " ".join(rest.split())
        if not text or speaker in STM_SKIP or text in STM_SKIP:
            continue
        turn = Turn(speaker, text, _float(start, path, lineno, "start"), _float(end, path, lineno, "end"))
        by_recording.setdefault(rec, []).append(turn)
    return by_recording


def load_stm(path: Path, audio_dir: Path) -> list[EvalClip]:
    return _clips_from_turns(parse_stm(path), audio_dir, path)


def load_seglst(path: Path, audio_dir: Path) -> list[EvalClip]:
    """meeteval SegLST: a json list (or jsonl) of segments keyed by session_id."""
    text = "\n".join(_read_lines(path))
    try:
        segments = json.loads(text) if text.lstrip().startswith("[") else [json.loads(l) for l in text.splitlines() if l.strip()]
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not SegLST json ({e.msg} at line {e.lineno})") from None
    by_recording: dict[str, list[Turn]] = {}
    for i, seg in enumerate(segments):
        missing = [k for k in ("session_id", "speaker", "words") if not isinstance(seg, dict) or k not in seg]
        if missing:
            raise UserError(f"{path}: segment {i} lacks {', '.join(missing)}; SegLST segments need session_id, speaker, words")
        start, end = seg.get("start_time"), seg.get("end_time")
        turn = Turn(str(seg["speaker"]), str(seg["words"]),
                    None if start is None else float(start), None if end is None else float(end))
        if turn.text.strip():
            by_recording.setdefault(str(seg["session_id"]), []).append(turn)
    return _clips_from_turns(by_recording, audio_dir, path)


def parse_rttm(path: Path) -> dict[str, list[Turn]]:
    """Recording id → speaker turns (empty text) of an RTTM file's SPEAKER lines."""
    by_recording: dict[str, list[Turn]] = {}
    for lineno, line in enumerate(_read_lines(path), start=1):
        fields = line.split()
        if not fields or fields[0] != "SPEAKER":
            continue
        if len(fields) < 8:
            raise UserError(f"{path}:{lineno}: an RTTM SPEAKER line needs 10 fields, got {len(fields)}")
        start = _float(fields[3], path, lineno, "start")
        dur = _float(fields[4], path, lineno, "duration")
        by_recording.setdefault(fields[1], []).append(Turn(fields[7], "", start, start + dur))
    return by_recording


def load_rttm_stm(rttm: Path, stm: Path, audio_dir: Path) -> list[EvalClip]:
    if not stm.exists():
        raise UserError(f"{stm}: no STM next to {rttm.name}; the RTTM gives who/when, an STM must give the words (pass --stm)")
    who, words = parse_rttm(rttm), parse_stm(stm)
    only_rttm, only_stm = sorted(who.keys() - words.keys()), sorted(words.keys() - who.keys())
    if only_rttm or only_stm:
        side, ids = (f"{rttm.name} only", only_rttm) if only_rttm else (f"{stm.name} only", only_stm)
        raise UserError(f"{rttm} and {stm} name different recordings: {', '.join(ids[:3])} in {side}; the ids must match")
    merged = {rec: [replace(t, speaker=_rttm_speaker(t, who[rec])) for t in turns] for rec, turns in words.items()}
    return _clips_from_turns(merged, audio_dir, stm)


def _rttm_speaker(turn: Turn, speaker_turns: list[Turn]) -> str:
    """The RTTM speaker overlapping `turn` longest; the nearest in time when none overlaps."""
    overlap: dict[str, float] = {}
    for s in speaker_turns:
        overlap[s.speaker] = overlap.get(s.speaker, 0.0) + max(0.0, min(turn.end, s.end) - max(turn.start, s.start))
    best = max(overlap, key=overlap.get)
    if overlap[best] > 0:
        return best
    return min(speaker_turns, key=lambda s: max(s.start - turn.end, turn.start - s.end)).speaker


# ---------------------------------------------------------------- lhotse


def _manifests(folder: Path, kind: str) -> list[Path]:
    return sorted(p for p in folder.glob(f"*{kind}*.jsonl*") if p.name.endswith((".jsonl", ".jsonl.gz")))


def load_lhotse(path: Path, channel: Optional[int] = None) -> list[EvalClip]:
    """A recordings + supervisions pair, or a cuts manifest, from a folder or one of the files."""
    from lhotse import load_manifest  # imported late: lhotse takes seconds to import

    if path.is_dir():
        recordings, supervisions, cuts = (_manifests(path, k) for k in ("recordings", "supervisions", "cuts"))
        if recordings or supervisions:
            if len(recordings) != 1 or len(supervisions) != 1:
                names = ", ".join(p.name for p in recordings + supervisions)
                raise UserError(f"{path}: expected one recordings and one supervisions manifest, found "
                                f"{names or 'none'}; pass the supervisions file itself")
            pair = (recordings[0], supervisions[0])
        elif len(cuts) == 1:
            return _clips_from_cuts(_load(load_manifest, cuts[0]), cuts[0], channel)
        else:
            found = ", ".join(p.name for p in cuts) or "none"
            raise UserError(f"{path}: expected one lhotse cuts manifest, found {found}; pass the file itself")
    elif "cuts" in path.name:
        return _clips_from_cuts(_load(load_manifest, path), path, channel)
    else:
        other = path.with_name(path.name.replace("supervisions", "recordings") if "supervisions" in path.name
                               else path.name.replace("recordings", "supervisions"))
        if not other.exists():
            raise UserError(f"{other}: no such file; a lhotse {path.name} needs its partner manifest beside it")
        pair = (path, other) if "recordings" in path.name else (other, path)
    recordings, supervisions = (_load(load_manifest, p) for p in pair)
    by_recording: dict[str, list] = {}
    for s in supervisions:
        if s.recording_id not in recordings:
            raise UserError(f"{pair[1]}: supervision {s.id} names recording {s.recording_id!r}, which {pair[0].name} lacks")
        by_recording.setdefault(s.recording_id, []).append(s)
    return [
        EvalClip(rid, _recording_span(recordings[rid], pair[0], channel),
                 _in_time_order([_supervision_turn(s, pair[1]) for s in sups]), recording=rid,
                 language=_spoken_language(sups, pair[1]))
        for rid, sups in by_recording.items()
    ]


def _load(load_manifest, path: Path):
    try:
        return load_manifest(path)
    except Exception as e:  # lhotse raises ValueError/KeyError/JSONDecodeError by what is wrong
        raise UserError(f"{path}: not a lhotse manifest ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def _supervision_turn(s, source: Path, origin: Seconds = 0.0) -> Turn:
    """A supervision as a Turn, with its word alignment's times where it has one per word of its text.
    `origin`: where the clip starts in the recording (lhotse keeps a cut's alignments in the
    recording's clock while its supervisions move to the cut's)."""
    if not s.speaker or s.text is None:
        raise UserError(f"{source}: supervision {s.id} has no {'speaker' if not s.speaker else 'text'}; both are needed to score")
    return Turn(s.speaker, s.text, round(s.start, 3), round(s.end, 3), _word_times(s, origin))


def _spoken_language(supervisions, source: Path) -> Optional[str]:
    """The language most of a recording's supervisions name (lhotse recipes write "English",
    "Chinese", …; the simulator writes codes), as Whisper's code; None when none names one."""
    from collections import Counter

    named = Counter(s.language for s in supervisions if s.language)
    return whisper_language(named.most_common(1)[0][0], source) if named else None


def whisper_language(name: str, source: object = "--language") -> str:
    """Whisper's code for a language given by code ("zh") or name ("Chinese", "mandarin")."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    key = name.strip().lower()
    if key in LANGUAGES:
        return key
    if key in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[key]
    raise UserError(f"{source}: language {name!r} is not one Whisper knows; give a code such as en or zh")


def _word_times(s, origin: Seconds) -> Optional[tuple[tuple[Seconds, Seconds], ...]]:
    """(start, end) per word of the supervision's text, relative to the clip, from its "word"
    alignment; None when it has none, or one that does not match its words and time span."""
    items = (s.alignment or {}).get("word") or []
    if not items or len(items) != len(s.text.split()):
        return None
    times = tuple((round(i.start - origin, 3), round(i.start + i.duration - origin, 3)) for i in items)
    slack = 0.5  # seconds: alignments may stick out of the segment a little, never far
    if times[0][0] < s.start - slack or times[-1][1] > s.end + slack:
        return None
    return times


def _recording_span(recording, manifest: Path, channel: Optional[int] = None) -> AudioSpan:
    """The whole recording as a span: its one file (all channels mixed, or `channel`); in a
    multi-source recording (one file per channel, e.g. AMI ihm/mdm) the file that holds `channel`,
    or with no channel the mean of all its files."""
    sources = recording.sources
    if any(s.type != "file" for s in sources):
        raise UserError(f"{manifest}: recording {recording.id} is not read from audio files (source type "
                        f"{sources[0].type}); convert it to wav")
    if channel is None:
        first, *others = (_source_path(s, recording, manifest) for s in sources)
        return AudioSpan(first, mix=tuple(others))
    holding = [s for s in sources if channel in s.channels]
    if not holding:
        raise UserError(f"{manifest}: recording {recording.id} has no channel {channel} (it has "
                        f"{sorted(c for s in sources for c in s.channels)}); choose another --channel")
    source = holding[0]
    index = source.channels.index(channel)
    return AudioSpan(_source_path(source, recording, manifest), channel=index if len(source.channels) > 1 else None)


def _source_path(source, recording, manifest: Path) -> Path:
    p = Path(source.source)
    if not p.is_absolute() and not p.exists():
        p = manifest.parent / p  # lhotse stores what it was given; try relative to the manifest too
    if not p.exists():
        raise UserError(f"{manifest}: audio of recording {recording.id} not found at {source.source}")
    return p


def _clips_from_cuts(cuts, source: Path, channel: Optional[int] = None) -> list[EvalClip]:
    clips = []
    for cut in cuts:
        # lhotse keeps a supervision that runs over the cut's edge whole; keep only the words inside
        clipped = (_clip_turn(_supervision_turn(s, source, cut.start), 0.0, cut.duration) for s in cut.supervisions)
        turns = tuple(sorted((t for t in clipped if t is not None), key=lambda t: t.start))
        if turns:
            span = replace(_recording_span(cut.recording, source, channel), start=round(cut.start, 3), end=round(cut.end, 3))
            clips.append(EvalClip(cut.id, span, turns, recording=cut.recording_id,
                                  language=_spoken_language(cut.supervisions, source)))
    return clips


# ---------------------------------------------------------------------------------------------
# Enrolment
# ---------------------------------------------------------------------------------------------


def attach_sidecar(clips: Sequence[EvalClip], sidecar: Path) -> list[EvalClip]:
    """Add the sidecar's enrolment and distractor pools (keyed by clip id, else recording id)."""
    if not sidecar.exists():
        raise UserError(f"{sidecar}: enrolment file not found")
    try:
        table = json.loads(sidecar.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{sidecar}: not valid json ({e})") from None
    if not isinstance(table, dict):
        raise UserError(f"{sidecar}: expected an object keyed by recording id")
    unknown = table.keys() - {c.id for c in clips} - {c.recording for c in clips}
    if unknown:
        raise UserError(f"{sidecar}: enrolment for recording {sorted(unknown)[0]!r}, which the dataset lacks; the ids must match")
    out = []
    for clip in clips:
        entry = table.get(clip.id, table.get(clip.recording))
        if entry is None:
            out.append(clip)
            continue
        enrol = _span_table(entry.get("enrolment", entry.get("speakers", {})), sidecar, clip.id)
        strangers = sorted(enrol.keys() - set(clip.speakers))
        if strangers:
            raise UserError(f"{sidecar}: {clip.id} enrols {strangers[0]!r}, who is not among its reference speakers {clip.speakers}")
        distractors = _span_table(entry.get("distractors", {}), sidecar, clip.id)
        clashes = sorted(distractors.keys() & set(clip.speakers))
        if clashes:
            raise UserError(f"{sidecar}: {clip.id} lists reference speaker {clashes[0]!r} as a distractor")
        out.append(replace(clip, enrolment={**clip.enrolment, **enrol}, distractors={**clip.distractors, **distractors}))
    return out


def _span_table(entry, sidecar: Path, clip_id: str) -> dict[str, tuple[AudioSpan, ...]]:
    """{speaker: audio} from either sidecar form: a mapping speaker → path(s), or a list of
    {"voice"/"speaker": id, "path": ...} records (the simulator's distractor list)."""
    if isinstance(entry, list):
        try:
            entry = {next(r[k] for k in ("voice", "speaker", "name") if k in r): r for r in entry}
        except (StopIteration, TypeError):
            raise UserError(f"{sidecar}: {clip_id}: each listed speaker needs a \"voice\" (or \"speaker\") and a \"path\"") from None
    if not isinstance(entry, dict):
        raise UserError(f"{sidecar}: {clip_id}: expected {{speaker: [wav, ...]}}")
    table = {}
    for speaker, value in entry.items():
        spans = []
        for p in _paths_in(value):
            full = Path(p) if Path(p).is_absolute() else sidecar.parent / p
            if not full.exists():
                raise UserError(f"{sidecar}: enrolment audio {p} for {speaker!r} in {clip_id} not found")
            spans.append(AudioSpan(full))
        table[str(speaker)] = tuple(spans)
    return table


def _paths_in(value) -> list[str]:
    """"a.wav", ["a.wav", ...], {"path": "a.wav", ...} or a list of those → the paths."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return _paths_in(value.get("path", value.get("paths", [])))
    if isinstance(value, list):
        return [p for v in value for p in _paths_in(v)]
    return []


def split_clip(clip: EvalClip, seconds: float) -> list[EvalClip]:
    """Cut a timed clip into windows of about `seconds`, only at pauses (no turn is cut in two).

    Windows tile the clip; a turn longer than `seconds` makes a longer window.
    """
    turns = sorted(clip.reference, key=lambda t: t.start) if clip.reference else []
    if not turns or any(t.start is None or t.end is None for t in turns):
        raise UserError(f"{clip.id}: the reference has no times, so it cannot be cut into windows; drop --clip-seconds")
    cuts, window_start, reach = [0.0], 0.0, turns[0].end
    for t in turns[1:]:
        if t.start >= reach and t.end - window_start > seconds:
            window_start = round((reach + t.start) / 2, 3)
            cuts.append(window_start)
        reach = max(reach, t.end)
    bounds = list(zip(cuts, cuts[1:] + [None]))
    windows = []
    for a, b in bounds:
        inside = tuple(Turn(t.speaker, t.text, round(t.start - a, 3), round(t.end - a, 3))
                       for t in turns if t.start >= a and (b is None or t.start < b))
        windows.append(_window(clip, a, None if b is None else clip.audio.start + b, inside))
    return windows


def _window(clip: EvalClip, a: Seconds, end: Optional[Seconds], inside: tuple[Turn, ...]) -> EvalClip:
    """The part of `clip` from `a` seconds into it to `end` (seconds in the file; None: the clip's
    end), holding the turns `inside` and the enrolment of their speakers; named by its start."""
    span = replace(clip.audio, start=round(clip.audio.start + a, 3), end=clip.audio.end if end is None else end)
    enrol = {s: e for s, e in clip.enrolment.items() if s in {t.speaker for t in inside}}
    return replace(clip, id=f"{clip.id}-{int(round(a * 100)):07d}", audio=span, reference=inside, enrolment=enrol)


def training_segments(clip: EvalClip, shortest: Seconds = 40.0, longest: Seconds = 50.0) -> list[EvalClip]:
    """Cut a long timed recording into segments of `shortest`–`longest` seconds (the paper's 40–50 s
    training clips), each with the reference clipped to it: a cut lands in the widest pause of the
    allowed range, or, in talk without pauses, where the fewest turns run across it. A turn that runs
    across a cut keeps, on each side, only the words whose middle lies there: word times come from the
    reference's word alignment (lhotse's), or without one are estimated by spreading the turn over its
    words by their length (e.g. STM).
    A clip no longer than `longest` is returned as it is."""
    duration = clip.audio.duration()
    turns = sorted(clip.reference, key=lambda t: t.start) if clip.reference else []
    if duration <= longest:
        return [clip]
    if any(t.start is None or t.end is None for t in turns):
        raise UserError(f"{clip.id}: the reference has no times, so this {duration:.0f} s recording cannot be cut into "
                        f"training segments; give timed references, or --segment-seconds with a LONGEST above {duration:.0f}")
    cuts, pauses = [0.0], _pauses(turns)
    while duration - cuts[-1] > longest:
        a = cuts[-1]
        lo, hi = a + shortest, min(a + longest, duration - shortest)  # the last segment keeps ≥ `shortest`
        if lo > hi:
            lo = hi = a + (duration - a) / 2
        cuts.append(_cut_point(turns, pauses, lo, hi))
    out = []
    for a, b in zip(cuts, cuts[1:] + [duration]):
        inside = tuple(t for t in (_clip_turn(t, a, b) for t in turns) if t is not None)
        if inside:
            out.append(_window(clip, a, None if b == duration else round(clip.audio.start + b, 3), inside))
    return out


def single_speaker_utterances(clip: EvalClip, shortest: Seconds = 1.0) -> list[EvalClip]:
    """Each timed turn that nobody else talks over, as a clip of its own (the curriculum's stage-1 ASR
    data from conversation data; an ASR corpus's one-speaker recordings come out whole)."""
    turns = [t for t in clip.reference if t.start is not None and t.end is not None]
    out = []
    for k, t in enumerate(turns):
        alone = not any(o is not t and o.start < t.end and t.start < o.end for o in turns)
        if alone and t.end - t.start >= shortest and t.text.strip():
            span = replace(clip.audio, start=round(clip.audio.start + t.start, 3), end=round(clip.audio.start + t.end, 3))
            out.append(replace(clip, id=f"{clip.id}-u{k:04d}", audio=span,
                               reference=(Turn(t.speaker, t.text, 0.0, round(t.end - t.start, 3)),),
                               enrolment={}, distractors={}))
    return out


def _pauses(turns: Sequence[Turn]) -> list[tuple[Seconds, Seconds]]:
    """The stretches where no turn (sorted by start) runs, the last one open-ended."""
    gaps, reach = [], 0.0
    for t in turns:
        if t.start > reach:
            gaps.append((reach, t.start))
        reach = max(reach, t.end)
    return gaps + [(reach, math.inf)]


def _cut_point(turns: Sequence[Turn], pauses: list[tuple[Seconds, Seconds]], lo: Seconds, hi: Seconds) -> Seconds:
    """The middle of the widest pause in [lo, hi]; with none, the latest moment there that the fewest
    turns run across."""
    inside = [(max(g0, lo), min(g1, hi)) for g0, g1 in pauses if min(g1, hi) > max(g0, lo)]
    if inside:
        g0, g1 = max(inside, key=lambda g: g[1] - g[0])
        return round((g0 + g1) / 2, 3)
    candidates = [hi] + [x for t in turns for x in (t.start, t.end) if lo <= x <= hi]
    crossing = lambda x: sum(t.start < x < t.end for t in turns)
    return round(min(candidates, key=lambda x: (crossing(x), -x)), 3)


def _clip_turn(turn: Turn, a: Seconds, b: Seconds) -> Optional[Turn]:
    """`turn` as seen inside [a, b), times relative to a; None when none of its words is inside."""
    if turn.end <= a or turn.start >= b:
        return None
    words = turn.text.split()
    aligned = turn.word_times if turn.word_times and len(turn.word_times) == len(words) else None
    inside = lambda spans: tuple((round(max(a, w0) - a, 3), round(min(b, w1) - a, 3)) for w0, w1 in spans)
    if turn.start >= a and turn.end <= b:
        return Turn(turn.speaker, turn.text, round(turn.start - a, 3), round(turn.end - a, 3), aligned and inside(aligned))
    times = aligned or _spread(turn, words)
    kept = [i for i, (w0, w1) in enumerate(times) if a <= (w0 + w1) / 2 < b]
    if not kept:
        return None
    start, end = max(a, times[kept[0]][0]), min(b, times[kept[-1]][1])
    return Turn(turn.speaker, " ".join(words[i] for i in kept), round(start - a, 3), round(end - a, 3),
                aligned and inside(aligned[i] for i in kept))


def _spread(turn: Turn, words: list[str]) -> list[tuple[Seconds, Seconds]]:
    """Estimated word times for a reference without an alignment: the turn spread over its words by
    their length."""
    weights = np.array([len(w) + 1 for w in words], float)  # +1: the space, so short words take time too
    edges = turn.start + (turn.end - turn.start) * np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])
    return list(zip(edges[:-1], edges[1:]))


def _person(clip: EvalClip, speaker: str, scope: str) -> str:
    return speaker if scope == "dataset" else f"{clip.recording or clip.id}/{speaker}"


def _absolute(clip: EvalClip, t: Turn) -> AudioSpan:
    return replace(clip.audio, start=round(clip.audio.start + t.start, 3), end=round(clip.audio.start + t.end, 3))


def _clean_turns(clips: Sequence[EvalClip], scope: str) -> dict[str, list[AudioSpan]]:
    """Person → their timed turns that nobody else overlaps and that are long enough to enrol from,
    longest first."""
    by_file: dict[Path, list[tuple[str, AudioSpan]]] = {}
    for c in clips:
        for t in c.reference:
            if t.start is not None and t.end is not None:
                by_file.setdefault(c.audio.path, []).append((_person(c, t.speaker, scope), _absolute(c, t)))
    clean: dict[str, list[AudioSpan]] = {}
    for spans in by_file.values():
        for person, span in spans:
            long_enough = span.end - span.start >= MIN_ENROL_SECONDS
            alone = not any(other != person and span.overlaps(s) for other, s in spans)
            if long_enough and alone:
                clean.setdefault(person, []).append(span)
    for spans in clean.values():
        spans.sort(key=lambda s: (s.start - s.end, str(s.path), s.start))
    return clean


def _outside(spans: Iterable[AudioSpan], clip: EvalClip, seconds: Optional[float] = None) -> tuple[AudioSpan, ...]:
    """`spans` that do not touch the clip's own audio; with `seconds`, only until that much is taken."""
    chosen, total = [], 0.0
    for s in spans:
        if seconds is not None and total >= seconds:
            break
        if not s.overlaps(clip.audio):
            chosen.append(s)
            total += (s.end or math.inf) - s.start
    return tuple(chosen)


def complete_enrolment(clips: Sequence[EvalClip], speaker_scope: str = "dataset") -> list[EvalClip]:
    """Fill in enrolment the dataset lacks from each speaker's own turns outside the clip, and give
    clips without a distractor pool every other speaker of the dataset. Missing stays missing."""
    given: dict[str, tuple[AudioSpan, ...]] = {}  # person → enrolment audio some clip's sidecar gave
    for c in clips:
        for speaker, spans in c.enrolment.items():
            given.setdefault(_person(c, speaker, speaker_scope), spans)
    cut = _clean_turns(clips, speaker_scope)
    everyone = {_person(c, s, speaker_scope) for c in clips for s in c.speakers}
    out = []
    for c in clips:
        present = {_person(c, s, speaker_scope) for s in c.speakers}
        enrol = dict(c.enrolment)
        for s in c.speakers:
            if s not in enrol:
                spans = _outside(cut.get(_person(c, s, speaker_scope), ()), c, ENROL_SECONDS)
                if spans:
                    enrol[s] = spans
        distractors = dict(c.distractors)
        if not distractors:
            for person in sorted(everyone - present):
                spans = _outside(given[person], c) if person in given else _outside(cut.get(person, ()), c, ENROL_SECONDS)
                if spans:
                    distractors[person] = spans
        out.append(replace(c, enrolment=enrol, distractors=distractors))
    return out
