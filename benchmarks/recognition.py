"""Recognition of every engine beside faster-whisper called directly on the same Whisper weights.

    .venv/bin/python benchmarks/recognition.py data/dev data/ood data/real [--limit N]
        [--systems plain,cascade,speakerlm] [--out runs/recognition]

Each data set is scored as `speakerlm evaluate` scores it (No-Regist, no hints). The reference rows
call faster-whisper's `WhisperModel.transcribe` directly, not through speakerlm: greedy on the whole
clip without VAD, and beam 5 with its VAD filter. Prints one markdown table (WER with its deletion,
insertion and substitution shares, cpWER, real-time factor) and writes it with a JSON copy to --out.
Runs resume from --out's logs.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from speakerlm.audio import duration
from speakerlm.data.datasets import load_dataset
from speakerlm.evaluate import evaluate
from speakerlm.metrics import aggregate, score_clip
from speakerlm.pretrained.fast_whisper import COMPUTE_TYPE, ct2_dir
from speakerlm.turns import Turn

REFERENCES = {"faster-whisper greedy, no VAD": dict(beam_size=1, vad_filter=False),
              "faster-whisper beam 5, VAD": dict(beam_size=5, vad_filter=True)}


def reference_runs(clips, whisper: str, log: Path) -> dict[str, dict]:
    """faster-whisper itself on every clip, for each REFERENCES setting: aggregate scores and RTF."""
    from faster_whisper import WhisperModel

    done = {}
    if log.exists():
        for line in log.read_text().splitlines():
            row = json.loads(line)
            done[row["name"], row["clip"]] = row
    model = WhisperModel(str(ct2_dir(whisper)), device="cpu", compute_type=COMPUTE_TYPE, cpu_threads=2,
                         local_files_only=True)
    out = {}
    for name, kwargs in REFERENCES.items():
        scores, seconds, audio = [], 0.0, 0.0
        for clip in clips:
            if (name, clip.id) not in done:
                wave = clip.audio.load()
                started = time.perf_counter()
                segments, _ = model.transcribe(wave, language=None, condition_on_previous_text=True, **kwargs)
                text = " ".join(s.text.strip() for s in segments)
                row = {"name": name, "clip": clip.id, "text": text, "seconds": time.perf_counter() - started,
                       "duration": duration(wave)}
                with open(log, "a") as f:
                    f.write(json.dumps(row) + "\n")
                done[name, clip.id] = row
            row = done[name, clip.id]
            scores.append(score_clip(clip.reference, [Turn("spk 0", row["text"])], registered=False))
            seconds, audio = seconds + row["seconds"], audio + row["duration"]
        out[name] = {"scores": scores, "rtf": seconds / audio}
    return out


def row(dataset: str, system: str, scores, rtf: float, cp: bool) -> dict:
    agg = aggregate(scores)
    counts = scores[0].wer
    for s in scores[1:]:
        counts = counts + s.wer
    share = lambda x: 100.0 * x / counts.reference_length  # noqa: E731
    return {"data": dataset, "system": system, "wer": agg["wer"], "del": share(counts.deletions),
            "ins": share(counts.insertions), "sub": share(counts.substitutions),
            "cpwer": agg["cpwer"] if cp else None, "rtf": rtf, "words": int(counts.reference_length)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("data", nargs="+", type=Path)
    p.add_argument("--systems", default="plain,cascade,speakerlm")
    p.add_argument("--limit", type=int)
    p.add_argument("--whisper", default="tiny.en")
    p.add_argument("--out", type=Path, default=Path("runs/recognition"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for data in args.data:
        clips = load_dataset(data)[: args.limit] if args.limit else load_dataset(data)
        for name, ref in reference_runs(clips, args.whisper, args.out / f"{data.name}-reference.jsonl").items():
            rows.append(row(data.name, name, ref["scores"], ref["rtf"], cp=False))
        systems = [s.strip() for s in args.systems.split(",") if s.strip()]
        for run in evaluate(systems, clips, "no", log=args.out / f"{data.name}-engines.jsonl", progress=True):
            rows.append(row(data.name, run.system.name, [c.scores for c in run.clips], run.rtf,
                            cp=run.system.name != "plain"))
    fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    lines = ["| data | system | WER | del | ins | sub | cpWER | RTF | ref. words |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['data']} | {r['system']} | {fmt(r['wer'])} | {fmt(r['del'])} | {fmt(r['ins'])} | {fmt(r['sub'])} "
              f"| {fmt(r['cpwer'])} | {r['rtf']:.3f} | {r['words']} |" for r in rows]
    table = "\n".join(lines) + "\n"
    (args.out / "recognition.md").write_text(table)
    (args.out / "recognition.json").write_text(json.dumps(rows, indent=1))
    print(table)


if __name__ == "__main__":
    main()
