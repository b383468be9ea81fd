"""Simulation throughput and memory: audio-hours per wall-minute, peak RSS, RSS after 10 vs 40 clips.

    .venv/bin/python benchmarks/simulate_throughput.py --conversations 40 --workers 2
    .venv/bin/python benchmarks/simulate_throughput.py --hours 1

By default the utterance cache starts empty (a copy of the bank's voices, similarity and splits
without its utterances), so every utterance is synthesised: the cold, first-run figure. --warm reuses
the bank's cache. Throughput is measured with `simulate(workers=N)`. Memory is then measured in this
process alone (no pool, so nothing is hidden in finished workers): RSS after 10 and after 40
conversations of the same generator, which must stay flat because nothing is kept between clips.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from speakerlm.data.simulate import ConversationSimulator, SimulationConfig, simulate, write_conversation
from speakerlm.data.texts import load_text_pool
from speakerlm.data.voices import VoiceBank, default_bank_dir


def rss_mb() -> float:
    """Current resident memory of this process (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--hours", type=float, help="audio to simulate (default: --conversations 40)")
    size.add_argument("--conversations", type=int, default=40)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--split", default="train")
    p.add_argument("--bank", type=Path, default=default_bank_dir())
    p.add_argument("--warm", action="store_true", help="reuse the bank's utterance cache")
    p.add_argument("--out", type=Path, help="keep the output here (default: a temporary folder)")
    args = p.parse_args()

    config = SimulationConfig()  # 2-4 speakers, 40-50 s, overlap 0.1, noise and reverb p=0.5
    n = args.conversations if args.hours is None else round(args.hours * 3600 / (sum(config.duration) / 2))
    work = Path(tempfile.mkdtemp(prefix="simbench-"))
    bank_dir = args.bank
    if not args.warm:  # the same voices and similarity, an empty utterance cache
        bank_dir = work / "bank"
        bank_dir.mkdir()
        for name in ("voices.json", "similarity.npz", "splits.json"):
            shutil.copy(args.bank / name, bank_dir / name)
    out = args.out or work / "out"
    bank = VoiceBank.open(bank_dir)
    texts = load_text_pool()
    sim = ConversationSimulator(bank, texts, config, args.split, seed=0)
    report = {"conversations": n, "workers": args.workers, "cold_cache": not args.warm}
    start = time.perf_counter()
    simulate(out, sim, n, workers=args.workers, progress=sys.stderr.isatty())
    wall = time.perf_counter() - start
    audio_s = sum(json.loads(f.read_text())["duration"] for f in (out / "conversations").glob("*.json"))
    report.update(
        wall_seconds=round(wall, 1), audio_hours=round(audio_s / 3600, 4),
        audio_hours_per_wall_minute=round(audio_s / 3600 / (wall / 60), 4),
        minutes_per_audio_hour=round(wall / 60 / (audio_s / 3600), 2),
        parent_rss_mb=round(rss_mb(), 1),
        worker_peak_rss_mb=round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),  # KiB on Linux
        utterances_cached=sum(1 for _ in (bank_dir / "utterances").rglob("*.wav")),
        distractor_clips=sum(1 for _ in (out / "distractors").glob("*.wav")),
    )
    # memory in one process: a fresh seed (new clips), RSS after 10 and after 40
    mem_sim = ConversationSimulator(bank, texts, config, args.split, seed=1)
    mem_out = work / "memory"
    rss = {"before": round(rss_mb(), 1)}
    for i in range(40):
        write_conversation(mem_sim, mem_out, i)
        if i + 1 in (10, 40):
            rss[f"after_{i + 1}"] = round(rss_mb(), 1)
    rss["peak"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    report["in_process_rss_mb"] = rss
    print(json.dumps(report, indent=1))
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
