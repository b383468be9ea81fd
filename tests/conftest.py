"""Shared fixtures: real synthetic speech from Debian's flite voices, real pretrained models."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speakerlm.audio import SAMPLE_RATE

SENTENCES = {
    "glue": "Glue the sheet to the dark blue background.",
    "canoe": "The birch canoe slid on the smooth planks.",
    "rice": "Rice is often served in round bowls.",
    "well": "It is easy to tell the depth of a well.",
    "chicken": "These days a chicken leg is a rare dish.",
    "juice": "The juice of lemons makes fine punch.",
}
REPO = Path(__file__).resolve().parent.parent
REAL_SPEECH = Path("/usr/share/pocketsphinx/test/data")  # Debian's pocketsphinx-testdata


def synthesize(voice: str, text: str, path: Path) -> Path:
    """flite speech, resampled to 16 kHz mono 16-bit by sox, without dither: the same every run."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(raw)], check=True)
    subprocess.run(["sox", "-D", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(path), "norm", "-3"], check=True)
    raw.unlink()
    return path


@pytest.fixture(scope="session")
def tts(tmp_path_factory):
    """tts(voice, sentence_key) -> path of a cached 16 kHz wav."""
    folder = tmp_path_factory.mktemp("tts")

    def make(voice: str, key: str) -> Path:
        path = folder / f"{voice}_{key}.wav"
        return path if path.exists() else synthesize(voice, SENTENCES[key], path)

    return make


@pytest.fixture(scope="session")
def whisper_tiny():
    from speakerlm.pretrained.whisper import load_whisper

    return load_whisper("tiny.en")


def write_wave(path: Path, wave: np.ndarray, sr: int = SAMPLE_RATE, subtype: str = "PCM_16") -> Path:
    sf.write(str(path), wave, sr, subtype=subtype)
    return path
