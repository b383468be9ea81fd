import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from speakerlm.audio import SAMPLE_RATE, load_audio, prepare_wave
from speakerlm.errors import UserError
from tests.conftest import write_wave


def tone(seconds=1.0, sr=SAMPLE_RATE, freq=220.0):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("fmt,subtype", [("wav", "PCM_16"), ("flac", "PCM_16"), ("ogg", "VORBIS"), ("mp3", "MPEG_LAYER_III")])
def test_reads_common_formats(tmp_path, fmt, subtype):
    path = tmp_path / f"tone.{fmt}"
    sf.write(str(path), tone(sr=44100), 44100, format=fmt.upper() if fmt != "ogg" else "OGG", subtype=subtype)
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(wave.size / SAMPLE_RATE - 1.0) < 0.06  # mp3 adds encoder padding


def test_stereo_is_mixed_and_resampled(tmp_path):
    left, right = tone(2.0, 48000), np.zeros(96000, np.float32)
    path = write_wave(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 48000)
    wave = load_audio(path)
    assert wave.size == 2 * SAMPLE_RATE
    assert np.isclose(np.abs(wave).max(), 0.15, atol=0.01)  # mean of a 0.3 tone and silence


# Each bad input: (how to make it, words the one-line message must contain)
def _truncated(p):
    write_wave(p, tone(1.0))
    p.write_bytes(p.read_bytes()[:30])


BAD_INPUTS = {
    "missing": (lambda p: None, "no such file"),
    "directory": (lambda p: p.mkdir(), "is a directory"),
    "empty": (lambda p: p.write_bytes(b""), "empty (0 bytes)"),
    "truncated": (_truncated, "not a readable audio file"),
    "zero_length": (lambda p: write_wave(p, np.zeros(0, np.float32)), "zero length"),
    "silent": (lambda p: write_wave(p, np.zeros(SAMPLE_RATE, np.float32)), "silent"),
    "nan": (lambda p: write_wave(p, np.full(SAMPLE_RATE, np.nan, np.float32), subtype="FLOAT"), "NaN or infinite"),
    "text": (lambda p: p.write_text("this is not audio\n" * 20), "not a readable audio file"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_user_error(tmp_path, case):
    make, words = BAD_INPUTS[case]
    path = tmp_path / "input.wav"
    make(path)
    with pytest.raises(UserError) as err:
        load_audio(path)
    assert words in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_cli_one_line_and_exit_code(tmp_path, case):
    make, words = BAD_INPUTS[case]
    path = tmp_path / "input.wav"
    make(path)
    proc = subprocess.run([sys.executable, "-m", "speakerlm", "transcribe", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("speakerlm: error:") and words in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_prepare_wave_rejects_too_short():
    with pytest.raises(UserError, match="shorter than"):
        prepare_wave(tone(0.05), SAMPLE_RATE)
