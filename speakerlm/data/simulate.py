"""Conversation simulator: multi-speaker clips with exact references, enrolment and distractors.

`ConversationSimulator(bank, texts, config, split, seed).conversation(index)` builds one clip from
single-speaker utterances of mutually distinct voices; it is a pure function of (seed, split, index),
so generation is resumable and parallel. Turn-taking follows the spirit of Landini et al. (2022):
exponential pauses between turns, overlaps at speaker changes and short backchannels, with the total
overlap steered to a target ratio. Each speaker gets a level offset; the mixture optionally gets
synthetic reverberation (exponentially decaying noise RIR) and additive noise (white, pink, brown or
babble of other voices) at an SNR. References are the dry, trimmed utterances' positions.

`simulate(out_dir, ...)` writes a data set (see docs/simulator.md): 16 kHz wavs, lhotse manifests,
SegLST / RTTM / STM references, enrolment clips and a distractor pool.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import os
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
from lhotse import SupervisionSegment

from speakerlm.audio import SAMPLE_RATE
from speakerlm.cache import atomic_path, write_text_atomic
from speakerlm.errors import UserError
from speakerlm.data.texts import TextPool
from speakerlm.turns import Turn
from speakerlm.data.voices import Voice, VoiceBank
from speakerlm.writers import rttm_line

Seconds = float
SPLIT_CODES = {"train": 0, "dev": 1, "test": 2}  # part of every conversation's seed
BACKCHANNELS = ("Yeah.", "Right.", "Mm-hmm.", "Okay.", "Uh-huh.", "I see.", "Sure.", "Exactly.", "Really?", "Oh.")
SPEECH_RMS_DBFS = -23.0  # every utterance is brought to this RMS before the speaker's level offset
WORDS_PER_SECOND = 2.6  # rough TTS rate, only to skip sentences that cannot fit before synthesising
DISTRACTOR_STREAM = 2**40  # seeds the split-wide distractor clips apart from any conversation index
BACKCHANNEL_SLACK = 1.0  # s a backchannel may run over the overlap budget (repaid at later turn changes)
LEAD = (0.1, 0.6)  # s of silence before the first turn
TAIL = 0.2  # s kept free after the last turn
MAX_SPEAKERS = 16  # per conversation


@dataclass(frozen=True)
class SimulationConfig:
    speakers: tuple[int, int] = (2, 4)  # speakers per conversation, inclusive range
    duration: tuple[Seconds, Seconds] = (40.0, 50.0)  # conversation length, drawn uniformly
    overlap: float = 0.1  # target overlap ratio: time with ≥ 2 speakers / time with ≥ 1 speaker
    pause_mean: Seconds = 0.5  # mean exponential pause at a speaker change (when not overlapping)
    same_speaker_prob: float = 0.15  # the same speaker goes on with another utterance
    same_speaker_pause_mean: Seconds = 0.3  # mean exponential pause between one speaker's utterances
    backchannel_prob: float = 0.25  # a turn ≥ 1.5 s gets a short "yeah" from a listener (overlap budget allowing)
    level_db: float = 6.0  # per-speaker level offset, uniform in ±level_db
    noise_prob: float = 0.5  # chance that a conversation gets additive noise
    noise_types: tuple[str, ...] = ("white", "pink", "brown", "babble")
    snr_db: tuple[float, float] = (10.0, 20.0)  # speech-to-noise ratio over speech-active samples
    babble_talkers: tuple[int, int] = (3, 6)  # other voices in babble noise
    reverb_prob: float = 0.5  # chance of synthetic reverberation (one RIR per speaker, one room RT60)
    rt60: tuple[Seconds, Seconds] = (0.2, 0.8)
    drr_db: tuple[float, float] = (0.0, 8.0)  # direct-to-reverberant energy ratio of each RIR
    channel_prob: float = 0.0  # chance that the mixture passes through a degraded channel (CHANNELS)
    enrolment_seconds: tuple[Seconds, Seconds] = (2.0, 10.0)  # per speaker, from other utterances
    max_cross_cosine: float = 0.6  # voices in a conversation, and its distractors, are mutually below this
    family_share: tuple[tuple[str, float], ...] = (("tts", 0.5), ("espeak", 0.4), ("recording", 0.1))  # of speakers
    distractors: int = 100  # distractor candidates (voices not in the clip) listed per conversation

    def __post_init__(self):
        lo, hi = self.speakers
        if not 1 <= lo <= hi <= MAX_SPEAKERS:
            raise UserError(f"speakers {lo}-{hi}: expected 1 ≤ min ≤ max ≤ {MAX_SPEAKERS}")
        if not 1.0 <= self.duration[0] <= self.duration[1]:
            raise UserError(f"duration {self.duration}: expected 1 ≤ min ≤ max seconds")
        if not 0.0 <= self.channel_prob <= 1.0:
            raise UserError(f"channel_prob {self.channel_prob}: expected a probability in [0, 1]")
        if not 0.0 <= self.overlap < 0.5:
            raise UserError(f"overlap {self.overlap}: expected a ratio in [0, 0.5)")
        unknown = set(self.noise_types) - {"white", "pink", "brown", "babble"}
        if unknown:
            raise UserError(f"unknown noise types {sorted(unknown)}; choose from white, pink, brown, babble")


@dataclass(frozen=True)
class Conversation:
    id: str
    audio: np.ndarray  # (samples,) float32 at SAMPLE_RATE: the mixture
    # chronological; times of the dry, trimmed utterances; custom fields: person (who the voice really
    # is: engine duplicates share it), backchannel (a short "yeah" inside another speaker's turn)
    supervisions: list[SupervisionSegment]
    enrolment: dict[str, np.ndarray]  # voice id → 2–10 s of that voice saying other sentences
    enrolment_texts: dict[str, list[str]]  # voice id → the sentences in its enrolment audio
    distractors: list[str]  # voice ids not in the clip, distinct from its speakers (Over-Regist)
    info: dict = field(default_factory=dict)  # how it was made: duration, noise, SNR, RT60, gains…

    @property
    def duration(self) -> Seconds:
        return self.audio.size / SAMPLE_RATE

    @property
    def speakers(self) -> list[str]:
        return list(self.enrolment)

    @property
    def turns(self) -> list[Turn]:
        return [Turn(s.speaker, s.text, s.start, s.end) for s in self.supervisions]


@dataclass
class _Placed:
    voice: Voice
    text: str
    wave: np.ndarray
    start: Seconds
    backchannel: bool = False

    @property
    def end(self) -> Seconds:
        return self.start + self.wave.size / SAMPLE_RATE


def speech_and_overlap(intervals: Iterable[tuple[Seconds, Seconds]]) -> tuple[Seconds, Seconds]:
    """(time with ≥ 1 active interval, time with ≥ 2 active intervals)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    speech = overlap = 0.0
    active, last = 0, 0.0
    for t, step in events:
        if active >= 1:
            speech += t - last
        if active >= 2:
            overlap += t - last
        active, last = active + step, t
    return speech, overlap


def overlap_ratio(supervisions: Sequence) -> float:
    """Overlapped speech / speech, from anything with .start and .end (SupervisionSegment, Turn)."""
    speech, overlap = speech_and_overlap([(s.start, s.end) for s in supervisions])
    return overlap / speech if speech > 0 else 0.0


class ConversationSimulator:
    """Seeded conversations of one split: `conversation(index)` depends only on (seed, split, index)."""

    def __init__(self, bank: VoiceBank, texts: TextPool, config: SimulationConfig = SimulationConfig(),
                 split: str = "train", seed: int = 0, name: Optional[str] = None):
        if split not in SPLIT_CODES:
            raise UserError(f"unknown split {split!r}; choose train, dev or test")
        self.bank, self.config, self.split, self.seed = bank, config, split, seed
        self.name = name or split  # the conversation ids' prefix
        self.voices = bank.split(split)
        self.sentences = texts.split(split)
        self.language = texts.language
        self.weights = _family_weights(self.voices, dict(config.family_share))  # (voices,) draw weights
        if len(self.voices) < config.speakers[0]:
            raise UserError(f"split {split}: the voice bank has {len(self.voices)} voices, "
                            f"fewer than the {config.speakers[0]} speakers a conversation needs")
        if len(self.sentences) < 20:
            raise UserError(f"split {split}: only {len(self.sentences)} sentences; give a larger text pool")

    def conversation_id(self, index: int) -> str:
        return f"{self.name}-s{self.seed}-{index:06d}"

    def _rngs(self, *key: int) -> list[np.random.Generator]:
        seq = np.random.SeedSequence([self.seed, SPLIT_CODES[self.split], *key])
        return [np.random.default_rng(s) for s in seq.spawn(4)]

    def conversation(self, index: int) -> Conversation:
        plan_rng, enrol_rng, room_rng, pick_rng = self._rngs(index)
        cfg = self.config
        voices = self._draw_speakers(pick_rng)
        target = float(plan_rng.uniform(*cfg.duration))
        placed = self._plan(plan_rng, voices, target)
        spoken = [v for v in voices if any(p.voice is v for p in placed)]  # a speaker who never fitted is dropped
        conv_id = self.conversation_id(index)
        audio, info = self._mix(room_rng, placed, spoken, target)
        clip_texts = {p.text for p in placed}
        enrolment, enrol_texts = {}, {}
        for v in spoken:
            enrolment[v.id], enrol_texts[v.id] = self._enrolment(enrol_rng, v, clip_texts)
        supervisions = [
            SupervisionSegment(id=f"{conv_id}-{k:03d}", recording_id=conv_id, start=round(p.start, 6),
                               duration=round(p.wave.size / SAMPLE_RATE, 6), channel=0, text=p.text,
                               language=self.language, speaker=p.voice.id,
                               custom={"person": p.voice.person, "backchannel": p.backchannel})
            for k, p in enumerate(sorted(placed, key=lambda p: (p.start, p.voice.id)))
        ]
        info.update(index=index, seed=self.seed, split=self.split, target_duration=round(target, 3),
                    overlap_ratio=round(overlap_ratio(supervisions), 4))
        return Conversation(conv_id, audio, supervisions, enrolment, enrol_texts,
                            self._distractors(pick_rng, spoken), info)

    # -- who speaks ----------------------------------------------------------------------------------
    def _draw_speakers(self, rng: np.random.Generator) -> list[Voice]:
        """n mutually distinct voices in a weighted random order: greedy from the first voice, and
        from the next ones in turn when that falls short."""
        lo, hi = self.config.speakers
        n = int(rng.integers(lo, hi + 1))
        keys = rng.random(len(self.voices)) ** (1.0 / np.maximum(self.weights, 1e-12))
        order = [self.voices[i] for i in np.argsort(-keys)]  # Efraimidis-Spirakis weighted shuffle
        best: list[Voice] = []
        for first in range(len(order)):
            chosen = [order[first]]
            for v in order[first + 1 :] + order[:first]:
                if len(chosen) == n:
                    break
                if all(self.bank.distinct(v, c, self.config.max_cross_cosine) for c in chosen):
                    chosen.append(v)
            if len(chosen) == n:
                return chosen
            best = max(best, chosen, key=len)
        if len(best) < lo:
            raise UserError(f"split {self.split}: only {len(best)} mutually distinct voices at cross-cosine "
                            f"< {self.config.max_cross_cosine}; raise --max-cross-cosine or lower --speakers")
        return best

    def _distractors(self, rng: np.random.Generator, speakers: list[Voice]) -> list[str]:
        thr = self.config.max_cross_cosine
        pool = [v for v in self.voices if all(self.bank.distinct(v, s, thr) for s in speakers)]
        order = rng.permutation(len(pool))
        return [pool[i].id for i in order[: self.config.distractors]]

    # -- when they speak -----------------------------------------------------------------------------
    def _sentence(self, rng: np.random.Generator, voice: Voice, used: set[str], max_seconds: float) -> Optional[str]:
        """A sentence this voice can say, not yet used in the clip, plausibly shorter than `max_seconds`."""
        own = voice.texts()
        if own is not None:  # a recording: keep one utterance back for its enrolment
            free = [t for t in own if t not in used]
            return free[int(rng.integers(len(free)))] if len(free) > 1 else None
        for _ in range(30):
            text = self.sentences[int(rng.integers(len(self.sentences)))]
            if text not in used and len(text.split()) / WORDS_PER_SECOND <= max_seconds:
                return text
        return None

    def _next_speaker(self, rng, voices, counts, current, k) -> int:
        if k < len(voices):
            return k  # everyone speaks once first (voices are already in random order)
        if rng.random() < self.config.same_speaker_prob:
            return current
        others = [i for i in range(len(voices)) if i != current]
        weights = np.array([1.0 / (1 + counts[i]) for i in others])
        return others[int(rng.choice(len(others), p=weights / weights.sum()))]

    def _plan(self, rng: np.random.Generator, voices: list[Voice], target: Seconds) -> list[_Placed]:
        cfg, bank = self.config, self.bank
        placed: list[_Placed] = []
        used: set[str] = set()
        counts = [0] * len(voices)
        current, last = -1, None  # index of the last main turn's speaker, and that turn
        stuck = 0
        for k in range(10_000):
            if stuck >= 3 or (last is not None and target - TAIL - last.end < 0.5):
                break
            spk = self._next_speaker(rng, voices, counts, current, k) if len(voices) > 1 else 0
            voice = voices[spk]
            text = self._sentence(rng, voice, used, target - TAIL - (last.end if last else 0.0))
            if text is None:
                stuck += 1
                continue
            wave = bank.utterance(voice, text)
            d = wave.size / SAMPLE_RATE
            start = round(self._start(rng, placed, last, voice, spk == current, d) * SAMPLE_RATE) / SAMPLE_RATE
            if start + d > target - TAIL:
                stuck += 1
                continue
            stuck = 0
            turn = _Placed(voice, text, wave, start)
            placed.append(turn)
            used.add(text)
            counts[spk] += 1
            current, last = spk, turn
            if len(voices) > 1 and d >= 1.5 and rng.random() < cfg.backchannel_prob:
                self._backchannel(rng, placed, turn, [v for i, v in enumerate(voices) if i != spk])
        return placed

    def _start(self, rng, placed: list[_Placed], last: Optional[_Placed], voice: Voice, same: bool, d: float) -> float:
        cfg = self.config
        if last is None:
            return float(rng.uniform(*LEAD))
        # no speaker overlaps itself, and at most two people talk at once: start after every other turn
        floor = max([p.end for p in placed if p is not last] + [p.end for p in placed if p.voice is voice] + [0.0])
        if same:
            return max(last.end + float(rng.exponential(cfg.same_speaker_pause_mean)), floor)
        speech, overlap = speech_and_overlap([(p.start, p.end) for p in placed])
        r = cfg.overlap
        wanted = (r * (speech + d) - overlap) / (1 + r)  # overlap that puts the running ratio on target
        if wanted > 0.1:
            limit = min(0.5 * (last.end - last.start), 0.7 * d)
            amount = min(wanted * float(rng.uniform(0.6, 1.4)), limit)
            return max(last.end - amount, floor, last.start + 0.3)
        return max(last.end + float(rng.exponential(cfg.pause_mean)), floor)

    def _backchannel(self, rng, placed: list[_Placed], turn: _Placed, listeners: list[Voice]) -> None:
        """A short "yeah" by a listener inside `turn`, if the overlap budget allows and it fits."""
        listeners = [v for v in listeners if v.texts() is None]  # recordings cannot say "yeah"
        if not listeners:
            return
        speech, overlap = speech_and_overlap([(p.start, p.end) for p in placed])
        voice = listeners[int(rng.integers(len(listeners)))]
        text = BACKCHANNELS[int(rng.integers(len(BACKCHANNELS)))]
        wave = self.bank.utterance(voice, text)
        d = wave.size / SAMPLE_RATE
        r = self.config.overlap
        if r == 0 or d > 1.2 or overlap + d > r * speech + BACKCHANNEL_SLACK:
            return  # over budget: later speaker changes pause instead of overlapping, and pay it back
        lo = max([turn.start + 0.3] + [p.end for p in placed if p is not turn])
        hi = turn.end - d - 0.2
        if hi > lo:
            start = round(float(rng.uniform(lo, hi)) * SAMPLE_RATE) / SAMPLE_RATE  # on the sample grid
            placed.append(_Placed(voice, text, wave, start, backchannel=True))

    # -- how it sounds -------------------------------------------------------------------------------
    def _mix(self, rng: np.random.Generator, placed: list[_Placed], speakers: list[Voice],
             duration: Seconds) -> tuple[np.ndarray, dict]:
        cfg = self.config
        n = int(round(duration * SAMPLE_RATE))
        gains_db = {v.id: float(rng.uniform(-cfg.level_db, cfg.level_db)) for v in speakers}
        reverb = rng.random() < cfg.reverb_prob
        rt60 = float(rng.uniform(*cfg.rt60)) if reverb else None
        noise_type = cfg.noise_types[int(rng.integers(len(cfg.noise_types)))] if rng.random() < cfg.noise_prob else None
        snr = float(rng.uniform(*cfg.snr_db)) if noise_type else None
        mix = np.zeros(n, dtype=np.float32)
        for v in speakers:
            track = np.zeros(n, dtype=np.float32)
            for p in placed:
                if p.voice is v:
                    s = int(round(p.start * SAMPLE_RATE))
                    track[s : s + p.wave.size] += _at_rms(p.wave, SPEECH_RMS_DBFS + gains_db[v.id])[: n - s]
            if reverb:
                track = _convolve(track, _rir(rng, rt60, float(rng.uniform(*cfg.drr_db))))
            mix += track
        # shape: (samples,)
        if noise_type:
            active = np.zeros(n, dtype=bool)
            for p in placed:
                active[round(p.start * SAMPLE_RATE) : round(p.end * SAMPLE_RATE)] = True
            noise = self._babble(rng, speakers, n) if noise_type == "babble" else coloured_noise(rng, n, noise_type)
            speech_power = float(np.mean(mix[active] ** 2)) if active.any() else 1e-4
            noise *= math.sqrt(speech_power / 10 ** (snr / 10) / max(float(np.mean(noise**2)), 1e-12))
            mix += noise.astype(np.float32)
        # drawn only when enabled, so presets without a channel keep their random streams (and clips)
        channel = (CHANNELS[int(rng.integers(len(CHANNELS)))]
                   if cfg.channel_prob > 0 and rng.random() < cfg.channel_prob else None)
        if channel:
            mix = degrade(mix, channel)
        peak = float(np.abs(mix).max())
        if peak > 0.95:
            mix *= 0.95 / peak
        info = {"speaker_gain_db": {k: round(g, 2) for k, g in gains_db.items()}, "rt60": rt60 and round(rt60, 3),
                "noise": noise_type, "snr_db": snr and round(snr, 2), **({"channel": channel} if channel else {})}
        return mix, info

    def _babble(self, rng: np.random.Generator, speakers: list[Voice], n: int) -> np.ndarray:
        """Several other voices (not in the clip), each two sentences looped from a random offset."""
        others = [v for v in self.voices if v.texts() is None and all(v.person != s.person for s in speakers)]
        k = min(int(rng.integers(self.config.babble_talkers[0], self.config.babble_talkers[1] + 1)), len(others))
        out = np.zeros(n, dtype=np.float32)
        for i in rng.choice(len(others), size=k, replace=False):
            talk = np.concatenate([_at_rms(self.bank.utterance(others[i], self._sentence(rng, others[i], set(), 99.0)),
                                           SPEECH_RMS_DBFS) for _ in range(2)])
            out += np.roll(np.resize(talk, n), int(rng.integers(n)))
        return out

    # -- enrolment -----------------------------------------------------------------------------------
    def _enrolment(self, rng: np.random.Generator, voice: Voice, avoid: set[str]) -> tuple[np.ndarray, list[str]]:
        """2–10 s of `voice` saying sentences that are not in the clip, with short pauses."""
        lo, hi = self.config.enrolment_seconds
        goal = float(rng.uniform(lo, hi))
        pieces, texts, total = [], [], 0.0
        own = voice.texts()
        candidates = [t for t in own if t not in avoid] if own is not None else None
        gap = lambda: np.zeros(int(rng.uniform(0.2, 0.5) * SAMPLE_RATE), dtype=np.float32)  # noqa: E731
        for attempt in range(50):
            if total >= goal:
                break
            if candidates is not None:
                text = candidates[attempt % len(candidates)]  # a recording repeats what it has left
            else:
                text = self._sentence(rng, voice, avoid | set(texts), hi)
                if text is None:
                    break
            wave = _at_rms(self.bank.utterance(voice, text), SPEECH_RMS_DBFS)
            pieces += [gap(), wave] if pieces else [wave]
            texts.append(text)
            total = sum(p.size for p in pieces) / SAMPLE_RATE
        audio = np.concatenate(pieces)[: int(hi * SAMPLE_RATE)]
        return audio, texts

    def distractor_enrolment(self, voice: Voice) -> tuple[np.ndarray, list[str]]:
        """The split-wide enrolment clip of `voice` for Over-Regist, the same for every conversation."""
        key = int(hashlib.sha1(voice.id.encode()).hexdigest()[:8], 16)
        return self._enrolment(self._rngs(DISTRACTOR_STREAM, key)[0], voice, set())


def voice_family(voice: Voice) -> str:
    """"tts" (recorded TTS speakers), "espeak" (formant synthesis) or "recording" (real speech)."""
    return voice.engine if voice.engine in ("espeak", "recording") else "tts"


def _family_weights(voices: Sequence[Voice], share: dict[str, float]) -> np.ndarray:
    """Per-voice weights giving each family its share of speakers (shares of absent families are
    spread over the others), uniform within a family."""
    families = [voice_family(v) for v in voices]
    present = {f: families.count(f) for f in set(families)}
    total = sum(share.get(f, 0.0) for f in present) or 1.0
    return np.array([share.get(f, 0.0) / total / present[f] for f in families])


def _at_rms(wave: np.ndarray, dbfs: float) -> np.ndarray:
    rms = math.sqrt(float(np.mean(wave.astype(np.float64) ** 2)))
    return (wave * (10 ** (dbfs / 20) / max(rms, 1e-9))).astype(np.float32)


def coloured_noise(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """White, pink (1/f power) or brown (1/f²) noise of unit variance, shaped in the frequency domain."""
    white = rng.standard_normal(n)
    if kind == "white":
        return white.astype(np.float32)
    power = {"pink": 1.0, "brown": 2.0}[kind]
    spec = np.fft.rfft(white)
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spec *= 1.0 / np.maximum(f, 20.0) ** (power / 2)  # flat below 20 Hz: no DC drift
    out = np.fft.irfft(spec, n)
    return (out / out.std()).astype(np.float32)


def _rir(rng: np.random.Generator, rt60: float, drr_db: float) -> np.ndarray:
    """Direct path plus exponentially decaying Gaussian noise (−60 dB at rt60), at a given DRR."""
    length = int(rt60 * 1.2 * SAMPLE_RATE)
    t = np.arange(length) / SAMPLE_RATE
    tail = rng.standard_normal(length) * np.exp(-6.908 * t / rt60)  # 6.908 = ln(1000): 60 dB of amplitude
    tail[:16] = 0.0  # first reflections arrive ≥ 1 ms after the direct sound
    tail *= math.sqrt(10 ** (-drr_db / 10) / float(np.sum(tail**2)))
    tail[0] = 1.0
    return tail.astype(np.float32)


CHANNELS = ("telephone", "muffled", "clipped")


def degrade(wave: np.ndarray, channel: str) -> np.ndarray:
    """A channel that no training clip passes through: telephone (300–3400 Hz, 8 kHz, 8-bit μ-law),
    muffled (a cheap microphone: low-passed at 2.5 kHz), clipped (driven 14 dB into hard clipping)."""
    import soxr
    from scipy.signal import butter, sosfilt

    if channel == "telephone":
        band = sosfilt(butter(6, (300, 3400), "bandpass", fs=SAMPLE_RATE, output="sos"), wave)
        narrow = soxr.resample(band, SAMPLE_RATE, 8000)
        peak = max(float(np.abs(narrow).max()), 1e-9)
        x = narrow / peak
        mu = 255.0  # G.711 μ-law companding, quantised to 8 bits and expanded again
        code = np.round(np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu) * 127) / 127
        x = np.sign(code) * np.expm1(np.abs(code) * np.log1p(mu)) / mu
        return soxr.resample(x * peak, 8000, SAMPLE_RATE)[: wave.size].astype(np.float32)
    if channel == "muffled":
        return sosfilt(butter(4, 2500, "lowpass", fs=SAMPLE_RATE, output="sos"), wave).astype(np.float32)
    if channel == "clipped":
        driven = wave * 10 ** (14 / 20)
        return np.clip(driven, -0.5, 0.5).astype(np.float32)
    raise UserError(f"unknown channel {channel!r}; choose one of {', '.join(CHANNELS)}")


def _convolve(track: np.ndarray, rir: np.ndarray) -> np.ndarray:
    from scipy.signal import fftconvolve

    return fftconvolve(track, rir)[: track.size].astype(np.float32)


# ---- writing a data set ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Preset:
    split: str
    seed: int
    conversations: int
    config: SimulationConfig
    about: str
    voices: str = "default"  # a key of VOICE_SETS: which voice bank the preset draws from
    texts: str = "pool"  # "pool" (fortunes and docs, split by hash) or "meeting" (templated meeting talk)
    named: bool = False  # ids start with the preset's name, not the split's (always so for other voice banks)


# Out of distribution: the training presets' voices, sentences, clip shapes and channels all differ
HELD_OUT = SimulationConfig(duration=(25.0, 70.0), overlap=0.18, pause_mean=0.3, same_speaker_prob=0.25,
                            backchannel_prob=0.35, level_db=8.0, noise_prob=0.5, snr_db=(6.0, 18.0),
                            reverb_prob=0.4, rt60=(0.3, 1.0), channel_prob=0.5, max_cross_cosine=0.7,
                            family_share=(("tts", 0.75), ("recording", 0.25)), distractors=100)


PRESETS = {
    "dev": Preset("dev", 0, 50, SimulationConfig(), "50 clips, 2-4 speakers, 40-50 s, overlap 0.1, noise/reverb p=0.5"),
    "test": Preset("test", 0, 50, SimulationConfig(), "as dev, on the test voices and sentences"),
    "ood": Preset("dev", 0, 30, HELD_OUT,
                  "30 clips, held-out neural TTS voices and a real reader, meeting talk, 25-70 s, overlap 0.18, "
                  "noise, reverb and telephone/muffled/clipped channels", voices="held-out", texts="meeting"),
    # the held-out voices and talk without the degradations: 24 clean clips of 30-47 s, another seed, so
    # that what the channels and noise cost is seen apart from what the voices cost
    "ood-clean": Preset("dev", 1, 24,
                        replace(HELD_OUT, duration=(30.0, 47.0), noise_prob=0.0, reverb_prob=0.0, channel_prob=0.0),
                        "24 clean clips, held-out voices and meeting talk as ood, 30-47 s, overlap 0.18, "
                        "no noise, reverb or channel", voices="held-out", texts="meeting"),
    "real": Preset("dev", 0, 6,
                   SimulationConfig(speakers=(2, 2), duration=(18.0, 30.0), overlap=0.05, noise_prob=0.0,
                                    reverb_prob=0.0, backchannel_prob=0.0, max_cross_cosine=0.9,
                                    family_share=(("recording", 1.0),), distractors=5),
                   "6 two-person conversations spliced from the real pocketsphinx readers", voices="real"),
    # long recordings with many recurring voices: in-distribution engines on the dev voices, close
    # pairs allowed (cross cosine up to 0.75, the bank's own same-split link), and held-out ones
    "long": Preset("dev", 0, 5,
                   SimulationConfig(speakers=(6, 12), duration=(600.0, 780.0), overlap=0.12, max_cross_cosine=0.75),
                   "5 recordings of 10-13 min, 6-12 recurring dev voices, close pairs, overlap 0.12", named=True),
    "long-ood": Preset("dev", 0, 4,
                       SimulationConfig(speakers=(6, 8), duration=(600.0, 720.0), overlap=0.15, pause_mean=0.3,
                                        backchannel_prob=0.35, level_db=8.0, snr_db=(8.0, 20.0), rt60=(0.3, 1.0),
                                        channel_prob=0.3, max_cross_cosine=0.99, family_share=(("tts", 1.0),),
                                        distractors=0),
                       "4 recordings of 10-12 min, 6-8 variants of the held-out neural voice (pitch 200 cents "
                       "apart), meeting talk, overlap 0.15, noise, reverb, channels", voices="many-held-out",
                       texts="meeting"),
    "tiny": Preset("dev", 0, 3,
                   SimulationConfig(speakers=(2, 2), duration=(10.0, 10.0), noise_prob=0.0, reverb_prob=0.0,
                                    distractors=5),
                   "3 clean clips of 2 speakers, 10 s: for smoke tests"),
}


def _write_wave(path: Path, wave: np.ndarray) -> None:
    import soundfile as sf

    with atomic_path(path) as tmp:
        sf.write(str(tmp), wave, SAMPLE_RATE, subtype="PCM_16", format="WAV")


def _settings(sim: ConversationSimulator) -> dict:
    bank_hash = hashlib.sha1(json.dumps([v.id for v in sim.voices]).encode())
    if sim.bank.similarity is not None:
        bank_hash.update(np.round(sim.bank.similarity.cross, 3).tobytes())
    return {"split": sim.split, "seed": sim.seed, "config": asdict(sim.config),
            "voices": bank_hash.hexdigest()[:16], "sentences": len(sim.sentences)}


def write_conversation(sim: ConversationSimulator, out: Path, index: int) -> dict:
    """Generate conversation `index` and write its files; the json record, written last, marks it done."""
    conv = sim.conversation(index)
    _write_wave(out / "audio" / f"{conv.id}.wav", conv.audio)
    enrol = {}
    for voice_id, wave in conv.enrolment.items():
        rel = f"enrolment/{conv.id}/{voice_id}.wav"
        _write_wave(out / rel, wave)
        enrol[voice_id] = {"path": rel, "texts": conv.enrolment_texts[voice_id], "duration": wave.size / SAMPLE_RATE}
    by_id = sim.bank.by_id()
    for voice_id in conv.distractors:
        path = out / "distractors" / f"{voice_id}.wav"
        if not path.exists():  # split-wide pool, shared by all conversations; deterministic content
            _write_wave(path, sim.distractor_enrolment(by_id[voice_id])[0])
    record = {"id": conv.id, "audio": f"audio/{conv.id}.wav", "num_samples": int(conv.audio.size),
              "duration": conv.duration, "supervisions": [s.to_dict() for s in conv.supervisions],
              "enrolment": enrol, "distractors": conv.distractors, "info": conv.info}
    write_text_atomic(out / "conversations" / f"{conv.id}.json", json.dumps(record, indent=1))
    return record


RECORDINGS, SUPERVISIONS = "recordings.jsonl.gz", "supervisions.jsonl.gz"  # lhotse manifests
RTTM, STM, SEGLST, ENROLMENT = "references.rttm", "references.stm", "references.seglst.json", "enrolment.json"
OUTPUTS = (RECORDINGS, SUPERVISIONS, RTTM, STM, SEGLST, ENROLMENT)

_WORKER: dict = {}


def _worker_init(sim: ConversationSimulator, out: Path) -> None:
    _WORKER.update(sim=sim, out=out)


def _worker_run(index: int) -> float:
    return write_conversation(_WORKER["sim"], _WORKER["out"], index)["duration"]


def simulate(out_dir: Path, sim: ConversationSimulator, conversations: int, workers: int = 1,
             progress: bool = True) -> Path:
    """Write `conversations` conversations into `out_dir`, skipping those already complete there,
    then assemble the manifests and references. Memory stays flat: each worker holds one clip."""
    from tqdm import tqdm

    out = Path(out_dir)
    settings = _settings(sim)
    settings_path = out / "simulation.json"
    if settings_path.exists():
        old = json.loads(settings_path.read_text())
        old.pop("conversations", None)
        new = json.loads(json.dumps(settings))
        defaults = json.loads(json.dumps(asdict(SimulationConfig())))
        # a folder written before a config field existed was made with that field's default
        old["config"] = {**{k: v for k, v in defaults.items() if new["config"].get(k) == v}, **old.get("config", {})}
        if old != new:
            raise UserError(f"{out}: holds a simulation with other settings (split, seed, config or voice bank); "
                            "use another --out, or delete it")
    write_text_atomic(settings_path, json.dumps({**settings, "conversations": conversations}, indent=1))
    todo = [i for i in range(conversations)
            if not (out / "conversations" / f"{sim.conversation_id(i)}.json").exists()]
    bar = tqdm(total=len(todo), desc=f"simulate {sim.name}", unit="conv", disable=not progress)
    if workers <= 1 or len(todo) <= 1:
        for i in todo:
            write_conversation(sim, out, i)
            bar.update()
    else:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(workers, _worker_init, (sim, out)) as pool:
            for _ in pool.imap_unordered(_worker_run, todo):
                bar.update()
    bar.close()
    assemble(out, [sim.conversation_id(i) for i in range(conversations)], sim.bank)
    return out


def _records(out: Path, ids: list[str]) -> Iterable[dict]:
    for conv_id in ids:
        yield json.loads((out / "conversations" / f"{conv_id}.json").read_text())


def assemble(out: Path, ids: list[str], bank: VoiceBank) -> None:
    """Manifests and references from the per-conversation records, streamed one record at a time,
    written into a temporary folder and moved into place only when all are complete."""
    import os
    import shutil
    import tempfile

    from lhotse import Recording, RecordingSet, SupervisionSet
    from lhotse.audio import AudioSource

    by_id = bank.by_id()
    tmp = Path(tempfile.mkdtemp(prefix=".assemble-", dir=out))
    try:
        with RecordingSet.open_writer(tmp / RECORDINGS) as recs, SupervisionSet.open_writer(tmp / SUPERVISIONS) as sups, \
                open(tmp / RTTM, "w") as rttm, open(tmp / STM, "w") as stm, open(tmp / SEGLST, "w") as seg, \
                open(tmp / ENROLMENT, "w") as enr:
            seg.write("[")
            enr.write("{")
            first_segment = True
            for k, r in enumerate(_records(out, ids)):
                path = (out / r["audio"]).resolve()
                recs.write(Recording(id=r["id"], sources=[AudioSource("file", [0], str(path))],
                                     sampling_rate=SAMPLE_RATE, num_samples=r["num_samples"], duration=r["duration"]))
                for s in r["supervisions"]:
                    sup = SupervisionSegment.from_dict(s)
                    sups.write(sup)
                    rttm.write(rttm_line(r["id"], sup.speaker, sup.start, sup.duration))
                    stm.write(f"{r['id']} 1 {sup.speaker} {sup.start:.3f} {sup.end:.3f} {sup.text}\n")
                    seg.write(("" if first_segment else ",") + "\n " + json.dumps(
                        {"session_id": r["id"], "speaker": sup.speaker, "start_time": round(sup.start, 4),
                         "end_time": round(sup.end, 4), "words": sup.text}, ensure_ascii=False))
                    first_segment = False
                entry = {"audio": r["audio"], "speakers": r["enrolment"],
                         "distractors": [{"voice": d, "person": by_id[d].person, "path": f"distractors/{d}.wav"}
                                         for d in r["distractors"]]}
                enr.write(("," if k else "") + f"\n {json.dumps(r['id'])}: " + json.dumps(entry, ensure_ascii=False))
            seg.write("\n]\n")
            enr.write("\n}\n")
        for name in OUTPUTS:
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- command line ----------------------------------------------------------------------------------

def _range(cast, example: str):
    """An argparse type for `N` or `MIN-MAX`, each converted by `cast`."""
    def parse(value: str):
        lo, _, hi = value.partition("-")
        try:
            return cast(lo), cast(hi or lo)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r}: expected N or MIN-MAX, e.g. {example}") from None
    return parse


_int_range, _float_range = _range(int, "2-4"), _range(float, "40-50")


def add_simulate_parser(subparsers) -> argparse.ArgumentParser:
    """Register `speakerlm simulate` on an argparse subparsers object."""
    p = subparsers.add_parser("simulate", help="simulate multi-speaker conversations with references and enrolment",
                              description="Simulate conversations from the TTS voice bank (see docs/simulator.md).")
    p.add_argument("--out", type=Path, help="output folder (resumable: finished conversations are kept)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--hours", type=float, help="amount of audio to make, in hours")
    size.add_argument("--conversations", type=int, help="number of conversations to make")
    size.add_argument("--preset", choices=sorted(PRESETS),
                      help="a fixed, documented set: " + "; ".join(f"{k}: {v.about}" for k, v in PRESETS.items()))
    p.add_argument("--split", default="train", choices=tuple(SPLIT_CODES), help="voices and sentences to draw from")
    p.add_argument("--seed", type=int, default=0)
    d = SimulationConfig()
    p.add_argument("--speakers", type=_int_range, default=d.speakers, metavar="MIN-MAX", help="default 2-4")
    p.add_argument("--duration", type=_float_range, default=d.duration, metavar="MIN-MAX", help="seconds, default 40-50")
    p.add_argument("--overlap", type=float, default=d.overlap, help="target overlap ratio (default 0.1)")
    p.add_argument("--noise-prob", type=float, default=d.noise_prob, help="chance of additive noise (default 0.5)")
    p.add_argument("--reverb-prob", type=float, default=d.reverb_prob, help="chance of reverberation (default 0.5)")
    p.add_argument("--channel-prob", type=float, default=d.channel_prob,
                   help="chance of a degraded channel: telephone, muffled or clipped (default 0)")
    p.add_argument("--max-cross-cosine", type=float, default=d.max_cross_cosine,
                   help="voices in one conversation are mutually below this CAM++ cosine (default %(default)s)")
    p.add_argument("--distractors", type=int, default=d.distractors, help="distractor candidates per conversation")
    p.add_argument("--bank", type=Path, help="voice bank folder (default: the cache's voices/)")
    p.add_argument("--build-bank", action="store_true", help="build or finish the voice bank and print its summary")
    p.add_argument("--texts", type=Path, help="a file of sentences (one a line) instead of the built-in pool")
    p.add_argument("--language", default="en", choices=("en", "zh"), help="zh: Mandarin via pinyin (needs --texts)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes (default 2)")
    p.set_defaults(func=cmd_simulate)
    return p


def cmd_simulate(args: argparse.Namespace) -> None:
    from speakerlm.data.texts import load_text_pool, meeting_pool
    from speakerlm.data.voices import VOICE_SETS, build_voice_bank, default_bank_dir, default_voices

    preset = PRESETS[args.preset] if args.preset else None
    voice_set = preset.voices if preset else "default"
    make_voices, folder, fractions = VOICE_SETS[voice_set]
    if args.language != "en":
        make_voices, folder = (lambda: default_voices(args.language)), "voices-zh"
    bank_dir = args.bank or default_bank_dir().with_name(folder)
    if args.build_bank or not (bank_dir / "splits.json").exists():
        print(f"building the voice bank in {bank_dir} (once; resumable)", file=sys.stderr)
        build_voice_bank(bank_dir, make_voices(), split_fractions=fractions)
        print(json.dumps(json.loads((bank_dir / "summary.json").read_text()), indent=1), file=sys.stderr)
    if args.out is None:
        if args.build_bank:
            return
        raise UserError("--out DIR is required to simulate")
    bank = VoiceBank.open(bank_dir)
    texts = meeting_pool() if preset and preset.texts == "meeting" else load_text_pool(args.language, args.texts)
    if preset:
        split, seed, count, config = preset.split, preset.seed, preset.conversations, preset.config
    else:
        config = SimulationConfig(speakers=args.speakers, duration=args.duration, overlap=args.overlap,
                                  noise_prob=args.noise_prob, reverb_prob=args.reverb_prob,
                                  channel_prob=args.channel_prob, max_cross_cosine=args.max_cross_cosine, distractors=args.distractors)
        split, seed = args.split, args.seed
        if args.conversations is not None:
            count = args.conversations
        elif args.hours is not None:
            count = math.ceil(args.hours * 3600 / (sum(config.duration) / 2))
        else:
            raise UserError("say how much to make: --hours H, --conversations N or --preset NAME")
    # a held-out preset's ids say so, apart from the dev split's that share its split name
    name = args.preset if preset and (preset.named or preset.voices != "default") else None
    sim = ConversationSimulator(bank, texts, config, split, seed, name)
    out = simulate(args.out, sim, count, workers=args.workers)
    first = json.loads((out / "conversations" / f"{sim.conversation_id(0)}.json").read_text())
    from speakerlm.plots import plot_timeline

    supervisions = [SupervisionSegment.from_dict(s) for s in first["supervisions"]]
    plot_timeline(supervisions, out / "timeline.png",
                  title=f"{first['id']}: {len(supervisions)} turns, overlap ratio {overlap_ratio(supervisions):.2f}")
    print(f"wrote {count} conversations to {out}", file=sys.stderr)
