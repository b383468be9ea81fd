"""Whisper decoded by faster-whisper (CTranslate2): the recognition of the plain and cascade engines.

The same weights as `whisper.py`'s PyTorch rebuild, run the way Whisper's own long-form `transcribe`
runs them: sequential 30 s windows seeking by timestamps, the previous window's text as prompt,
temperature fallback on compression-ratio and log-probability checks, beam search, and silero VAD to
skip silence. That is a maintained library's job, so it is used rather than re-written; the PyTorch
model stays where gradients are needed (the SpeakerLM model and its training).

faster-whisper reads a CTranslate2 folder: the packaged models' (`whisper.ct2_folder`, which the
PyTorch conversion reads too), or a local Hugging Face Whisper folder converted once by CTranslate2's
own converter.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from speakerlm.audio import SAMPLE_RATE
from speakerlm.cache import atomic_dir, cache_dir
from speakerlm.errors import UserError
from speakerlm.memory import return_freed_memory
from speakerlm.pretrained.whisper import CT2_FILES, SOURCES, ct2_folder
from speakerlm.stages import timed

DEFAULT_BEAMS = 5  # Whisper's own transcribe default; greedy loses words on multi-voice audio
SAMPLING_SEED = 0  # CTranslate2's sampling (see FastWhisper.__init__)
COMPUTE_TYPE = "int8"  # CPU: int8 weights with float activations, as faster-whisper recommends


@dataclass(frozen=True)
class Word:
    text: str  # as decoded, punctuation attached ("morning,")
    start: float  # seconds in the recording (faster-whisper's cross-attention alignment)
    end: float


@dataclass(frozen=True)
class Segment:
    """One decoded stretch of speech (Whisper's own segmentation) with its words."""

    start: float  # seconds in the recording
    end: float
    text: str
    words: tuple[Word, ...]


def ct2_dir(name: str) -> Path:
    """The CTranslate2 folder of Whisper `name` ("tiny.en", "base" or a local HF Whisper folder)."""
    if name in SOURCES:
        return ct2_folder(SOURCES[name])
    path = Path(name)
    if (path / "model.bin").exists():
        return path  # already a CTranslate2 folder
    if (path / "config.json").exists():
        out = cache_dir() / f"ct2-{path.name}-{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]}"
        if not (out / "model.bin").exists():
            _convert_hf(path, out)
        return out
    raise UserError(f"unknown Whisper model {name!r}; choose one of {sorted(SOURCES)} or give a local "
                    "Whisper folder (Hugging Face or CTranslate2)")


def _convert_hf(path: Path, out: Path) -> None:
    """A Hugging Face Whisper folder → a CTranslate2 one, by CTranslate2's own converter."""
    from ctranslate2.converters import TransformersConverter

    with atomic_dir(out) as tmp:
        TransformersConverter(str(path), copy_files=["tokenizer.json"]).convert(str(tmp), force=True)
        for name in CT2_FILES:
            if (path / name).exists() and not (tmp / name).exists():
                shutil.copy(path / name, tmp / name)


BLOCK_SECONDS = 300.0  # long waves are decoded block by block (see FastWhisper.transcribe)
FEATURE_PIECE_FRAMES = 3000  # log-mel frames computed at a time (30 s; see _piecewise_features)
VAD_BATCH_WINDOWS = 500  # silero windows (32 ms) per ONNX call in faster-whisper's VAD


class _BatchedVadSession:
    """faster-whisper's silero session run on at most VAD_BATCH_WINDOWS windows a call.

    Its VAD sends up to 10,000 windows (320 s) to one call, carrying the LSTM state from call to call;
    smaller calls carrying it the same way give the same probabilities (tested) with less than half the
    memory: a 300 s block's VAD took +125 MB, +55 MB so (and 0.68 → 0.55 s)."""

    def __init__(self, session):
        self.session = session

    def run(self, names, feeds):
        windows, h, c = feeds["input"], feeds["h"], feeds["c"]
        outputs = []
        for i in range(0, len(windows), VAD_BATCH_WINDOWS):
            output, h, c = self.session.run(names, {"input": windows[i : i + VAD_BATCH_WINDOWS], "h": h, "c": c})
            outputs.append(output)
        return np.concatenate(outputs), h, c


def _batched_vad() -> None:
    from faster_whisper.vad import get_vad_model

    model = get_vad_model()  # cached by faster-whisper: the one its transcribe and VAD use
    if not isinstance(model.session, _BatchedVadSession):
        model.session = _BatchedVadSession(model.session)


@lru_cache(maxsize=1)
def _piecewise_features():
    """faster-whisper's log-mel extractor computing its STFT a piece of the wave at a time.

    The library's own computes the whole input's windowed frames and complex spectrum at once: for a
    300 s block that is ~300 MB for a moment (tracemalloc), on top of everything else an hour's run
    holds; here 78 MB. Only the mel energies (80 floats a frame) of the whole input are kept; the log
    and its clamp at 8 below the input's maximum are then taken over all of them, as the library does.
    A subclass rather than a copy: the frames, window, FFT and filters are the library's own. Made
    on first use, as faster-whisper is imported only where it is used."""
    from faster_whisper.feature_extractor import FeatureExtractor

    class PiecewiseFeatures(FeatureExtractor):
        def __call__(self, waveform: np.ndarray, padding=160, chunk_length=None):
            if chunk_length is not None:
                self.n_samples = chunk_length * self.sampling_rate
                self.nb_max_frames = self.n_samples // self.hop_length
            waveform = np.pad(np.asarray(waveform, np.float32), (0, padding) if padding else (0, 0))
            half, hop = self.n_fft // 2, self.hop_length
            padded = np.pad(waveform, (half, half), mode="reflect")  # the library's centring
            frames = 1 + (padded.size - self.n_fft) // hop - 1  # its last frame is dropped, as there
            window = np.hanning(self.n_fft + 1)[:-1].astype("float32")
            mel = np.empty((self.mel_filters.shape[0], frames), np.float32)
            for a in range(0, frames, FEATURE_PIECE_FRAMES):
                b = min(frames, a + FEATURE_PIECE_FRAMES)
                piece = padded[a * hop : (b - 1) * hop + self.n_fft]
                spectrum = self.stft(piece, self.n_fft, hop, window=window, center=False,
                                     return_complex=True).astype("complex64")
                mel[:, a:b] = self.mel_filters @ (np.abs(spectrum) ** 2)
            log_spec = np.log10(np.clip(mel, a_min=1e-10, a_max=None))
            log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
            return (log_spec + 4.0) / 4.0

    return PiecewiseFeatures


def block_end(wave: np.ndarray, start: int, search_s: float = 15.0) -> int:
    """Where the block from sample `start` ends: the wave's end if that is within 1.2 blocks, else the
    middle of the quietest 50 ms in the last `search_s` seconds of the block, so a cut falls in a pause
    rather than in a word."""
    block_s = BLOCK_SECONDS
    if wave.size - start <= 1.2 * block_s * SAMPLE_RATE:
        return wave.size
    hop = SAMPLE_RATE // 20
    a = start + int((block_s - min(search_s, block_s / 2)) * SAMPLE_RATE)
    frames = wave[a : start + int(block_s * SAMPLE_RATE)].astype(np.float32)
    frames = frames[: frames.size // hop * hop].reshape(-1, hop)
    return a + int(np.argmin((frames ** 2).mean(axis=1))) * hop + hop // 2


def default_threads() -> int:
    """OMP_NUM_THREADS where the user set it (torch honours it too), else up to two cores."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return min(2, os.cpu_count() or 1)


def _whole_words(pieces, shift: float) -> tuple[Word, ...]:
    """faster-whisper's timed words → Words in the recording's clock. A piece that does not start with
    a space continues the word before it ("cold" "-hearted", "o" "'clock"): it is joined to it, so
    the words are the text's words."""
    words: list[Word] = []
    for piece in pieces:
        text, start, end = piece.word.strip(), round(shift + float(piece.start), 3), round(shift + float(max(piece.end, piece.start)), 3)
        if not text:
            continue
        if words and not piece.word[:1].isspace():
            words[-1] = Word(words[-1].text + text, words[-1].start, end)
        else:
            words.append(Word(text, start, end))
    return tuple(words)


def _WhisperModel(*args, **kwargs):
    """faster-whisper's WhisperModel that keeps the encoder states it computed last (for timing words)."""
    from faster_whisper import WhisperModel

    class Model(WhisperModel):
        last_encoded = None

        def encode(self, features):
            self.last_encoded = super().encode(features)
            return self.last_encoded

    return Model(*args, **kwargs)


class FastWhisper:
    """faster-whisper over one Whisper model: whole recordings in, segments with timed words out."""

    def __init__(self, name: str, threads: int = 0, language: Optional[str] = "en"):
        """`language`: what it will be asked to transcribe; an English-only model refuses any other
        (faster-whisper would write English words for it without a word of warning)."""
        import ctranslate2

        # faster-whisper's temperature fallback samples; CTranslate2 seeds each of its worker threads'
        # generators from this when the thread first samples, so a run is reproducible (the same
        # command, the same text) though two calls in one process draw different samples
        ctranslate2.set_random_seed(SAMPLING_SEED)
        self.name = name
        self.model = _WhisperModel(str(ct2_dir(name)), device="cpu", compute_type=COMPUTE_TYPE,
                                  cpu_threads=threads or default_threads(), local_files_only=True)
        self.model.feature_extractor = _piecewise_features()(**self.model.feat_kwargs)
        _batched_vad()
        self.multilingual = self.model.model.is_multilingual
        if language not in (None, "en") and not self.multilingual:
            raise UserError(f"--language {language}: Whisper {name} is English-only; use a multilingual one (--whisper base)")

    @timed("recognition")
    def transcribe(self, wave: np.ndarray, language: Optional[str] = "en", num_beams: int = DEFAULT_BEAMS,
                   words: bool = True, vad: bool = True, start: float = 0.0, prompt: Optional[str] = None,
                   on_segment: Optional[Callable[[Segment], None]] = None) -> list[Segment]:
        """A SAMPLE_RATE mono wave → chronological segments, in the wave's clock. `language` None =
        detect (multilingual models). `words`: time every word too; the text is the same either way.
        `start`: decode from this second on (a resumed run), with `prompt` (the text before it) as the
        previous-window context. `on_segment` sees each segment as soon as it is decoded (with `words`,
        once its whole 30 s window is).

        A long wave is decoded in blocks of about BLOCK_SECONDS, cut at the quietest 50 ms near each
        block's end, each with the text before it as prompt: faster-whisper computes the features of
        its whole input at once (an hour's are ~2 GB), so blocks keep memory flat in the length."""
        from faster_whisper.transcribe import restore_speech_timestamps
        from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

        out: list[Segment] = []
        position = int(start * SAMPLE_RATE)
        while position < wave.size:
            end = block_end(wave, position)
            block = np.ascontiguousarray(wave[position:end], dtype=np.float32)
            # the VAD step of faster-whisper's own transcribe (speech cut out and joined), done here so
            # that the words can be timed in the joined audio before its times are mapped back
            speech = get_speech_timestamps(block, VadOptions()) if vad else None
            if speech is not None:
                block = np.concatenate(collect_chunks(block, speech)[0])
            if block.size:
                segments, info = self.model.transcribe(
                    block, language=language if self.multilingual else None, task="transcribe", beam_size=num_beams, word_timestamps=False,
                    vad_filter=False, condition_on_previous_text=True, initial_prompt=prompt or None)
                if words:
                    segments = self._timed_words(segments, block.size, info.language)
                if speech:
                    segments = restore_speech_timestamps(segments, speech, SAMPLE_RATE)
                shift, window = position / SAMPLE_RATE, None
                for s in segments:  # a generator: decoding happens as it is read
                    if s.seek != window:  # a new 30 s window: the last one's scratch is freed (see below)
                        window = s.seek
                        return_freed_memory()
                    timed = _whole_words(s.words or [], shift)
                    out.append(Segment(round(shift + float(s.start), 3), round(shift + float(s.end), 3),
                                       s.text.strip(), timed))
                    if on_segment is not None:
                        on_segment(out[-1])
            prompt = " ".join(s.text for s in out[-3:]) or prompt
            position = end
            # freed heap that glibc would keep mapped (the block's VAD and features, each window's
            # decoding and word timing) goes back to the system, once a window: untrimmed, the cascade's
            # hour held ~200 MB of it from the moment its diarization thread, whose trims had been
            # returning it, finished
            return_freed_memory()
        return out

    def _timed_words(self, segments, samples: int, language: str):
        """faster-whisper's segments with their words timed by its own cross-attention alignment,
        window by window, from the encoder states the decoding computed.

        Not `transcribe(word_timestamps=True)`: that also moves each next window to the last word's
        end instead of the last timestamp token, which changes the words (on the `ood` set WER 35.37
        against 34.35), and the plain engine's text is the reference."""
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import Word as TimedWord

        model = self.model
        tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language)
        punctuation = {k: p.default for k, p in inspect.signature(model.transcribe).parameters.items()
                       if k.endswith("_punctuations")}  # transcribe's own defaults
        content_frames = samples // model.feature_extractor.hop_length
        last_end = 0.0

        def timed(window: list, encoded) -> list:
            nonlocal last_end
            pieces = [{"seek": s.seek, "start": s.start, "end": s.end, "tokens": s.tokens} for s in window]
            frames = min(model.feature_extractor.nb_max_frames, content_frames - window[0].seek)
            model.add_word_timestamps([pieces], tokenizer, encoded, frames, punctuation["prepend_punctuations"],
                                      punctuation["append_punctuations"], last_speech_timestamp=last_end)
            ends = [w["end"] for p in pieces for w in p["words"]]
            last_end = ends[-1] if ends else last_end
            return [replace(s, start=p["start"], end=p["end"], words=[TimedWord(**w) for w in p["words"]])
                    for s, p in zip(window, pieces)]

        window, encoded = [], None
        for segment in segments:
            # a window's segments come one after another, right after its encoding and before the next
            # window's: the encoder states encoded last are this window's
            if window and segment.seek != window[0].seek:
                yield from timed(window, encoded)
                window = []
            if not window:
                encoded = model.last_encoded
            window.append(segment)
        if window:
            yield from timed(window, encoded)
