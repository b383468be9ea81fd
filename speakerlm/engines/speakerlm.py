"""The SpeakerLM engine: the end-to-end model over a recording of any length, one pass per window cut
at pauses.

1. Speaker discovery (`discover_speakers`): the recording's voices are diarized once; voices that
   match an enrolled voiceprint take its name, the others are registered as anonymous voices `spk k`.
   So every window is transcribed in the model's registration mode with recording-wide labels
   (consistent over an hour), and the user's speaker-count hints apply.
2. Each window gets at most `retrieval_k` registered voices: those whose voiceprint best matches the
   window's frame speaker stream, so thousands of enrolled people keep the prompt short. In recordings
   over `local_after_seconds`, a discovered voice heard ≥ `local_seconds` in a window is registered with
   a voiceprint of its audio *in that window*: the label stays recording-wide, the voiceprint follows
   the voice as it sounds there.
3. A voice the model hears but nobody registered gets a window-local `spk j` from the model; it becomes
   a new recording-wide label, registered for later windows with a voiceprint of the audio given to it.
4. `naming="posthoc"` is the baseline the pointer must beat: the model transcribes without any
   registration, and its anonymous speakers are named afterwards by voiceprint similarity.
A model trained with turn times (`SpeakerLMConfig.timestamps`, the bundled one) writes each turn's
start and end; for a model that writes none (as the paper's) `timing.time_turns` lays each window's
turns over its speech, moving the boundaries to where the discovered voices change. By default (`speakers_from`)
each word of those turns then takes the discovered voice speaking at its time, as the cascade labels
its words: on the held-out sets this beats the pointer's per-turn choice by a wide margin. An interrupted run resumes from
its last finished window (`state`, one JSON line per window).

How it spends two cores: up to `batch_windows` windows are decoded as one batch (greedy, or a beam
search whose beams are the batch's rows, `num_beams` a window), and a side thread computes the
windows' model inputs (encoder states, frame speaker stream) ahead of the decoding; in a recording of
more than one batch it first takes half of the discovery's speaker embeddings. Each thread runs torch
on one core: the work is many small operations, which a second thread inside one
operation does not speed up, while two operations side by side nearly halve the time.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import numpy as np

from speakerlm.audio import SAMPLE_RATE, Pathlike, duration
from speakerlm.diarize import FRAMES_PER_SECOND, Diarizer, DiarizerConfig, Enrolled, SpeakerCount
from speakerlm.engines.base import Engine, TranscribeOptions
from speakerlm.engines.progress import RecordLog, read_records, write_records
from speakerlm.errors import UserError
from speakerlm.memory import return_freed_memory
from speakerlm.timing import time_turns
from speakerlm.turns import ANONYMOUS, Turn, is_anonymous, renumber_anonymous
from speakerlm.vad import Region, group_regions, speech_regions
from speakerlm.voiceprints import (MATCH_THRESHOLD, Voiceprints, bundled_cohort, match_names, mean_voiceprint,
                                   retrieve)


# the model's beam width unless told (--beams): four beams, searched as one batch over the windows
# (decoding.decode_beam_batch), beat greedy decoding on every held-out set (ood cpWER 50.74 -> 47.38,
# real 12.36 -> 11.24, dev 44.20 -> 39.36) for 12 % more time on a 45 s meeting (docs/results.md)
MODEL_BEAMS = 4


@dataclass(frozen=True)
class SpeakerLMEngineConfig:
    # the bundled model was trained on 10–25 s clips; on whole 40–50 s clips a model at step 200 reached
    # only WER 92 %, so windows stay near the training length
    window_seconds: float = 20.0
    # a window whose decoding ends while this many seconds of its speech are still left after the last
    # turn the model wrote is decoded again from there (as Whisper's long-form decoding seeks to where
    # its text stopped): the model sometimes ends a window early, in overlaps of close voices most
    # (docs/results.md); 0 = off. At most `continuations` rounds a window
    continue_after_s: float = 4.0
    continuations: int = 3
    # Whisper's temperature fallback for a window whose greedy answer fails its checks (decoding.decode),
    # the failing windows decoded again one by one: with the bundled model it gains a little (cpWER ood
    # 50.74 -> 50.52, dev 44.20 -> 43.56, real the same) but long meetings fail many windows (11.8 min:
    # RTF 0.083 -> 0.134), so it is off
    fallback: bool = False
    # > 0: each word is chosen with the pretrained Whisper decoder's log-probability mixed in at this
    # weight (decoding.WordFusion; greedy decoding only)
    word_fusion: float = 0.0
    # "frames": the model's words are laid over its turns' times and each takes the diarization's
    # speaker there, joined as the cascade joins its words; "pointer": each turn keeps the speaker the
    # model chose. Frames win everywhere: cpWER ood 47.84 vs 66.16, real 15.45 vs 33.71, dev 50.34 vs 67.90
    speakers_from: str = "frames"
    # a model that writes turn times (SpeakerLMConfig.timestamps): "model" keeps them, "layout" lays its
    # turns over the speech as for a model that writes none (timing.time_turns)
    turn_times: str = "model"
    discover_speakers: bool = True  # diarize first and register the recording's voices (step 1)
    naming: str = "pointer"  # "pointer" (registration in the prompt) or "posthoc" (the naming baseline)
    retrieval_k: int = 8  # at most this many registered voices in a window's prompt
    # windows decoded together (decoding.decode_greedy_batch, decode_beam_batch): the same words, in a
    # third of the time; a window's voices from an earlier window of its own batch are not registered for it yet
    batch_windows: int = 8
    # an enrolled person found in the recording is registered with a voiceprint of their voice *there*
    # (same room and microphone as the frame stream hears)
    enrolled_from_recording: bool = True
    # enrolled people no discovered voice matched stay registered in the prompt (the pointer may pick
    # them); False registers the discovered voices only, as the cascade names only those
    register_unmatched: bool = True
    # window-local voiceprints (step 2): on a 10-minute meeting they took cpWER from 83.67 to 71.74 (two
    # similar voices had shared one recording-wide voiceprint); on 40–50 s clips, whose recording-wide
    # voiceprint is already made of nearby audio, they cost 1.9–3.4 points, hence only past 2 minutes
    local_seconds: float = 2.0
    local_after_seconds: float = 120.0
    match_threshold: float = MATCH_THRESHOLD  # cosine needed to give a discovered voice an enrolled name
    # discovered voices are named by scores normalised against a cohort of voices nobody enrols, as the
    # cascade names its clusters (`voiceprints.s_norm`)
    normalise_scores: bool = True
    diarizer: DiarizerConfig = field(default_factory=DiarizerConfig)

    def __post_init__(self):
        if self.naming not in ("pointer", "posthoc"):
            raise UserError(f"naming {self.naming!r}: choose pointer or posthoc")
        if self.speakers_from not in ("pointer", "frames"):
            raise UserError(f"speakers_from {self.speakers_from!r}: choose pointer or frames")
        if self.turn_times not in ("model", "layout"):
            raise UserError(f"turn_times {self.turn_times!r}: choose model or layout")
        if self.retrieval_k < 1:
            raise UserError(f"retrieval_k {self.retrieval_k}: give at least 1")
        if self.batch_windows < 1:
            raise UserError(f"batch_windows {self.batch_windows}: give at least 1")


class SpeakerLMEngine(Engine):
    Config = SpeakerLMEngineConfig
    resumable = True

    @classmethod
    def resolve(cls, options: TranscribeOptions) -> TranscribeOptions:
        from speakerlm.checkpoint import bundled_model, read_config

        path = options.model or bundled_model()
        if path is None:
            raise UserError("no SpeakerLM model: pass --model DIR, or use --engine cascade")
        config = read_config(path)
        if options.whisper not in (None, config.whisper):  # the model is built on its own Whisper
            raise UserError(f"{path}: this SpeakerLM model is built on Whisper {config.whisper}, not "
                            f"{options.whisper}; use --engine cascade (or plain) for another Whisper")
        if options.speaker_encoder not in (None, config.speaker_encoder):
            raise UserError(f"{path}: this SpeakerLM model was trained on {config.speaker_encoder} voiceprints, not "
                            f"{options.speaker_encoder}; use --engine cascade for another speaker encoder")
        if options.language not in (None, "en") and config.whisper.endswith(".en"):
            raise UserError(f"{path}: this SpeakerLM model is English-only (Whisper {config.whisper}); --language "
                            f"{options.language} needs a model trained on a multilingual Whisper (--whisper base)")
        return replace(options, model=str(path), whisper=config.whisper, speaker_encoder=config.speaker_encoder,
                       num_beams=options.num_beams or MODEL_BEAMS)

    def __init__(self, options: TranscribeOptions, config: SpeakerLMEngineConfig = SpeakerLMEngineConfig()):
        from speakerlm.checkpoint import load_model
        from speakerlm.pretrained.speaker_encoder import load_speaker_encoder

        self.options, self.config = self.resolve(options), config or SpeakerLMEngineConfig()
        self.model = load_model(self.options.model)
        self.model.backbone.add_int8_output_layer()
        self.fusion = None
        if self.config.word_fusion > 0 and self.options.num_beams > 1:
            raise UserError(f"word_fusion {self.config.word_fusion}: word fusion decodes greedily; add --beams 1")
        if self.config.word_fusion > 0:
            from speakerlm.decoding import WordFusion
            from speakerlm.model import SpeakerLM

            self.fusion = WordFusion(SpeakerLM(self.model.config).backbone.eval(), self.config.word_fusion)
        self.encoder = load_speaker_encoder(self.options.speaker_encoder)
        self.diarizer = Diarizer(self.encoder, self.config.diarizer)
        self.cohort = bundled_cohort(self.encoder.name) if self.config.normalise_scores else None
        self._embeddings: dict[tuple[int, int], np.ndarray] = {}  # see _embed_once

    def transcribe(self, wave: np.ndarray, voiceprints: Voiceprints, count: SpeakerCount = SpeakerCount(),
                   state: Optional[Pathlike] = None) -> list[Turn]:
        import torch
        from concurrent.futures import ThreadPoolExecutor
        from tqdm import tqdm

        cfg = self.config
        self._embeddings = {}  # a new recording: nothing embedded yet (_embed_once)
        regions = speech_regions(wave)
        windows = group_regions(regions, cfg.window_seconds)
        done = _read_state(state, len(windows))
        if done:
            print(f"resuming: {len(done)} of {len(windows)} windows already transcribed", file=sys.stderr)
        todo = list(range(len(done), len(windows)))
        groups = [todo[k : k + cfg.batch_windows] for k in range(0, len(todo), cfg.batch_windows)]
        # two threads when torch may use two cores: the side thread takes half of the discovery's
        # speaker embeddings, then computes the next windows' inputs while this one decodes
        threads = torch.get_num_threads()
        side = ThreadPoolExecutor(1) if threads > 1 and groups else None
        if side is not None:
            torch.set_num_threads(max(1, threads // 2))
        try:
            # one batch of windows: the side thread computes its inputs while the discovery runs here;
            # more: the side thread first embeds half of the speech for the discovery (which would
            # otherwise keep it waiting), then starts on the first windows while voices are clustered
            helper = side if len(groups) > 1 else None
            first = functools.partial(self._inputs_later, side, wave, windows, groups[0] if groups else [])
            pending = first() if helper is None else None
            embedded = self.diarizer.embed_speech(wave, regions, helper) if cfg.discover_speakers else None
            pending = first() if pending is None else pending
            voices, frames, clusters, n_anon = self._discover(wave, regions, voiceprints, count, embedded)
            local = duration(wave) > cfg.local_after_seconds  # window-local voiceprints (see the config)

            def prompt(window: Region) -> Voiceprints:
                """The voices a window (or the rest of one) may register."""
                return self._window_voiceprints(voices, clusters, window, wave, frames) if local else voices

            turns: list[Turn] = []
            for timed, new_voices in done:  # finished before an interruption
                n_anon = _next_anonymous(n_anon, timed)
                voices.update(new_voices)
                turns += timed
            log = RecordLog(state)
            bar = tqdm(total=len(windows), initial=len(done), desc="windows", unit="window",
                       disable=not self.options.progress)
            for g, group in enumerate(groups):
                inputs = _gather(pending)
                if g + 1 < len(groups):
                    pending = self._inputs_later(side, wave, windows, groups[g + 1])
                elif side is not None:  # the side thread has nothing left: the last batch gets every core
                    torch.set_num_threads(threads)
                found_all = self.decode_windows(inputs, [prompt(windows[i]) for i in group])
                pieces_all = self._continued([[(windows[i], found)] for i, found in zip(group, found_all)],
                                             regions, wave, prompt)
                for i, pieces in zip(group, pieces_all):
                    timed, new_voices = [], {}
                    for piece, found in pieces:
                        placed, new = self._place(found, piece, regions, wave, frames, clusters, n_anon)
                        n_anon = _next_anonymous(n_anon, placed)
                        timed += placed
                        new_voices.update(new)
                    log.append(_window_record(i, timed, new_voices))
                    voices.update(new_voices)
                    turns += timed
                bar.update(len(group))
                return_freed_memory()  # memory flat in the recording's length (memory.py)
            bar.close()
            log.close()
        finally:
            if side is not None:
                side.shutdown(cancel_futures=True)
                torch.set_num_threads(threads)
        if cfg.naming == "posthoc":
            turns = self._name_after(turns, wave, voiceprints)
        return renumber_anonymous(turns)

    def _discover(self, wave: np.ndarray, regions: list[Region], voiceprints: Voiceprints, count: SpeakerCount,
                  embedded: Optional[tuple]):
        """Step 1, from the diarizer's speaker embeddings (`Diarizer.embed_speech`; None = no discovery):
        (registered voices by prompt name, diarization frames, the cluster of each label the model may
        write, anonymous labels handed out). Recording-wide anonymous voices are "~spk k", a name the
        model cannot confuse with the window-local "spk j" it writes for unregistered voices."""
        cfg = self.config
        voices = dict(voiceprints) if cfg.naming == "pointer" else {}
        if embedded is None:
            return voices, None, {}, 0
        frames, centroids = self.diarizer.labelled(embedded, wave, regions, count,
                                                   Enrolled(voiceprints, cfg.match_threshold, self.cohort) if voiceprints else None)
        named = match_names(centroids, voices, cfg.match_threshold, self.cohort)
        if not cfg.register_unmatched:
            voices = {name: v for name, v in voices.items() if name in named.values()}
        for k, c in enumerate(centroids):
            if k not in named:
                voices[f"~{ANONYMOUS.format(k)}"] = self._cluster_voiceprint(wave, frames, k, c)
            elif cfg.enrolled_from_recording:
                voices[named[k]] = self._cluster_voiceprint(wave, frames, k, c)
        # which diarization cluster each label the model may write stands for (turn times follow it)
        clusters = {named.get(k, f"~{ANONYMOUS.format(k)}"): k for k in range(len(centroids))}
        return voices, frames, clusters, len(centroids)

    def _inputs_later(self, side, wave: np.ndarray, windows: list[Region], group: list[int]) -> list:
        """The group's encoder inputs, one job per window: futures on the side thread (a job not yet
        started when they are needed is done by the caller instead, see `_gather`), or calls to make."""
        pieces = [wave[int(windows[i].start * SAMPLE_RATE) : int(windows[i].end * SAMPLE_RATE)] for i in group]
        jobs = [functools.partial(self.window_inputs, p) for p in pieces]
        return [(side.submit(job) if side is not None else None, job) for job in jobs]

    def window_inputs(self, piece: np.ndarray):
        """A window's audio → (encoder states, frame speaker stream), the model's inputs from audio."""
        import torch

        from speakerlm.features import frame_speaker_stream, log_mel_windows, n_frames

        frames = n_frames(piece)
        with torch.inference_mode():
            audio = self.model.encode_audio(log_mel_windows(self.model.backbone.processor, piece), frames)
        stream = frame_speaker_stream(self.encoder, piece, frames)
        return_freed_memory()  # the encoder's and CAM++'s scratch: without this, +20-150 MB a window
        return audio, stream, duration(piece)

    def decode_windows(self, inputs: list, voiceprints: list[Voiceprints]) -> list[list[Turn]]:
        """Windows' inputs, each with the registered voices to choose from → untimed turns per window.
        Each window's prompt holds the `retrieval_k` voices that best match its frame speaker stream;
        the windows are decoded together as one batch, greedy or a beam search."""
        import torch

        from speakerlm.decoding import FALLBACK_TEMPERATURES, decode, decode_beam_batch, decode_greedy_batch
        from speakerlm.model import Example

        examples, budgets = [], []
        for (audio, stream, seconds), voices in zip(inputs, voiceprints):
            names = retrieve(voices, stream.numpy(), self.config.retrieval_k)
            slots = [(name, torch.from_numpy(np.asarray(voices[name], np.float32))) for name in names]
            examples.append(Example(audio, stream, slots, language=self.options.language))
            budgets.append(int(40 + 8 * seconds))
        temperatures = FALLBACK_TEMPERATURES if self.config.fallback else (0.0,)
        beams = self.options.num_beams
        if beams > 1:
            first = decode_beam_batch(self.model, examples, budgets, beams)
        else:
            first = decode_greedy_batch(self.model, examples, budgets, fusion=self.fusion, checked=True)
        # a window whose first answer fails Whisper's checks is decoded again at higher temperatures
        return [decode(self.model, ex, max_new_tokens=n, temperatures=temperatures, greedy=d)  # sampled: no fusion
                if self.config.fallback else d.turns for d, ex, n in zip(first, examples, budgets)]

    def _continued(self, pieces_all: list[list[tuple[Region, list[Turn]]]], regions: list[Region], wave: np.ndarray,
                   prompt: Callable[[Region], Voiceprints]) -> list[list[tuple[Region, list[Turn]]]]:
        """Each window's decoded pieces, (region, turns timed from the region's start), with the rest of
        a window decoded again after the last turn the model wrote while `continue_after_s` of speech
        is left there; the rests of a batch's windows are decoded together."""
        cfg = self.config
        for _ in range(cfg.continuations if cfg.continue_after_s > 0 else 0):
            rests = [(k, rest) for k, pieces in enumerate(pieces_all)
                     if (rest := _rest_after(*pieces[-1], regions, cfg.continue_after_s)) is not None]
            if not rests:
                break
            inputs = [self.window_inputs(wave[int(r.start * SAMPLE_RATE) : int(r.end * SAMPLE_RATE)]) for _, r in rests]
            for (k, rest), found in zip(rests, self.decode_windows(inputs, [prompt(r) for _, r in rests])):
                pieces_all[k].append((rest, found))
        return pieces_all

    def _place(self, found: list[Turn], window: Region, regions: list[Region], wave: np.ndarray,
               frames: Optional[np.ndarray], clusters: dict[str, int], n_anon: int) -> tuple[list[Turn], Voiceprints]:
        """A window's decoded turns in recording time with recording-wide labels, and the voiceprints of
        voices it introduced (registered for later windows)."""
        cfg = self.config
        inside = [Region(max(r.start, window.start), min(r.end, window.end)) for r in regions
                  if r.end > window.start and r.start < window.end] or [window]
        new: dict[str, str] = {}  # window-local anonymous label → recording-wide label
        for t in found:
            if is_anonymous(t.speaker):
                new.setdefault(t.speaker, ANONYMOUS.format(n_anon + len(new)))
        written = cfg.turn_times == "model" and found and all(t.start is not None for t in found)
        placed = _shifted(found, window) if written else time_turns(found, inside, frames, clusters)
        timed = [Turn(new.get(t.speaker, t.speaker.lstrip("~")), t.text, t.start, t.end) for t in placed]
        if cfg.speakers_from == "frames" and frames is not None:
            timed = _speakers_from_frames(timed, inside, frames, clusters)
        new_voices = {}
        for label in new.values():
            spans = [wave[int(t.start * SAMPLE_RATE) : int(t.end * SAMPLE_RATE)] for t in timed if t.speaker == label]
            speech = np.concatenate(spans) if spans else np.zeros(0, np.float32)
            if speech.size >= SAMPLE_RATE:  # enough audio to recognise them in later windows
                new_voices["~" + label] = self.encoder.embed(speech)
        return timed, new_voices

    def _window_voiceprints(self, voices: Voiceprints, clusters: dict[str, int], window: Region, wave: np.ndarray,
                            frames: Optional[np.ndarray]) -> Voiceprints:
        """The registered voices for one window: a discovered voice that speaks ≥ local_seconds in this
        window is registered with a voiceprint of *this window's* audio of it, others keep theirs."""
        if frames is None:  # no speaker discovery: nothing known of who speaks where
            return voices
        a, b = int(window.start * FRAMES_PER_SECOND), int(np.ceil(window.end * FRAMES_PER_SECOND))
        local_frames = frames[a:b]
        out = dict(voices)
        for label, k in clusters.items():
            # an enrolled person's voiceprint is replaced only where the config allows it from the recording
            key = label if label in voices and (label.startswith("~") or self.config.enrolled_from_recording) else None
            if key is not None and (local_frames == k).sum() >= self.config.local_seconds * FRAMES_PER_SECOND:
                out[key] = self._cluster_voiceprint(wave, local_frames, k, voices[key], offset=a)
        return out

    def _cluster_voiceprint(self, wave: np.ndarray, frames: np.ndarray, k: int, centroid: np.ndarray,
                            offset: int = 0) -> np.ndarray:
        """A discovered voice's voiceprint made the way enrolment makes one (the model was trained on
        those): mean embedding of its longest single-speaker stretches, ≤ 10 s in all; the cluster
        centroid when no stretch reaches 1 s. `frames` may be a window's slice starting at frame
        `offset` of the recording `wave`."""
        mine = np.concatenate([[False], frames == k, [False]])
        edges = np.flatnonzero(np.diff(mine.astype(int)))
        runs = sorted(zip(edges[::2], edges[1::2]), key=lambda r: r[0] - r[1])  # longest first
        pieces, total = [], 0.0
        for a, b in runs:
            if (b - a) / FRAMES_PER_SECOND < 1.0 or total >= 10.0:
                break
            pieces.append(wave[int((offset + a) / FRAMES_PER_SECOND * SAMPLE_RATE) :
                               int((offset + b) / FRAMES_PER_SECOND * SAMPLE_RATE)])
            total += (b - a) / FRAMES_PER_SECOND
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

    def _name_after(self, turns: list[Turn], wave: np.ndarray, voiceprints: Voiceprints) -> list[Turn]:
        """Post-hoc naming: each anonymous speaker's voiceprint (from the audio of its turns) is matched
        to the enrolled voiceprints by Hungarian assignment; matches below the threshold stay anonymous."""
        labels = list(dict.fromkeys(t.speaker for t in turns))
        prints = []
        for label in labels:
            spans = [wave[int(t.start * SAMPLE_RATE) : int(t.end * SAMPLE_RATE)] for t in turns if t.speaker == label]
            speech = np.concatenate(spans) if spans else np.zeros(SAMPLE_RATE, np.float32)
            prints.append(self.encoder.embed(speech if speech.size >= SAMPLE_RATE // 2 else np.pad(speech, (0, SAMPLE_RATE))))
        named = match_names(np.stack(prints), voiceprints, self.config.match_threshold, self.cohort) if labels else {}
        rename = {label: named.get(i, label) for i, label in enumerate(labels)}
        return [Turn(rename[t.speaker], t.text, t.start, t.end) for t in turns]


def _rest_after(window: Region, found: list[Turn], regions: list[Region], min_speech_s: float) -> Optional[Region]:
    """The part of `window` after the last turn end the model wrote in it, if at least `min_speech_s`
    of speech is there; None otherwise (or when it wrote no time to continue from)."""
    ends = [t.end for t in found if t.end is not None]
    if not ends or max(ends) <= 0.0:  # nothing written, or no progress: decoding again would repeat it
        return None
    cut = window.start + max(ends)
    left = sum(max(0.0, min(r.end, window.end) - max(r.start, cut)) for r in regions)
    return Region(cut, window.end) if left >= min_speech_s else None


def _shifted(turns: list[Turn], window: Region) -> list[Turn]:
    """Turns timed from the window's start → recording time, inside the window (a turn the model
    wrote without an end runs to the next turn's start, or the window's end)."""
    out = []
    for i, t in enumerate(turns):
        end = t.end if t.end is not None else (turns[i + 1].start if i + 1 < len(turns) else window.duration)
        start = min(t.start, window.duration)
        out.append(Turn(t.speaker, t.text, round(window.start + start, 3),
                        round(window.start + min(max(end, start), window.duration), 3)))
    return out


def _speakers_from_frames(turns: list[Turn], regions: list[Region], frames: np.ndarray,
                          clusters: dict[str, int]) -> list[Turn]:
    """The window's timed turns re-attributed word by word from the diarization frames."""
    from speakerlm.pretrained.fast_whisper import Word
    from speakerlm.word_speakers import WordJoinConfig, word_clusters, words_to_turns

    label_of = {k: label.lstrip("~") for label, k in clusters.items()}
    words: list[Word] = []
    for t in turns:
        inside = [Region(max(r.start, t.start), min(r.end, t.end)) for r in regions if r.end > t.start and r.start < t.end]
        spread = time_turns([Turn(t.speaker, w) for w in t.text.split()], inside or [Region(t.start, t.end)])
        words += [Word(w.text, w.start, w.end) for w in spread]
    if not words:
        return turns
    config = WordJoinConfig()  # the cascade's join
    labels = [label_of.get(k, "") for k in word_clusters(words, frames, config)]
    spoken = [t.speaker for t in turns for _ in t.text.split()]
    return words_to_turns(words, [a or b for a, b in zip(labels, spoken)], config.turn_gap_s)


def _gather(pending: list) -> list:
    """Each job's result. The side thread takes jobs from the front; here, jobs it has not started are
    taken back from the end (cancelled there, run here), so both cores work until the last one."""
    results: list = [None] * len(pending)
    ran = [False] * len(pending)
    for k in reversed(range(len(pending))):
        future, job = pending[k]
        if future is None or future.cancel():
            results[k], ran[k] = job(), True
    return [results[k] if ran[k] else future.result() for k, (future, _) in enumerate(pending)]


def _next_anonymous(n_anon: int, turns: list[Turn]) -> int:
    """Anonymous labels handed out so far: one past the highest (also right for windows read back on
    resume)."""
    return max([n_anon] + [int(t.speaker.split()[1]) + 1 for t in turns if is_anonymous(t.speaker)])


def _read_state(state: Optional[Pathlike], n_windows: int) -> list[tuple[list[Turn], Voiceprints]]:
    """Finished windows from an interrupted run's state file, in order."""
    records, done = read_records(state), []
    for row in records:
        if row.get("window") != len(done) or len(done) >= n_windows:
            break
        done.append(([Turn.from_dict(t) for t in row["turns"]], {k: np.asarray(v, np.float32) for k, v in row["voices"].items()}))
    if len(done) < len(records):  # drop records past the first that does not follow
        write_records(state, records[: len(done)])
    return done


def _window_record(i: int, turns: list[Turn], voices: Voiceprints) -> dict:
    return {"window": i, "turns": [t.to_dict() for t in turns],
            "voices": {k: np.asarray(v).tolist() for k, v in voices.items()}}
