"""Memory over time of `speakerlm transcribe` as a user runs it: where the peak comes from.

    .venv/bin/python benchmarks/memory_trace.py FILE [--engines speakerlm,cascade] [--out docs/memory_trace.png]

Each engine runs in a fresh process (`python -m speakerlm transcribe FILE --engine E --format json`)
whose resident memory (psutil RSS, the process and its children) is sampled every 0.25 s. Prints the
peak, the memory when the transcription starts (models loaded: the process's end less the JSON's
transcription `seconds`), and the median and peak from there; draws each engine's trace. Time
it on an idle machine: the trace's time axis stretches with other jobs (its memory does not).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil


def trace(audio: Path, engine: str, every_s: float = 0.25) -> tuple[np.ndarray, np.ndarray, float]:
    """(seconds, RSS MB) samples of one transcription, and when its transcription started."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "speakerlm", "transcribe", str(audio), "--engine", engine, "--format",
               "json", "--output-dir", out]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        watched, start, samples = psutil.Process(proc.pid), time.monotonic(), []
        while proc.poll() is None:
            try:
                rss = watched.memory_info().rss + sum(c.memory_info().rss for c in watched.children(recursive=True))
            except psutil.Error:
                break
            samples.append((time.monotonic() - start, rss / 2**20))
            time.sleep(every_s)
        stderr = proc.communicate()[1]
        if proc.returncode != 0:
            sys.exit(f"{audio} with {engine} failed:\n{stderr[-2000:]}")
        seconds = json.loads((Path(out) / f"{audio.stem}.json").read_text())["seconds"]
    t, mb = np.array(samples).T
    return t, mb, max(0.0, t[-1] - seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path)
    parser.add_argument("--engines", default="speakerlm,cascade")
    parser.add_argument("--out", type=Path, help="a PNG of the traces")
    args = parser.parse_args()
    traces = {}
    print("| engine | peak MB | at start MB | median after MB | peak after MB |")
    print("|---|---:|---:|---:|---:|")
    for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
        t, mb, load = trace(args.file, engine)
        after = mb[t >= load] if (t >= load).any() else mb
        loaded = mb[t <= load].max() if (t <= load).any() else mb[0]
        print(f"| {engine} | {mb.max():.0f} | {loaded:.0f} | {np.median(after):.0f} | {after.max():.0f} |", flush=True)
        traces[engine] = (t, mb, load)
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(9, 3.5))
        for engine, (t, mb, load) in traces.items():
            line, = ax.plot(t, mb, label=f"{engine} (peak {mb.max():.0f} MB)", lw=1)
            ax.axvline(load, color=line.get_color(), ls=":", lw=1)
        ax.set_xlabel("seconds since the process started (dotted: transcription starts)")
        ax.set_ylabel("RSS (MB)")
        ax.set_title(f"{args.file.name}: resident memory while transcribing")
        ax.legend(loc="lower right")
        fig.tight_layout()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.out, dpi=120)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
