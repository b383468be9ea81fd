"""Transcription: a recording (plus optional enrolled voices) → a who-said-what `Transcript`.

Engines share one small interface, `Engine.transcribe(wave, enrolled) -> list[Turn]`, so the CLI, the
Python API and the evaluator do not care which one runs:
- `plain`: VAD windows → Whisper; one anonymous speaker (speaker-agnostic ASR, the WER reference point).
- `cascade`: VAD → speaker-embedding windows → clustering → Whisper words → turns (`cascade.py`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Callable, Optional, Union

import numpy as np

from speakerlm.audio import SAMPLE_RATE, duration, load_audio, Pathlike
from speakerlm.errors import UserError
from speakerlm.labels import ANONYMOUS
from speakerlm.memory import return_freed_memory
from speakerlm.timing import time_turns
from speakerlm.turns import Turn
from speakerlm.whisper import ASR_WINDOW_SECONDS, DEFAULT_WHISPER, load_whisper, transcribe_window
from speakerlm.writers import Transcript



@dataclass(frozen=True)
class TranscribeOptions:
    engine: str = "speakerlm"  # which Engine turns audio into turns (see ENGINES): the bundled model by default
    whisper: str = DEFAULT_WHISPER  # "tiny.en", "base", or a local HF Whisper directory
    language: Optional[str] = "en"  # for multilingual Whisper; None = detect
    num_beams: int = 1  # 1 = greedy decoding
    speaker_encoder: str = "campp"  # voiceprints of enrolled speakers ("campp" or "ge2e")
    num_speakers: Optional[int] = None  # known speaker count (skips estimation)
    min_speakers: Optional[int] = None  # lower bound for the estimated count
    max_speakers: Optional[int] = None  # upper bound for the estimated count
    model: Optional[str] = None  # SpeakerLM checkpoint directory (engine "speakerlm"); None = bundled
    discover_speakers: bool = True  # speakerlm: cluster the recording first, register unenrolled voices
    naming: str = "pointer"  # speakerlm: "pointer" (registration in the prompt) or "posthoc" (baseline)
    retrieval_k: int = 8  # speakerlm: at most this many registered voices in a window's prompt
    # speakerlm: matched enrolled people are registered with a voiceprint of their voice in this recording
    # (same room and microphone as the frame stream hears): Match saWER 82.0 → 77.8 on 8 dev clips,
    # 33.3 → 20.0 on the real-speech conversation
    enrolled_from_recording: bool = True
    # speakerlm: int8 decoder and output layer (quantize_for_inference): 20 dev recordings, model alone,
    # 32 % less decoding time for +0.4 WER / +1.1 cpWER, so opt-in
    int8: bool = False
    progress: bool = False  # progress bar over a recording's windows


@dataclass
class Enrolled:
    """Enrolled speakers: name → voiceprint (mean embedding of their enrolment audio)."""

    voiceprints: dict[str, np.ndarray] = field(default_factory=dict)


class Engine(ABC):
    @abstractmethod
    def transcribe(self, wave: np.ndarray, enrolled: Enrolled, state: Optional[Pathlike] = None) -> list[Turn]:
        """A SAMPLE_RATE mono wave → chronological turns. `state`: a file where an engine that works
        window by window records finished windows, so an interrupted run resumes (SpeakerLM engine)."""


class PlainWhisper(Engine):
    """Speech windows cut at pauses, each transcribed by Whisper; no speaker attribution."""


    def __init__(self, options: TranscribeOptions):
        self.options = options
        self.model, self.processor = load_whisper(options.whisper)

    def transcribe(self, wave: np.ndarray, enrolled: Enrolled, state: Optional[Pathlike] = None) -> list[Turn]:
        from speakerlm.vad import group_regions, speech_regions

        turns = []
        for w in group_regions(speech_regions(wave), ASR_WINDOW_SECONDS):
            piece = wave[int(w.start * SAMPLE_RATE) : int(w.end * SAMPLE_RATE)]
            text = transcribe_window(self.model, self.processor, piece, self.options.language, self.options.num_beams)
            if text:
                turns.append(Turn(ANONYMOUS.format(0), text, round(w.start, 3), round(w.end, 3)))
        return turns


class SpeakerLMEngine(Engine):
    """The end-to-end model over a recording of any length, one pass per window cut at pauses.

    1. Speaker discovery (`discover_speakers`): the recording's voices are clustered once
       (`cascade.Diarizer`); clusters that match an enrolled voiceprint take its name, the others are
       registered as anonymous voices `spk k` with their centroid as voiceprint. So every window is
       transcribed in the model's registration mode, with recording-wide labels: consistent over an
       hour, and the speaker-count hints (--num-speakers …) apply.
    2. Each window gets at most `retrieval_k` registered voices: those whose voiceprint best matches
       the window's frame speaker stream, so thousands of enrolled people keep the prompt short. A
       discovered voice heard ≥ LOCAL_SECONDS in the window is registered with a voiceprint of its
       audio *in that window* (`_window_voiceprints`, recordings over LOCAL_AFTER_SECONDS): the label
       stays recording-wide, the voiceprint follows the voice as it sounds there.
    3. A voice the model hears but nobody registered gets a window-local `spk j` from the model; it
       becomes a new recording-wide label, registered for later windows with a voiceprint from the
       audio given to it (design.md, Long recordings).
    4. `naming="posthoc"` is the baseline the pointer must beat: the model transcribes without any
       registration, and its anonymous speakers are named afterwards by voiceprint similarity
       (Hungarian assignment with a rejection threshold, as the cascade does).
    The model writes no times (as the paper's); `timing.time_turns` lays each window's turns over its
    speech, moving the boundaries to where the discovered voices change (timing.py).
    An interrupted run resumes from its last finished window (`state`, one JSON line per window).
    """

    # the bundled model was trained on 10–25 s clips; on whole 40–50 s dev clips an earlier checkpoint
    # (step 200) reached only WER 92 %, so windows stay near the training length
    WINDOW_SECONDS = 20.0
    LOCAL_SECONDS = 2.0  # a discovered voice heard this long in a window gets a voiceprint from there…
    # …in recordings longer than this. On the 10-minute meeting window-local voiceprints took cpWER from
    # 83.67 to 71.74 (two similar voices had shared one recording-wide voiceprint); on 40–50 s dev clips,
    # where the recording-wide voiceprint is already made of nearby audio and the local one of less,
    # they cost 1.9–3.4 points (20 clips: No cpWER 58.73 → 60.65, Match saWER 61.17 → 64.58)
    LOCAL_AFTER_SECONDS = 120.0

    def __init__(self, options: TranscribeOptions):
        from speakerlm.cascade import Diarizer
        from speakerlm.model import SpeakerLM
        from speakerlm.speaker_encoder import load_speaker_encoder

        if options.naming not in ("pointer", "posthoc"):
            raise UserError(f"unknown naming {options.naming!r}; choose pointer or posthoc")
        path = options.model or bundled_model()
        if path is None:
            raise UserError("no SpeakerLM checkpoint: pass --model DIR, or use --engine cascade")
        from pathlib import Path

        if not (Path(path) / "config.json").is_file() or not (Path(path) / "trained.safetensors").is_file():
            raise UserError(f"{path}: not a SpeakerLM checkpoint (needs config.json and trained.safetensors); "
                            "pass a `speakerlm train` checkpoint folder")
        self.model = SpeakerLM.load(path)
        if options.whisper != self.model.config.whisper:  # the model is built on its own Whisper
            raise UserError(f"{path}: this SpeakerLM model is built on Whisper {self.model.config.whisper}, not "
                            f"{options.whisper}; use --engine cascade (or plain) for another Whisper")
        if options.int8:
            self.model.quantize_for_inference(("decoder", "proj_out"))
        if self.model.config.speaker_encoder != options.speaker_encoder:
            options = replace(options, speaker_encoder=self.model.config.speaker_encoder)
        self.options = options
        self.encoder = load_speaker_encoder(self.model.config.speaker_encoder)
        self.diarizer = Diarizer(options, encoder=self.encoder)
        self._embeddings: dict[tuple[int, int], np.ndarray] = {}  # see _embed_once

    def transcribe(self, wave: np.ndarray, enrolled: Enrolled, state: Optional[Pathlike] = None) -> list[Turn]:
        from tqdm import tqdm

        from speakerlm.cascade import match_names
        from speakerlm.labels import is_anonymous
        from speakerlm.vad import Region, group_regions, speech_regions

        opt = self.options
        self._embeddings = {}  # a new recording: nothing embedded yet (_embed_once)
        regions = speech_regions(wave)
        # registered voices by prompt name; recording-wide anonymous voices are "~spk k", a name the
        # model cannot confuse with the window-local "spk j" labels it writes for unregistered voices
        voices = dict(enrolled.voiceprints) if opt.naming == "pointer" else {}
        if opt.discover_speakers:
            self.diarizer.options = opt  # the evaluator may set an oracle speaker count per clip
            frames, centroids = self.diarizer.diarize(wave, regions)
            named = match_names(centroids, voices, self.diarizer.config.match_threshold)
            for k, c in enumerate(centroids):
                if k not in named:
                    voices[f"~{ANONYMOUS.format(k)}"] = self._cluster_voiceprint(wave, frames, k, c)
                elif opt.enrolled_from_recording:
                    # an enrolled person found in the recording is registered with a voiceprint of their
                    # voice *here* (same room, microphone, noise) as the frame stream hears it
                    voices[named[k]] = self._cluster_voiceprint(wave, frames, k, c)
            # which diarization cluster each label the model may write stands for (turn times follow it)
            clusters = {named.get(k, f"~{ANONYMOUS.format(k)}"): k for k in range(len(centroids))}
        else:
            frames, clusters = None, {}
        n_anon = len(centroids) if opt.discover_speakers else 0
        windows = group_regions(regions, self.WINDOW_SECONDS)
        local = duration(wave) > self.LOCAL_AFTER_SECONDS  # window-local voiceprints (see LOCAL_AFTER_SECONDS)
        done = _read_state(state, len(windows))
        if done:
            print(f"resuming: {len(done)} of {len(windows)} windows already transcribed", file=sys.stderr)
        turns: list[Turn] = []
        log = open(state, "a") if state is not None else None
        for i, window in enumerate(tqdm(windows, desc="windows", unit="window", disable=not opt.progress)):
            if i < len(done):  # finished before an interruption
                timed, new_voices = done[i]
            else:
                piece = wave[int(window.start * SAMPLE_RATE) : int(window.end * SAMPLE_RATE)]
                found = self.transcribe_window(
                    piece, self._window_voiceprints(voices, clusters, window, wave, frames) if local else voices)
                return_freed_memory()  # memory flat in the recording's length (memory.py)
                inside = [Region(max(r.start, window.start), min(r.end, window.end)) for r in regions
                          if r.end > window.start and r.start < window.end] or [window]
                new: dict[str, str] = {}  # window-local anonymous label → recording-wide label
                for t in found:
                    if is_anonymous(t.speaker):
                        new.setdefault(t.speaker, ANONYMOUS.format(n_anon + len(new)))
                timed = [Turn(new.get(t.speaker, t.speaker.lstrip("~")), t.text, t.start, t.end)
                         for t in time_turns(found, inside, frames, clusters)]
                new_voices = {}
                for label in new.values():
                    spans = [wave[int(t.start * SAMPLE_RATE) : int(t.end * SAMPLE_RATE)] for t in timed if t.speaker == label]
                    speech = np.concatenate(spans) if spans else np.zeros(0, np.float32)
                    if speech.size >= SAMPLE_RATE:  # enough audio to recognise them in later windows
                        new_voices["~" + label] = self.encoder.embed(speech)
                if log is not None:
                    log.write(_window_record(i, timed, new_voices))
                    log.flush()
                    os.fsync(log.fileno())
            # labels handed out so far: one past the highest (also right for windows read back on resume)
            n_anon = max([n_anon] + [int(t.speaker.split()[1]) + 1 for t in timed if is_anonymous(t.speaker)])
            voices.update(new_voices)
            turns += timed
        if log is not None:
            log.close()
        if opt.naming == "posthoc":
            turns = _name_after(turns, wave, enrolled, self.encoder, self.diarizer.config.match_threshold)
        return _renumber_anonymous(turns)

    def _window_voiceprints(self, voices: dict[str, np.ndarray], clusters: dict[str, int], window, wave: np.ndarray,
                            frames: Optional[np.ndarray]) -> dict[str, np.ndarray]:
        """The registered voices for one window: a discovered voice that speaks ≥ LOCAL_SECONDS in this
        window is registered with a voiceprint of *this window's* audio of it (labels stay
        recording-wide; the voiceprint follows the voice as it is here), others keep theirs."""
        from speakerlm.cascade import FRAME_RATE

        if frames is None:  # no speaker discovery: nothing known of who speaks where
            return voices
        a, b = int(window.start * FRAME_RATE), int(np.ceil(window.end * FRAME_RATE))
        local_frames = frames[a:b]
        out = dict(voices)
        for label, k in clusters.items():
            # an enrolled person's voiceprint is replaced only where the user allowed it from the recording
            key = label if label in voices and (label.startswith("~") or self.options.enrolled_from_recording) else None
            if key is not None and (local_frames == k).sum() >= self.LOCAL_SECONDS * FRAME_RATE:
                out[key] = self._cluster_voiceprint(wave, local_frames, k, voices[key], offset=a)
        return out

    def _cluster_voiceprint(self, wave: np.ndarray, frames: np.ndarray, k: int, centroid: np.ndarray,
                            offset: int = 0) -> np.ndarray:
        """A discovered voice's voiceprint made the way enrolment makes one (the model was trained on
        those): mean embedding of its longest single-speaker stretches, ≤ 10 s in all; the cluster
        centroid when no stretch reaches 1 s. `frames` may be a window's slice starting at frame
        `offset` of the recording `wave`."""
        from speakerlm.cascade import FRAME_RATE

        mine = np.concatenate([[False], frames == k, [False]])
        edges = np.flatnonzero(np.diff(mine.astype(int)))
        runs = sorted(zip(edges[::2], edges[1::2]), key=lambda r: r[0] - r[1])  # longest first
        pieces, total = [], 0.0
        for a, b in runs:
            if (b - a) / FRAME_RATE < 1.0 or total >= 10.0:
                break
            pieces.append(wave[int((offset + a) / FRAME_RATE * SAMPLE_RATE) : int((offset + b) / FRAME_RATE * SAMPLE_RATE)])
            total += (b - a) / FRAME_RATE
        if not pieces:
            return centroid / np.linalg.norm(centroid)
        return mean_voiceprint(pieces, embed=self._embed_once)

    def _embed_once(self, piece: np.ndarray) -> np.ndarray:
        """The speaker encoder's embedding of a piece of the recording, computed once: a window's
        voiceprint is mostly made of stretches the recording-wide one (or a neighbouring window's)
        already embedded. Pieces are views into the one recording array, so where they start in memory
        and their length identify them; the memo is emptied for each recording."""
        key = (piece.__array_interface__["data"][0], piece.size)
        if key not in self._embeddings:
            self._embeddings[key] = self.encoder.embed(piece)
        return self._embeddings[key]

    def transcribe_window(self, piece: np.ndarray, voiceprints: dict[str, np.ndarray]) -> list[Turn]:
        """One window (≤ WINDOW_SECONDS) with the registered voices that best match it → untimed turns."""
        import torch

        from speakerlm.features import frame_speaker_stream, log_mel_windows, n_frames
        from speakerlm.model import Example

        processor = self.model.backbone.processor if self.model.config.backbone == "whisper" else self.model.processor
        frames = n_frames(piece)
        with torch.inference_mode():
            audio = self.model.encode_audio(log_mel_windows(processor, piece), frames)
        stream = frame_speaker_stream(self.encoder, piece, frames)
        names = retrieve(voiceprints, stream.numpy(), self.options.retrieval_k)
        slots = [(name, torch.from_numpy(np.asarray(voiceprints[name], np.float32))) for name in names]
        ex = Example(audio, stream, slots)
        return self.model.generate(ex, max_new_tokens=int(40 + 8 * duration(piece)), num_beams=self.options.num_beams)


def retrieve(voiceprints: dict[str, np.ndarray], stream: np.ndarray, k: int) -> list[str]:
    """The ≤ k registered names whose voiceprint best matches some moment of the window's speaker
    stream (max cosine), in registration order: the prompt stays short however many are enrolled."""
    if len(voiceprints) <= k:
        return list(voiceprints)
    names = list(voiceprints)
    prints = np.stack([voiceprints[n] for n in names]).astype(np.float32)
    prints /= np.linalg.norm(prints, axis=1, keepdims=True).clip(1e-9)
    frames = stream / np.linalg.norm(stream, axis=1, keepdims=True).clip(1e-9)
    best = (prints @ frames.T).max(axis=1)
    keep = set(np.argsort(-best, kind="stable")[:k].tolist())
    return [n for i, n in enumerate(names) if i in keep]


def _read_state(state: Optional[Pathlike], n_windows: int) -> list[tuple[list[Turn], dict[str, np.ndarray]]]:
    """Finished windows from an interrupted run's state file (a torn last line is dropped)."""
    from pathlib import Path

    if state is None or not Path(state).exists():
        return []
    done = []
    for line in Path(state).read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break
        if row.get("window") != len(done) or len(done) >= n_windows:
            break
        done.append(([Turn.from_dict(t) for t in row["turns"]], {k: np.asarray(v, np.float32) for k, v in row["voices"].items()}))
    Path(state).write_text("".join(_window_record(i, *w) for i, w in enumerate(done)))  # drop a torn tail
    return done


def _window_record(i: int, turns: list[Turn], voices: dict[str, np.ndarray]) -> str:
    return json.dumps({"window": i, "turns": [t.to_dict() for t in turns],
                       "voices": {k: np.asarray(v).tolist() for k, v in voices.items()}}) + "\n"


def _name_after(turns: list[Turn], wave: np.ndarray, enrolled: Enrolled, encoder, threshold: float) -> list[Turn]:
    """Post-hoc naming: each anonymous speaker's voiceprint (from the audio of its turns) is matched to
    the enrolled voiceprints by Hungarian assignment; matches below `threshold` stay anonymous."""
    from speakerlm.cascade import match_names

    labels = list(dict.fromkeys(t.speaker for t in turns))
    prints = []
    for label in labels:
        spans = [wave[int(t.start * SAMPLE_RATE) : int(t.end * SAMPLE_RATE)] for t in turns if t.speaker == label]
        speech = np.concatenate(spans) if spans else np.zeros(SAMPLE_RATE, np.float32)
        prints.append(encoder.embed(speech if speech.size >= SAMPLE_RATE // 2 else np.pad(speech, (0, SAMPLE_RATE))))
    named = match_names(np.stack(prints), enrolled.voiceprints, threshold) if labels else {}
    rename = {label: named.get(i, label) for i, label in enumerate(labels)}
    return [Turn(rename[t.speaker], t.text, t.start, t.end) for t in turns]


def _renumber_anonymous(turns: list[Turn]) -> list[Turn]:
    """Anonymous labels renumbered spk 0, spk 1, … by first appearance in the whole recording."""
    from speakerlm.labels import is_anonymous

    order = list(dict.fromkeys(t.speaker for t in turns if is_anonymous(t.speaker)))
    rename = {label: ANONYMOUS.format(i) for i, label in enumerate(order)}
    return [Turn(rename.get(t.speaker, t.speaker), t.text, t.start, t.end) for t in turns]


def bundled_model() -> Optional[str]:
    """The checkpoint shipped inside the package, if this build has one."""
    from pathlib import Path

    path = Path(__file__).parent / "bundled"
    return str(path) if (path / "trained.safetensors").exists() else None


def _cascade(options: TranscribeOptions) -> Engine:
    from speakerlm.cascade import Cascade  # imported late: cascade.py builds on this module

    return Cascade(options)


ENGINES = {"plain": PlainWhisper, "cascade": _cascade, "speakerlm": SpeakerLMEngine}
# variants of the SpeakerLM engine the evaluator can name as systems (ablations and baselines)
VARIANTS = {
    "speakerlm-native": dict(engine="speakerlm", discover_speakers=False),  # the model alone labels unknown voices
    "speakerlm-posthoc": dict(engine="speakerlm", discover_speakers=False, naming="posthoc"),  # naming baseline
}


def mean_voiceprint(waves: list[np.ndarray], encoder_name: str = "campp",
                    embed: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> np.ndarray:
    """Voiceprint of one speaker: the L2-normalised mean embedding of ≤ 10 s clips of their audio
    (paper §5.1: 2–10 s clips, averaged); pieces shorter than 1 s are left out when others exist.
    `embed` replaces the encoder's own (the engine passes a memoised one)."""
    from speakerlm.speaker_encoder import load_speaker_encoder

    embed = embed or load_speaker_encoder(encoder_name).embed
    clip = 10 * SAMPLE_RATE
    pieces = [w[i : i + clip] for w in waves for i in range(0, w.size, clip)]
    pieces = [p for p in pieces if p.size >= SAMPLE_RATE] or pieces
    mean = np.mean([embed(p) for p in pieces], axis=0)
    return (mean / np.linalg.norm(mean)).astype(np.float32)


def enroll_voiceprint(paths: list[Pathlike], encoder_name: str = "campp") -> np.ndarray:
    """Voiceprint from enrolment files, refusing audio too short to say anything about the voice."""
    waves = []
    for path in paths:
        wave = load_audio(path)
        if duration(wave) < 1.0:
            raise UserError(f"{path}: enrolment audio is {duration(wave):.1f} s; give at least 1 s (2–10 s is best)")
        waves.append(wave)
    return mean_voiceprint(waves, encoder_name)


class Transcriber:
    """The Python API: `Transcriber(options).transcribe("meeting.wav", speakers={"Alice": ["alice.wav"]})`."""

    def __init__(self, options: TranscribeOptions = TranscribeOptions()):
        if options.engine not in ENGINES:
            raise UserError(f"unknown engine {options.engine!r}; choose one of {sorted(ENGINES)}")
        self.options = options
        self._engine: Optional[Engine] = None  # built on first use, so bad input fails before models load

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = ENGINES[self.options.engine](self.options)
        return self._engine

    def transcribe(self, audio: Union[Pathlike, np.ndarray], speakers: Optional[dict[str, list[Pathlike]]] = None,
                   voiceprints: Optional[dict[str, np.ndarray]] = None, state: Optional[Pathlike] = None) -> Transcript:
        """`speakers`: name → enrolment audio files; `voiceprints`: name → stored voiceprint; `state`:
        a file recording finished windows, so that calling again after an interruption resumes."""
        started = time.perf_counter()
        wave = load_audio(audio) if not isinstance(audio, np.ndarray) else audio
        enrolled = Enrolled({**(voiceprints or {}),
                             **{name: enroll_voiceprint(paths, self.options.speaker_encoder)
                                for name, paths in (speakers or {}).items()}})
        turns = self.engine.transcribe(wave, enrolled, state)
        elapsed = time.perf_counter() - started
        meta = {"engine": self.options.engine, "whisper": self.options.whisper,
                "enrolled": sorted(enrolled.voiceprints), "seconds": round(elapsed, 3),
                "rtf": round(elapsed / max(duration(wave), 1e-9), 4)}
        return Transcript(str(audio) if not isinstance(audio, np.ndarray) else "<array>", turns, duration(wave), meta)
