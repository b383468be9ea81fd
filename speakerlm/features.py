"""Model inputs computed from audio: Whisper encoder states and the frame-level speaker stream.

Both are per-clip tensors at the encoder's 50 frames/s, so they can be computed once and cached while
the encoder is frozen (training stages 1–2), which is what makes CPU training affordable.
"""

from __future__ import annotations

import numpy as np
import torch

from speakerlm.audio import SAMPLE_RATE
from speakerlm.pretrained.speaker_encoder import CAMPlusPlus
from speakerlm.pretrained.whisper import CHUNK_SECONDS, ENCODER_FRAMES_PER_SECOND
from speakerlm.stages import timed

SPEAKER_WINDOW_S = 1.5  # frame-level speaker stream: CAM++/GE2E window…
SPEAKER_HOP_S = 0.25  # …and hop (4 embeddings per second)


def n_frames(wave: np.ndarray) -> int:
    """Encoder frames that cover `wave` (50 per second)."""
    return max(1, int(np.ceil(wave.size / SAMPLE_RATE * ENCODER_FRAMES_PER_SECOND)))


def log_mel_windows(processor, wave: np.ndarray) -> torch.Tensor:
    """(windows, n_mels, 3000): the clip cut into 30 s windows, each padded as Whisper expects."""
    step = CHUNK_SECONDS * SAMPLE_RATE
    pieces = [wave[i : i + step] for i in range(0, max(wave.size, 1), step)]
    mel = processor.features(pieces, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
    return mel


def encode_windows(encoder: torch.nn.Module, mel: torch.Tensor, frames: int) -> torch.Tensor:
    """Whisper-encode 30 s windows and join them along time: (frames, d). Clips longer than 30 s
    (the paper's are 40–50 s) thus get one continuous memory, trimmed to the real audio length."""
    states = encoder(mel).last_hidden_state  # (windows, 1500, d)
    return states.reshape(-1, states.shape[-1])[:frames]


@timed("speaker embeddings")
def frame_speaker_stream(speaker_encoder, wave: np.ndarray, frames: int) -> torch.Tensor:
    """(frames, speaker_dim): each encoder frame gets the embedding of the window centred nearest to it."""
    if isinstance(speaker_encoder, CAMPlusPlus):  # one pass over the clip (see CAMPlusPlus.embed_windows)
        embs, times = speaker_encoder.embed_windows(wave, SPEAKER_WINDOW_S, SPEAKER_HOP_S, shared_context=True)
    else:
        embs, times = speaker_encoder.embed_windows(wave, SPEAKER_WINDOW_S, SPEAKER_HOP_S)
    centres = times.mean(axis=1)
    frame_times = (np.arange(frames) + 0.5) / ENCODER_FRAMES_PER_SECOND
    nearest = np.abs(frame_times[:, None] - centres[None, :]).argmin(axis=1)
    return torch.from_numpy(np.ascontiguousarray(embs[nearest], dtype=np.float32))
