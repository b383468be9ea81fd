"""The enrolment store, as a user drives it from the command line."""

import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO, write_wave

EX = REPO / "examples"


def run(*args):
    return subprocess.run([sys.executable, "-m", "speakerlm", *args], capture_output=True, text=True, cwd=REPO)


@pytest.mark.slow
def test_enroll_list_use_remove(tmp_path):
    store = tmp_path / "people"
    for name in ("Alice", "Bob"):
        proc = run("enroll", name, str(EX / f"{name.lower()}.wav"), "--store", str(store))
        assert proc.returncode == 0, proc.stderr
    assert run("enroll", "--list", "--store", str(store)).stdout.split() == ["Alice", "Bob"]
    proc = run("transcribe", str(EX / "meeting.wav"), "--speakers-dir", str(store))
    assert [l.split(":")[0] for l in proc.stdout.splitlines()] == ["Alice", "Bob", "Alice", "Bob", "Alice"], proc.stderr
    assert run("enroll", "--remove", "Bob", "--store", str(store)).returncode == 0
    assert run("enroll", "--list", "--store", str(store)).stdout.split() == ["Alice"]
    proc = run("enroll", "--remove", "Bob", "--store", str(store))
    assert proc.returncode == 2 and "not enrolled" in proc.stderr


def test_enroll_refuses_bad_names_and_audio(tmp_path):
    store = tmp_path / "people"
    silent = write_wave(tmp_path / "silent.wav", np.zeros(32000, np.float32))
    short = write_wave(tmp_path / "short.wav", (0.3 * np.sin(np.arange(8000) / 5)).astype(np.float32))
    for args, words in [(("Al:ice", str(EX / "alice.wav")), "contains ':'"), (("spk 1", str(EX / "alice.wav")), "anonymous"),
                        (("Alice", str(silent)), "silent"), (("Alice", str(short)), "at least 1 s"),
                        (("Alice",), "at least one audio file")]:
        proc = run("enroll", *args, "--store", str(store))
        assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
    assert not list(store.glob("*.npz")) if store.exists() else True
