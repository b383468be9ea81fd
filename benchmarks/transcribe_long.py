"""`speakerlm transcribe` on recordings of growing length, both engines, in one run: wall time, RTF
(transcription only, from the JSON's run metadata) and peak memory (GNU time's max RSS of the whole
command, model loading included). Each run is a fresh process, as a user's would be.

    .venv/bin/python benchmarks/transcribe_long.py FILE... [--engines speakerlm,cascade] [--threads 1] [--int8]

Make long recordings with the simulator, e.g. a 10-minute and a 60-minute meeting of 4 speakers:
    speakerlm simulate --out data/long10 --conversations 1 --split test --speakers 4-4 --duration 600-600
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
    return {"rss_mb": int(max_kb) / 1024, "wall_s": float(wall), "rtf": meta["rtf"], "seconds": meta["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--engines", default="speakerlm,cascade")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--int8", action="store_true", help="speakerlm with int8 decoder weights")
    args = parser.parse_args()
    rows = ["| engine | audio | duration | wall s | transcription s | RTF | peak RSS MB |", "|---|---|---:|---:|---:|---:|---:|"]
    for engine in args.engines.split(","):
        for audio in args.files:
            seconds = sf.info(str(audio)).duration
            extra = ["--int8"] if args.int8 and engine == "speakerlm" else []
            r = run_once(audio, engine, args.threads, extra)
            rows.append(f"| {engine}{' int8' if extra else ''} | {audio.name} | {seconds / 60:.1f} min | {r['wall_s']:.0f} | {r['seconds']:.0f} | "
                        f"{r['rtf']:.3f} | {r['rss_mb']:.0f} |")
            print(rows[-1], flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
