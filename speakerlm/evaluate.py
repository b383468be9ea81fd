"""The evaluation harness: systems × registration modes over `EvalClip`s → one table, JSON and charts.

Reads top to bottom as the experiment of the paper's §5–6:
1. Registration (paper §2.4): `no` enrols nobody (score cpWER); `match` enrols every reference speaker
   under their reference name (score saWER too); `over` adds N_ov distractors from the clip's pool, N_ov
   fixed or drawn from U{1..50} per clip, named so that no distractor carries a true name. The draw is
   seeded by (seed, clip id) only, so every system hears the same roster, and the distractors of a
   smaller N_ov are a prefix of those of a larger one (a sweep changes one thing at a time).
2. Each system is an engine from `transcribe.ENGINES` with its user options and its experiment
   switches (the engine's config), built once through `Transcriber`; voiceprints are computed once per
   (encoder, enrolment audio) and reused for every clip, mode and system.
3. Per clip: transcribe, score with `metrics.score_clip`, append the record to `clips.jsonl` in the
   output folder; a rerun with the same settings reads finished clips back instead of redoing them.
4. Per (system, mode): `metrics.aggregate` (micro-averaged), the same split by number of reference
   speakers, real-time factor and peak memory; then results.md, results.json, results.png (and
   sweep.png for an Over-Regist sweep), each written atomically.

Speed and memory are measured in the same run. RTF = transcription wall time / audio duration, model
loading and voiceprints excluded (both reported in the JSON). Memory = resident set size of this process,
sampled every 10 ms by a thread with psutil while the system loads and runs; "peak_rss_mb" is the peak,
"rss_growth_mb" the peak minus the RSS before the system was built (what the system added; systems run
one after another in one process, so a later one may reuse memory an earlier one freed to the allocator).
Without psutil it falls back to getrusage's ru_maxrss, the process high-water mark. On a GPU the torch
allocator's peak is reported too.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import random
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Optional, Sequence, Union

from speakerlm.audio import duration
from speakerlm.data.datasets import FORMATS, SPEAKER_SCOPES, AudioSpan, EvalClip, load_dataset, whisper_language
from speakerlm.errors import UserError
from speakerlm.metrics import ClipScores, ErrorCounts, aggregate, score_clip, scoring_language
from speakerlm.plots import plot_error_rates, plot_sweep
from speakerlm.diarize import SpeakerCount
from speakerlm.transcribe import ENGINES, Transcriber, TranscribeOptions
from speakerlm.turns import Turn, check_speaker_name
from speakerlm.voiceprints import Voiceprints, enroll_voiceprint

MODES = ("no", "match", "over")
OVER_MAX = 50  # paper §5.4: N_ov ~ U{1..50} at test time, as in training
DEFAULT_SYSTEMS = ("cascade", "plain")
LOG_NAME = "clips.jsonl"  # per-clip records; what makes a run resumable
METRICS = ("wer", "cpwer", "sawer", "delta_cp", "delta_sa", "tcpwer", "der")
HEADERS = ("WER", "cpWER", "saWER", "Δcp", "Δsa", "tcpWER", "DER")
SAMPLE_EVERY_S = 0.01  # RSS sampling period


# ---------------------------------------------------------------------------------------------
# What is run
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One registration condition."""

    mode: str  # "no" | "match" | "over"
    n_distractors: Optional[int] = None  # over: a fixed N_ov; None = N_ov ~ U{1..OVER_MAX} per clip

    @property
    def registered(self) -> bool:
        return self.mode != "no"

    @property
    def label(self) -> str:
        if self.mode == "over":
            return f"over N={self.n_distractors}" if self.n_distractors is not None else f"over N~U{{1..{OVER_MAX}}}"
        return self.mode


def settings_for(mode: Optional[str], n_distractors: Optional[int] = None, sweep: Sequence[int] = ()) -> list[Setting]:
    """The settings of a run: `mode` ("no", "match", "over", "all" or None) then the sweep's N_ov
    values (0 = Match-Regist), without repeats."""
    if mode not in (*MODES, "all", None):
        raise UserError(f"mode {mode!r}: choose one of {', '.join(MODES)} or all")
    if n_distractors is not None and n_distractors < 1:
        raise UserError(f"{n_distractors} distractors: Over-Regist needs at least 1 (0 is Match-Regist)")
    if any(n < 0 for n in sweep):
        raise UserError(f"sweep {list(sweep)}: the numbers of distractors must be 0 or more")
    modes = MODES if mode == "all" else (() if mode is None else (mode,))
    settings = [Setting(m, n_distractors if m == "over" else None) for m in modes]
    settings += [Setting("match") if n == 0 else Setting("over", n) for n in sweep]
    return list(dict.fromkeys(settings)) or [Setting("no")]


@dataclass(frozen=True)
class System:
    name: str  # its label in the tables
    options: TranscribeOptions  # options.engine names an entry of transcribe.ENGINES
    engine_config: object = None  # the engine's experiment switches (its Config); None = its defaults


# variants of the SpeakerLM engine that name a system: its ablations and baselines
VARIANTS = {
    "speakerlm-native": ("speakerlm", dict(discover_speakers=False)),  # the model alone labels unknown voices
    "speakerlm-posthoc": ("speakerlm", dict(discover_speakers=False, naming="posthoc")),  # naming baseline
}


def as_system(spec: Union[str, System], base: TranscribeOptions = TranscribeOptions(),
              switches: Optional[dict[str, str]] = None) -> System:
    """A system by name, with the user options of `base` that its engine takes and the experiment
    `switches` (KEY → VALUE text) applied to its engine's config."""
    if isinstance(spec, System):
        return spec
    engine, preset = VARIANTS.get(spec, (spec, {}))
    if engine not in ENGINES:
        raise UserError(f"unknown system {spec!r}; choose from {', '.join(sorted({*ENGINES, *VARIANTS}))}")
    speakerlm_only = {} if engine == "speakerlm" else dict(model=None)
    options = replace(base, engine=engine, **speakerlm_only)
    return System(spec, options, engine_config(ENGINES[engine].Config, {**preset, **(switches or {})}, spec))


def engine_config(config_type: Optional[type], switches: dict, system: str = ""):
    """The engine's config with `switches` applied; text values (from the command line) are converted
    to the type of the field's default."""
    if not switches:
        return None
    if config_type is None:
        raise UserError(f"--engine-config: the {system} system has no experiment switches")
    defaults = config_type()
    nested = {f.name for f in fields(config_type) if is_dataclass(getattr(defaults, f.name))}
    known = {f.name for f in fields(config_type)} - nested
    known |= {f"{part}.{f.name}" for part in nested for f in fields(getattr(defaults, part))
              if not is_dataclass(getattr(getattr(defaults, part), f.name))}
    values, parts = {}, {}
    for key, value in switches.items():
        if key not in known:
            raise UserError(f"--engine-config {key}: the {system} system has no such switch; choose from {', '.join(sorted(known))}")
        part, _, name = key.rpartition(".")
        default = getattr(getattr(defaults, part), name) if part else getattr(defaults, key)
        typed = _typed(value, default, key) if isinstance(value, str) else value
        if part:  # a switch of a nested config, e.g. diarizer.shared_trunk=true
            parts.setdefault(part, {})[name] = typed
        else:
            values[key] = typed
    for part, changed in parts.items():
        values[part] = replace(getattr(defaults, part), **changed)
    return replace(defaults, **values)


def _typed(text: str, default, key: str):
    if isinstance(default, bool):
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise UserError(f"--engine-config {key}={text}: give true or false")
        return text.lower() in ("true", "1", "yes")
    try:
        return type(default)(text)
    except ValueError:
        raise UserError(f"--engine-config {key}={text}: expected a {type(default).__name__}") from None


# ---------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------


def registration(clip: EvalClip, setting: Setting, seed: int = 0) -> dict[str, tuple[AudioSpan, ...]]:
    """Name → enrolment audio given to the systems for this clip, in the (shuffled) order given."""
    if not setting.registered:
        return {}
    missing = [s for s in clip.speakers if not clip.enrolment.get(s)]
    if missing:
        raise UserError(
            f"{clip.id}: no enrolment audio for {missing[0]!r} outside the clip, so {setting.mode}-regist cannot "
            "be scored without leaking the clip; give an enrolment sidecar (--enrolment), cut recordings into "
            "windows (--clip-seconds) so other windows can serve, or use --mode no"
        )
    roster = {}
    for s in clip.speakers:
        try:
            name = check_speaker_name(s)
        except UserError as e:
            raise UserError(f"{clip.id}: reference speaker {s!r} cannot be enrolled under that name ({e})") from None
        if name != s:
            raise UserError(f"{clip.id}: reference speaker {s!r} has surrounding spaces; fix the reference")
        roster[s] = clip.enrolment[s]
    if setting.mode == "over":
        pool = sorted(clip.distractors)
        need = setting.n_distractors or OVER_MAX
        if len(pool) < need:
            raise UserError(
                f"{clip.id}: {len(pool)} distractor speakers available, {setting.label} needs {need}; "
                "give a smaller --distractors/--sweep, or more speakers in the enrolment sidecar"
            )
        random.Random(f"{seed}/{clip.id}/pool").shuffle(pool)  # one order per clip: N=10 ⊂ N=20
        n = setting.n_distractors or random.Random(f"{seed}/{clip.id}/n").randint(1, OVER_MAX)
        for i, key in enumerate(pool[:n]):
            roster[_distractor_name(key, roster, i)] = clip.distractors[key]
    order = list(roster.items())
    random.Random(f"{seed}/{clip.id}/order").shuffle(order)  # paper Fig. 3: registration order is random
    return dict(order)


def _distractor_name(key: str, taken: dict, i: int) -> str:
    """The distractor's own label when it is a usable, unused name; else Guest k."""
    try:
        name = check_speaker_name(key)
        if name == key and name not in taken:
            return name
    except UserError:
        pass
    k = i + 1
    while f"Guest {k}" in taken:
        k += 1000
    return f"Guest {k}"


class VoiceprintCache:
    """Voiceprints computed once per (encoder, enrolment audio) for the whole run."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.cache: dict[tuple, object] = {}
        self.files: dict[AudioSpan, Path] = {}
        self.seconds = 0.0

    def __call__(self, spans: tuple[AudioSpan, ...], encoder: str):
        key = (encoder, spans)
        if key not in self.cache:
            started = time.perf_counter()
            self.cache[key] = enroll_voiceprint([self._file(s) for s in spans], encoder)
            self.seconds += time.perf_counter() - started
        return self.cache[key]

    def _file(self, span: AudioSpan) -> Path:
        if span.start == 0.0 and span.end is None:
            return span.path
        if span not in self.files:  # a cut of a recording: enroll_voiceprint reads files
            import soundfile as sf

            from speakerlm.audio import SAMPLE_RATE

            path = self.workdir / f"enrol_{len(self.files)}.wav"
            sf.write(str(path), span.load(), SAMPLE_RATE)
            self.files[span] = path
        return self.files[span]


# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------


class PeakMemory:
    """Peak RSS (MB) of this process from `start()` on: psutil sampled by a thread, else ru_maxrss."""

    def __init__(self):
        try:
            import psutil

            self._process = psutil.Process()
            self.method = f"psutil RSS sampled every {SAMPLE_EVERY_S * 1000:.0f} ms"
        except ImportError:
            self._process = None
            self.method = "getrusage ru_maxrss (process high-water mark)"
        self.baseline_mb = self.peak_mb = self._now()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _now(self) -> float:
        if self._process is not None:
            return self._process.memory_info().rss / 2**20
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            self.peak_mb = max(self.peak_mb, self._now())

    def start(self) -> "PeakMemory":
        self.baseline_mb = self.peak_mb = self._now()
        if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
            sys.modules["torch"].cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_mb = max(self.peak_mb, self._now())

    def current_peak(self) -> float:
        self.peak_mb = max(self.peak_mb, self._now())
        return self.peak_mb

    @staticmethod
    def gpu_peak_mb() -> Optional[float]:
        torch = sys.modules.get("torch")
        if torch is None or not torch.cuda.is_available():
            return None
        return torch.cuda.max_memory_allocated() / 2**20


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipResult:
    clip: str
    num_speakers: int  # reference speakers in the clip
    enrolled: tuple[str, ...]  # names given to the system, in the order given
    n_distractors: int  # how many of them are distractors
    duration: float  # seconds of audio
    seconds: float  # transcription wall time
    peak_rss_mb: float  # peak RSS of the process while the system ran, up to this clip
    rss_growth_mb: float  # that peak minus the RSS before the system was built
    hypothesis: tuple[Turn, ...]
    scores: ClipScores

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hypothesis"] = [t.to_dict() for t in self.hypothesis]
        return d

    @staticmethod
    def from_dict(d: dict) -> "ClipResult":
        counts = {k: None if v is None else ErrorCounts(**v) for k, v in d["scores"].items()}
        return ClipResult(d["clip"], d["num_speakers"], tuple(d["enrolled"]), d["n_distractors"], d["duration"],
                          d["seconds"], d["peak_rss_mb"], d["rss_growth_mb"], tuple(Turn.from_dict(t) for t in d["hypothesis"]),
                          ClipScores(**counts))


@dataclass
class Run:
    """One system under one setting."""

    system: System
    setting: Setting
    clips: list[ClipResult]
    load_seconds: float = 0.0  # building the engine (loading models)
    enrol_seconds: float = 0.0  # voiceprints computed while this system ran
    memory: dict = field(default_factory=dict)  # memory_method, gpu_peak_mb (this process's measurement)

    def aggregate(self) -> dict:
        return aggregate([c.scores for c in self.clips])

    @property
    def rtf(self) -> Optional[float]:
        audio = sum(c.duration for c in self.clips)
        return sum(c.seconds for c in self.clips) / audio if audio else None

    @property
    def peak_rss_mb(self) -> Optional[float]:
        return max((c.peak_rss_mb for c in self.clips), default=None)

    @property
    def rss_growth_mb(self) -> Optional[float]:
        return max((c.rss_growth_mb for c in self.clips), default=None)

    def by_speakers(self) -> dict[int, dict]:
        groups: dict[int, list[ClipResult]] = {}
        for c in self.clips:
            groups.setdefault(c.num_speakers, []).append(c)
        return {n: {"clips": len(g), **aggregate([c.scores for c in g])} for n, g in sorted(groups.items())}


# ---------------------------------------------------------------------------------------------
# The harness
# ---------------------------------------------------------------------------------------------


def clip_key(system: System, setting: Setting, clip: EvalClip, roster: dict, seed: int,
             num_speakers_oracle: bool, language: str) -> str:
    """Everything a clip's result depends on, hashed: the resume log is keyed by it. The engine's
    config is hashed in full, defaults included, so a changed default is not served an old result."""
    config_type = getattr(ENGINES[system.options.engine], "Config", None)
    config = system.engine_config if system.engine_config is not None else config_type() if config_type else None
    body = {
        "system": system.name, "options": asdict(system.options), "setting": asdict(setting), "seed": seed,
        "engine_config": None if config is None else asdict(config),
        "oracle": num_speakers_oracle, "language": language, "clip": clip.id, "audio": clip.audio.to_dict(),
        "reference": [t.to_dict() for t in clip.reference],
        "roster": [[name, [s.to_dict() for s in spans]] for name, spans in roster.items()],
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def read_log(path: Optional[Path]) -> dict[str, ClipResult]:
    """Finished clips of earlier runs; a line cut short by a crash is ignored."""
    done: dict[str, ClipResult] = {}
    if path is None or not path.exists():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
            done[record["key"]] = ClipResult.from_dict(record["result"])
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return done


def _append_log(path: Optional[Path], key: str, result: ClipResult) -> None:
    if path is None:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"key": key, "result": _jsonable(result.to_dict())}, ensure_ascii=False) + "\n")
        f.flush()


def _run_clip(engine, clip: EvalClip, enrolled: Voiceprints, setting: Setting, num_speakers_oracle: bool,
              language: str, memory: "PeakMemory") -> ClipResult:
    """Transcribe one clip (timed) and score it."""
    wave = clip.audio.load()
    count = SpeakerCount(num=len(clip.speakers)) if num_speakers_oracle else SpeakerCount()
    started = time.perf_counter()
    hypothesis = engine.transcribe(wave, enrolled, count)
    seconds = time.perf_counter() - started
    peak = memory.current_peak()
    scores = score_clip(clip.reference, hypothesis, registered=setting.registered, language=language)
    n_true = len(clip.speakers) if setting.registered else 0
    return ClipResult(clip.id, len(clip.speakers), tuple(enrolled), len(enrolled) - n_true,
                      round(duration(wave), 3), seconds, round(peak, 1), round(peak - memory.baseline_mb, 1),
                      tuple(hypothesis), scores)


def evaluate(
    systems: Sequence[Union[str, System]],
    clips: Sequence[EvalClip],
    mode: Optional[str] = "no",
    n_distractors: Optional[int] = None,
    seed: int = 0,
    *,
    sweep: Sequence[int] = (),
    num_speakers_oracle: bool = False,
    language: str = "en",
    log: Optional[Path] = None,
    progress: bool = False,
) -> list[Run]:
    """Run every system over `clips` under `mode` (and each sweep N_ov); one `Run` per system × setting.

    `systems`: engine names of `transcribe.ENGINES` or `System`s. `language`: scoring ("en" words,
    "zh" characters). `log`: the jsonl that makes the run resumable (None = no resume).
    """
    from tqdm import tqdm

    settings = settings_for(mode, n_distractors, sweep)
    systems = [as_system(s) for s in systems]
    # each engine checks its options (its model, Whisper, speaker encoder) before any clip is run
    transcribers = [Transcriber(s.options, s.engine_config) for s in systems]
    if not clips:
        raise UserError("no clips to evaluate")
    # Every roster is decided before any model loads, so a dataset that cannot be scored fails at once.
    rosters = {(s, c.id): registration(c, s, seed) for s in settings for c in clips}
    done = read_log(log)
    runs = []
    with tempfile.TemporaryDirectory(prefix="speakerlm-eval-") as workdir:
        voiceprints = VoiceprintCache(Path(workdir))
        for i, system in enumerate(systems):
            transcriber, engine, load_seconds = transcribers[i], None, 0.0
            enrol_before, memory = voiceprints.seconds, PeakMemory().start()
            for setting in settings:
                results = []
                for clip in tqdm(clips, desc=f"{system.name} {setting.label}", unit="clip", disable=not progress):
                    roster = rosters[setting, clip.id]
                    key = clip_key(system, setting, clip, roster, seed, num_speakers_oracle, language)
                    if key in done:
                        results.append(done[key])
                        continue
                    if engine is None:  # load models only when some clip is not done yet
                        started = time.perf_counter()
                        engine = transcriber.engine
                        load_seconds = time.perf_counter() - started
                    enrolled = {name: voiceprints(spans, transcriber.speaker_encoder) for name, spans in roster.items()}
                    result = _run_clip(engine, clip, enrolled, setting, num_speakers_oracle, language, memory)
                    _append_log(log, key, result)
                    results.append(result)
                runs.append(Run(system, setting, results))
            memory.stop()
            for run in runs:
                if run.system is system:
                    run.load_seconds, run.enrol_seconds = load_seconds, voiceprints.seconds - enrol_before
                    run.memory = {"memory_method": memory.method, "gpu_peak_mb": memory.gpu_peak_mb()}
            transcribers[i] = None
            del transcriber, engine
            gc.collect()  # let the next system's memory be measured without this one's models
    return runs


# ---------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------


def _jsonable(value):
    """Non-finite floats as strings ("inf"), so the JSON stays standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def report_json(runs: Sequence[Run], meta: dict, sweep: Sequence[int] = ()) -> dict:
    body = {**meta, "runs": []}
    for run in runs:
        body["runs"].append({
            "system": run.system.name, "options": asdict(run.system.options), "mode": run.setting.mode,
            "engine_config": None if run.system.engine_config is None else asdict(run.system.engine_config),
            "n_distractors": run.setting.n_distractors, "label": run.setting.label, "clips": len(run.clips),
            "audio_seconds": sum(c.duration for c in run.clips), "transcribe_seconds": sum(c.seconds for c in run.clips),
            "rtf": run.rtf, "load_seconds": run.load_seconds, "enrol_seconds": run.enrol_seconds,
            "peak_rss_mb": run.peak_rss_mb, "rss_growth_mb": run.rss_growth_mb, **run.memory,
            "aggregate": run.aggregate(), "by_speakers": {str(n): a for n, a in run.by_speakers().items()},
            "per_clip": [c.to_dict() for c in run.clips],
        })
    table = sweep_table(runs, sweep)
    if table:
        body["sweep"] = {"metric": "sawer", "n_distractors": sorted(set(sweep)),
                         "by_system": {s: {str(n): v for n, v in row.items()} for s, row in table.items()}}
    return _jsonable(body)


def sweep_table(runs: Sequence[Run], sweep: Sequence[int]) -> dict[str, dict[int, Optional[float]]]:
    """System → {N_ov: saWER} for the sweep's N_ov values (0 = Match-Regist); empty without a sweep."""
    wanted = {(Setting("match") if n == 0 else Setting("over", n)): n for n in sweep}
    table: dict[str, dict[int, Optional[float]]] = {}
    for r in runs:
        if r.setting in wanted:
            table.setdefault(r.system.name, {})[wanted[r.setting]] = r.aggregate()["sawer"]
    return {s: dict(sorted(row.items())) for s, row in table.items()}


def _fmt(v: Optional[float], digits: int = 2) -> str:
    return "–" if v is None else ("inf" if v == math.inf else f"{v:.{digits}f}")


def report_markdown(runs: Sequence[Run], title: str, sweep: Sequence[int] = ()) -> str:
    lines = [f"# Evaluation: {title}", "",
             "| System | Mode | " + " | ".join(HEADERS) + " | RTF | Peak RSS MB | Clips |",
             "|---|---|" + "---:|" * (len(HEADERS) + 3)]
    for r in runs:
        a = r.aggregate()
        lines.append(f"| {r.system.name} | {r.setting.label} | " + " | ".join(_fmt(a[m]) for m in METRICS)
                     + f" | {_fmt(r.rtf, 3)} | {_fmt(r.peak_rss_mb, 0)} | {len(r.clips)} |")
    lines += ["", "## By number of reference speakers", "",
              "| System | Mode | Speakers | " + " | ".join(HEADERS) + " | Clips |",
              "|---|---|---:|" + "---:|" * (len(HEADERS) + 1)]
    for r in runs:
        for n, a in r.by_speakers().items():
            lines.append(f"| {r.system.name} | {r.setting.label} | {n} | " + " | ".join(_fmt(a[m]) for m in METRICS)
                         + f" | {a['clips']} |")
    table = sweep_table(runs, sweep)
    if table:
        ns = sorted(set(sweep))
        lines += ["", "## Over-Regist sweep: saWER by number of distractors N_ov (0 = Match-Regist)", "",
                  "| System | " + " | ".join(f"N_ov={n}" for n in ns) + " |", "|---|" + "---:|" * len(ns)]
        lines += [f"| {s} | " + " | ".join(_fmt(row.get(n)) for n in ns) + " |" for s, row in table.items()]
    lines += ["", "Error rates in %, micro-averaged over clips (sum of errors / sum of reference length); – = not "
              "applicable (saWER needs enrolled speakers; tcpWER/DER need times). RTF = transcription wall time / "
              "audio duration, model loading and voiceprints excluded. Peak RSS: see results.json for the method.", ""]
    return "\n".join(lines)


def write_reports(runs: Sequence[Run], out: Path, meta: dict, sweep: Sequence[int] = ()) -> list[Path]:
    from speakerlm.cache import write_text_atomic

    written = [out / "results.md", out / "results.json", out / "results.png"]
    write_text_atomic(written[0], report_markdown(runs, meta.get("dataset", ""), sweep))
    write_text_atomic(written[1], json.dumps(report_json(runs, meta, sweep), ensure_ascii=False, indent=1) + "\n")
    shown = ("wer", "cpwer", "sawer")
    plot_error_rates([(f"{r.system.name}\n{r.setting.label}",
                       {HEADERS[METRICS.index(m)]: r.aggregate()[m] for m in shown}) for r in runs], written[2])
    table = sweep_table(runs, sweep)
    if table:
        written.append(out / "sweep.png")
        plot_sweep(table, written[-1])
    return written


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _int_list(value: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected numbers separated by commas, e.g. 0,1,10,50") from None


def _switch(value: str) -> tuple[str, str]:
    if "=" not in value:
        raise argparse.ArgumentTypeError(f"{value!r}: expected KEY=VALUE, e.g. naming=posthoc")
    key, text = value.split("=", 1)
    return key.strip(), text.strip()


def cmd_evaluate(args: argparse.Namespace) -> None:
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not systems:
        raise UserError("--systems is empty; name at least one, e.g. cascade,plain")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit {args.limit}: give at least 1")
    base = TranscribeOptions(whisper=args.whisper, language=args.language, speaker_encoder=args.speaker_encoder,
                             model=args.model, num_beams=args.beams)
    switches = dict(args.engine_config or [])
    systems = [as_system(s, base, switches) for s in systems]  # unknown names fail before the data is read
    clips = load_dataset(args.data, args.format, audio_dir=args.audio_dir, stm=args.stm, enrolment=args.enrolment,
                         clip_seconds=args.clip_seconds, speaker_scope=args.speaker_ids, channel=args.channel)
    clips = clips[: args.limit] if args.limit else clips
    if args.distractor_pool is not None:
        clips = add_distractor_pool(clips, load_dataset(args.distractor_pool))
    spoken = whisper_language(args.language) if args.language else data_language(clips, args.data)
    systems = [replace(s, options=replace(s.options, language=spoken)) for s in systems]
    language = args.score_language or scoring_language(spoken)
    mode = args.mode if args.mode is not None or args.sweep else "no"
    args.out.mkdir(parents=True, exist_ok=True)
    runs = evaluate(systems, clips, mode, args.distractors, args.seed, sweep=args.sweep or (),
                    num_speakers_oracle=args.num_speakers_oracle, language=language,
                    log=args.out / LOG_NAME, progress=True)
    meta = {"dataset": str(args.data), "seed": args.seed, "language": language,
            "num_speakers_oracle": args.num_speakers_oracle, "clips": len(clips)}
    for path in write_reports(runs, args.out, meta, args.sweep or ()):
        print(f"wrote {path}", file=sys.stderr)
    sys.stdout.write(report_markdown(runs, str(args.data), args.sweep or ()))


def data_language(clips: list[EvalClip], source: Path) -> str:
    """The one language the clips are in (what their manifests say; English when they say nothing)."""
    found = sorted({c.language or "en" for c in clips})
    if len(found) > 1:
        raise UserError(f"{source}: the recordings are in several languages ({', '.join(found)}); evaluate one "
                        "language at a time, or pass --language")
    return found[0]


def add_distractor_pool(clips: list[EvalClip], pool: list[EvalClip]) -> list[EvalClip]:
    """Offer every clip the enrolled speakers of another dataset as extra distractors (e.g. the train
    split's voices when a test split has too few for an Over-Regist sweep to N_ov = 100)."""
    extra: dict[str, tuple] = {}
    for c in pool:
        for speaker, spans in c.enrolment.items():
            extra.setdefault(speaker, spans)
    return [replace(c, distractors={**{s: v for s, v in extra.items() if s not in c.speakers}, **c.distractors})
            for c in clips]


def add_evaluate_parser(subparsers) -> argparse.ArgumentParser:
    """Register `speakerlm evaluate` on the CLI's subparsers."""
    e = subparsers.add_parser("evaluate", help="score systems on a dataset with a reference (WER, cpWER, saWER, …)")
    e.add_argument("data", type=Path, help="lhotse manifest folder, STM, SegLST json, or RTTM (with an STM beside it)")
    e.add_argument("--format", choices=FORMATS, help="data format (default: detected from DATA)")
    e.add_argument("--audio-dir", type=Path, help="where STM/SegLST/RTTM audio lives (default: beside DATA)")
    e.add_argument("--stm", type=Path, help="the STM that goes with an RTTM (default: same name, .stm)")
    e.add_argument("--enrolment", type=Path, help="enrolment sidecar json (default: enrolment.json beside DATA)")
    e.add_argument("--speaker-ids", choices=SPEAKER_SCOPES, default="dataset",
                   help="dataset: one label = one person everywhere (default); recording: labels restart per recording")
    e.add_argument("--clip-seconds", type=float,
                   help="cut recordings into windows of about this length at pauses (paper: 40–50)")
    e.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                   help=f"comma-separated engines (default {','.join(DEFAULT_SYSTEMS)})")
    e.add_argument("--mode", choices=(*MODES, "all"), help="registration: no, match, over or all (default no)")
    e.add_argument("--distractors", type=int, help=f"Over-Regist: N_ov per clip (default: drawn from 1..{OVER_MAX})")
    e.add_argument("--sweep", type=_int_list, help="Over-Regist sweep: N_ov values, e.g. 0,1,10,20,50,100 (0 = Match-Regist)")
    e.add_argument("--distractor-pool", type=Path, help="another dataset whose enrolled speakers are offered "
                   "as extra distractors (for N_ov beyond the voices of DATA)")
    e.add_argument("--seed", type=int, default=0, help="seed of the distractor draws (default 0)")
    e.add_argument("--out", type=Path, default=Path("evaluation"), help="output folder (default ./evaluation)")
    e.add_argument("--limit", type=int, help="evaluate only the first N clips (by id)")
    e.add_argument("--num-speakers-oracle", action="store_true", help="tell each system the reference speaker count")
    e.add_argument("--whisper", help="Whisper model of the cascade and plain systems (default tiny.en)")
    e.add_argument("--model", help="SpeakerLM checkpoint for the speakerlm system (default: the bundled one)")
    e.add_argument("--beams", type=int, help="beam width of every system (1 = greedy; default: each engine's own, "
                   "as transcribe: 5 for Whisper, 4 for the model)")
    e.add_argument("--language", help="language code for multilingual Whisper (default: what the data's lhotse "
                   "manifests say, else en)")
    e.add_argument("--score-language", choices=("en", "zh"),
                   help="scoring tokens: en words or zh characters (default from the language)")
    e.add_argument("--channel", type=int, help="lhotse data: evaluate this channel id (e.g. one AMI headset or array "
                   "microphone); default: the mean of all the recording's channels")
    e.add_argument("--speaker-encoder", choices=("campp", "ge2e"),
                   help="voiceprint model of the cascade (default campp; a SpeakerLM model uses its own)")
    e.add_argument("--engine-config", action="append", type=_switch, metavar="KEY=VALUE",
                   help="an experiment switch of the systems' engine config (repeat), e.g. naming=posthoc, "
                        "discover_speakers=false, retrieval_k=4, enrolled_from_recording=false, window_seconds=30")
    e.set_defaults(func=cmd_evaluate)
    return e
