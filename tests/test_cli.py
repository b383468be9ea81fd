"""The README's main command as a user runs it."""

import json
import subprocess
import sys

import pytest

from speakerlm.turns import check_speaker_name
from speakerlm.errors import UserError
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "meeting.wav"


def run(*args):
    return subprocess.run([sys.executable, "-m", "speakerlm", *args], capture_output=True, text=True, cwd=REPO)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["speakerlm", "cascade"])  # the demo's bundled model, the default engine
def test_transcribe_example_to_stdout(engine):
    proc = run("transcribe", str(EXAMPLE), "--engine", engine, "--speaker", f"Alice={REPO}/examples/alice.wav",
               "--speaker", f"Bob={REPO}/examples/bob.wav")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [l.split(":")[0] for l in lines] == ["Alice", "Bob", "Alice", "Bob", "Alice"], proc.stdout
    for line, phrase in zip(lines, ("budget report", "travel costs", "conference in march", "next trip", "this afternoon")):
        assert phrase in line.lower()


@pytest.mark.slow
def test_all_formats_written_atomically_to_output_dir(tmp_path):
    proc = run("transcribe", str(EXAMPLE), "--format", "all", "--output-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"meeting.{f}" for f in ("json", "rttm", "srt", "txt", "vtt")]
    body = json.loads((tmp_path / "meeting.json").read_text())
    assert body["audio"].endswith("meeting.wav") and body["turns"] and {"speaker", "text", "start", "end"} <= set(body["turns"][0])
    assert body["engine"] == "cascade"  # the default engine (README: the most accurate on held-out data)


def test_format_all_without_output_dir_is_refused():
    proc = run("transcribe", str(EXAMPLE), "--format", "all")
    assert proc.returncode == 2 and "--output-dir" in proc.stderr


@pytest.mark.parametrize("spec,words", [("Alice", "expected NAME=FILE"), ("A:b=x.wav", "contains ':'"),
                                        ("spk 3=x.wav", "anonymous label")])
def test_bad_speaker_arguments(spec, words):
    proc = run("transcribe", str(EXAMPLE), "--speaker", spec)
    assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr


def test_missing_enrolment_file_is_named():
    proc = run("transcribe", str(EXAMPLE), "--speaker", "Alice=nope.wav")
    assert proc.returncode == 2 and "nope.wav: no such file" in proc.stderr


def test_speaker_name_rules():
    assert check_speaker_name("  Dr. Alice Smith ") == "Dr. Alice Smith"
    for bad in ("", "a\nb", "x" * 65):
        with pytest.raises(UserError):
            check_speaker_name(bad)


@pytest.mark.slow
def test_speakerlm_engine_options_from_the_command_line(tmp_path):
    """--engine speakerlm with every model option; the resume state is gone once outputs are written."""
    from speakerlm.cache import cache_dir

    partial = lambda: set((cache_dir() / "partial").glob("*.jsonl"))
    before = partial()
    base = ["transcribe", str(EXAMPLE), "--engine", "speakerlm", "--speaker", f"Alice={REPO}/examples/alice.wav"]
    for extra in (["--beams", "1"], ["--num-speakers", "2", "--format", "rttm", "--output-dir", str(tmp_path)]):
        proc = run(*base, *extra)
        assert proc.returncode == 0, proc.stderr
        out = (tmp_path / "meeting.rttm").read_text() if "rttm" in extra else proc.stdout
        assert "Alice" in out, (extra, out)
        assert partial() == before
    labels = {line.split()[7] for line in (tmp_path / "meeting.rttm").read_text().splitlines()}
    assert len(labels) == 2 and "Alice" in labels  # two speakers, as told


def test_transcribe_help_lists_user_options_only():
    proc = run("transcribe", "--help")
    assert proc.returncode == 0 and "--speaker" in proc.stdout and "--num-speakers" in proc.stdout
    for switch in ("--naming", "--retrieval-k", "--no-speaker-discovery", "--enrolled-from-recording"):
        assert switch not in proc.stdout  # experiment switches live in `evaluate --engine-config`


@pytest.mark.slow
@pytest.mark.parametrize("extra, check", [
    (["--engine", "cascade", "--min-speakers", "2", "--max-speakers", "2"],
     lambda out, d: len({l.split(":")[0] for l in out.splitlines()}) == 2),
    (["--engine", "plain"], lambda out, d: {l.split(":")[0] for l in out.splitlines()} == {"spk 0"} and "budget" in out),
    (["--engine", "plain", "--whisper", "base", "--language", "en"], lambda out, d: "budget" in out.lower()),
    (["--engine", "cascade", "--speaker-encoder", "ge2e", "--speaker", f"Alice={REPO}/examples/alice.wav"],
     lambda out, d: out.splitlines()[0].startswith("Alice:")),
    (["--engine", "speakerlm", "--model", str(REPO / "speakerlm" / "bundled"), "--timeline", "--output-dir", "{d}"],
     lambda out, d: (d / "meeting.png").stat().st_size > 5000 and (d / "meeting.txt").read_text().startswith("spk 0:")),
])
def test_transcribe_options(extra, check, tmp_path):
    proc = run("transcribe", str(EXAMPLE), *[a.replace("{d}", str(tmp_path)) for a in extra])
    assert proc.returncode == 0, proc.stderr
    assert check(proc.stdout, tmp_path), proc.stdout


@pytest.mark.parametrize("extra, words", [
    (["--num-speakers", "0"], "--num-speakers 0"),
    (["--min-speakers", "3", "--max-speakers", "2"], "above --max-speakers"),
    (["--engine", "speakerlm", "--model", "/nonexistent"], "not a SpeakerLM model"),
    (["--engine", "speakerlm", "--whisper", "base"], "built on Whisper tiny.en"),
    (["--beams", "0"], "--beams 0"),
    (["--engine", "speakerlm", "--speaker-encoder", "ge2e", "--speaker", f"Alice={REPO}/examples/alice.wav"],
     "trained on campp voiceprints"),
    (["--engine", "cascade", "--model", str(REPO / "speakerlm" / "bundled")], "--model applies to --engine speakerlm"),
    (["--engine", "plain", "--model", str(REPO / "speakerlm" / "bundled")], "--model applies to --engine speakerlm"),
    (["--output-dir", str(EXAMPLE)], "is a file, not a folder"),
    (["--speaker", f"Alice={REPO}/README.md"], "README.md: not a readable audio file"),
])
def test_bad_transcribe_options_are_one_line_errors(extra, words):
    proc = run("transcribe", str(EXAMPLE), *extra)
    assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("speakerlm: error: ") and proc.stderr.count("\n") == 1, proc.stderr


def test_every_input_is_checked_before_any_is_transcribed(tmp_path):
    """A bad second recording stops the run before the first one is transcribed (no output written)."""
    bad = tmp_path / "truncated.wav"
    bad.write_bytes(EXAMPLE.read_bytes()[:30])
    proc = run("transcribe", str(EXAMPLE), str(bad), "--engine", "cascade", "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 2 and "truncated.wav" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_tone_is_refused_as_enrolment_and_transcribes_to_an_empty_warned_transcript(tmp_path):
    """Audio without speech: enrolling it would name some voice after a hum, so it is refused; as a
    recording it gives an empty transcript, with a warning that says so."""
    import numpy as np
    import soundfile as sf

    tone = tmp_path / "tone.wav"
    seconds = np.arange(3 * 16000) / 16000
    sf.write(tone, (0.1 * np.sin(2 * np.pi * 220 * seconds)).astype(np.float32), 16000)
    proc = run("transcribe", str(EXAMPLE), "--speaker", f"Alice={tone}")
    assert proc.returncode == 2 and proc.stderr.startswith("speakerlm: error: ") and proc.stderr.count("\n") == 1
    assert "tone.wav: no speech found in the enrolment audio" in proc.stderr, proc.stderr
    proc = run("transcribe", str(tone), "--engine", "plain")
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout
    assert "tone.wav: no speech recognised; the transcript is empty" in proc.stderr, proc.stderr
