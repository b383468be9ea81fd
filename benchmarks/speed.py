"""`speakerlm transcribe` as a user runs it, engines side by side, one table per run: RTF without and
with model loading, peak memory, and each stage's share of the transcription time.

    .venv/bin/python benchmarks/speed.py FILE... [--engines speakerlm,cascade,plain] [--threads 1,2]

Each run is a fresh process (`python -m speakerlm transcribe FILE --format json`), with
OMP_NUM_THREADS set. "RTF" is the transcription's own time from the JSON's run metadata (reading the
audio, enrolment and the engine's work); "RTF, process" is GNU time's wall time of the whole command
(Python start, imports, model loading) over the audio's duration; peak RSS is GNU time's. Stage shares
come from the metadata's `stages` (speakerlm/stages.py); "other" is what no stage covers (joining words
to speakers, turn timing, reading the audio). Time it on an idle machine: two jobs on two cores halve
every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import soundfile as sf

from speakerlm.stages import STAGES


def run_once(audio: Path, engine: str, threads: int, extra: list[str] = ()) -> dict:
    time_bin = shutil.which("time") or "/usr/bin/time"
    if not Path(time_bin).exists():
        sys.exit("GNU time is needed (apt-get install time)")
    with tempfile.TemporaryDirectory() as out:
        cmd = [time_bin, "-f", "%M %e", sys.executable, "-m", "speakerlm", "transcribe", str(audio),
               "--engine", engine, "--format", "json", "--output-dir", out, *extra]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            sys.exit(f"{audio} with {engine} failed:\n{done.stderr[-2000:]}")
        max_kb, wall = done.stderr.strip().splitlines()[-1].split()
        meta = json.loads((Path(out) / f"{audio.stem}.json").read_text())  # run metadata sits at the top level
    return {"rss_mb": int(max_kb) / 1024, "wall_s": float(wall), "seconds": meta["seconds"],
            "stages": meta.get("stages", {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--engines", default="speakerlm,cascade,plain")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--int8", action="store_true", help="speakerlm with int8 decoder weights")
    args = parser.parse_args()
    header = (["engine", "audio", "duration", "threads", "RTF", "RTF, process", "peak RSS MB"]
              + [f"{s} %" for s in STAGES] + ["other %"])
    rows = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    print(rows[0], flush=True)
    for audio in args.files:
        seconds = sf.info(str(audio)).duration
        for threads in [int(t) for t in args.threads.split(",")]:
            for engine in args.engines.split(","):
                extra = ["--int8"] if args.int8 and engine == "speakerlm" else []
                r = run_once(audio, engine, threads, extra)
                shares = [100 * r["stages"].get(s, 0.0) / r["seconds"] for s in STAGES]
                cells = [f"{engine}{' int8' if extra else ''}", audio.name, f"{seconds / 60:.1f} min", str(threads),
                         f"{r['seconds'] / seconds:.3f}", f"{r['wall_s'] / seconds:.3f}", f"{r['rss_mb']:.0f}"]
                cells += [f"{x:.0f}" if x else "–" for x in shares] + [f"{max(0.0, 100 - sum(shares)):.0f}"]
                rows.append("| " + " | ".join(cells) + " |")
                print(rows[-1], flush=True)
    print("\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
