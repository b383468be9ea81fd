"""`speakerlm transcribe` as a user runs it, engines side by side, one table per run: RTF without and
with model loading, peak memory, and each stage's share of the transcription time.

    .venv/bin/python benchmarks/speed.py FILE... [--engines speakerlm,cascade,plain] [--threads 1,2]
                                         [--accuracy data/ood data/dev --accuracy-limit 20]

Each run is a fresh process (`python -m speakerlm transcribe FILE --format json`), with
OMP_NUM_THREADS set. "RTF" is the transcription's own time from the JSON's run metadata (reading the
audio, enrolment and the engine's work); "RTF, process" is GNU time's wall time of the whole command
(Python start, imports, model loading) over the audio's duration; peak RSS is GNU time's. Stage shares
come from the metadata's `stages` (speakerlm/stages.py); "other" is what no stage covers (joining words
to speakers, turn timing, reading the audio). Time it on an idle machine: two jobs on two cores halve
every figure.

`--accuracy DATA...` also scores each engine on those sets (`speakerlm evaluate DATA --systems ENGINE
--mode no`, the first `--accuracy-limit` clips) and prints WER and cpWER beside the speeds, so a speed
change is checked against the out-of-distribution and in-distribution figures in the same run.
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


def run_once(audio: Path, engine: str, threads: int) -> dict:
    time_bin = shutil.which("time") or "/usr/bin/time"
    if not Path(time_bin).exists():
        sys.exit("GNU time is needed (apt-get install time)")
    with tempfile.TemporaryDirectory() as out:
        cmd = [time_bin, "-f", "%M %e", sys.executable, "-m", "speakerlm", "transcribe", str(audio),
               "--engine", engine, "--format", "json", "--output-dir", out]
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
    parser.add_argument("--accuracy", nargs="*", type=Path, default=[], help="data sets to score each engine on")
    parser.add_argument("--accuracy-limit", type=int, default=0, help="score the first N clips of each (0 = all)")
    args = parser.parse_args()
    header = (["engine", "audio", "duration", "threads", "RTF", "RTF, process", "peak RSS MB"]
              + [f"{s} %" for s in STAGES] + ["other %"])
    rows = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    print(rows[0], flush=True)
    for audio in args.files:
        seconds = sf.info(str(audio)).duration
        for threads in [int(t) for t in args.threads.split(",")]:
            for engine in args.engines.split(","):
                r = run_once(audio, engine, threads)
                shares = [100 * r["stages"].get(s, 0.0) / r["seconds"] for s in STAGES]
                cells = [engine, audio.name, f"{seconds / 60:.1f} min", str(threads),
                         f"{r['seconds'] / seconds:.3f}", f"{r['wall_s'] / seconds:.3f}", f"{r['rss_mb']:.0f}"]
                cells += [f"{x:.0f}" if x else "–" for x in shares] + [f"{max(0.0, 100 - sum(shares)):.0f}"]
                rows.append("| " + " | ".join(cells) + " |")
                print(rows[-1], flush=True)
    print("\n" + "\n".join(rows))
    if args.accuracy:
        print("\n| engine | data | clips | WER | cpWER |\n|---|---|---:|---:|---:|")
        for data in args.accuracy:
            for engine in args.engines.split(","):
                print(accuracy_row(data, engine, args.accuracy_limit), flush=True)


def accuracy_row(data: Path, engine: str, limit: int) -> str:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "speakerlm", "evaluate", str(data), "--systems", engine, "--mode", "no",
               "--out", out] + (["--limit", str(limit)] if limit else [])
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"evaluating {engine} on {data} failed:\n{done.stderr[-2000:]}")
        run = json.loads((Path(out) / "results.json").read_text())["runs"][0]
    wer, cpwer = run["aggregate"]["wer"], run["aggregate"]["cpwer"]
    return f"| {engine} | {data} | {run['clips']} | {wer:.2f} | " + ("–" if cpwer is None else f"{cpwer:.2f}") + " |"


if __name__ == "__main__":
    main()
