"""Where each route to the SpeakerLM model's words lands: WER off the training distribution against WER in
it, one point per evaluated model, with faster-whisper on the same Whisper weights as the reference.

    .venv/bin/python benchmarks/recognition_routes.py LABEL=RUNS_PREFIX ... [--reference ood=34.35,real=8.71,dev=45.12]
        [--out docs/recognition_routes.png]

RUNS_PREFIX names three `speakerlm evaluate` output folders, RUNS_PREFIX-ood, RUNS_PREFIX-real and
RUNS_PREFIX-dev (No-Regist); their results.json give the WER (a set not evaluated is left out). Prints the table and draws two panels: `ood`
WER and `real` WER, each against `dev` WER. A route that only trades one set for another moves along a
line; one that helps moves towards the reference.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from speakerlm.plots import _pyplot, _save

SETS = ("ood", "real", "dev")


def wer(folder: Path):
    """The WER of an evaluation folder; None where that set was not evaluated."""
    results = folder / "results.json"
    if not results.exists():
        return None
    return float(json.loads(results.read_text())["runs"][0]["aggregate"]["wer"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("routes", nargs="+", help="LABEL=RUNS_PREFIX")
    p.add_argument("--reference", default="", help="set=WER,... of faster-whisper on the same weights")
    p.add_argument("--out", type=Path, default=Path("docs/recognition_routes.png"))
    args = p.parse_args()
    points = {}
    for route in args.routes:
        label, prefix = route.split("=", 1)
        points[label] = {s: wer(Path(f"{prefix}-{s}")) for s in SETS}
    reference = {k: float(v) for k, v in (x.split("=") for x in args.reference.split(",") if x)}
    print("| model | " + " | ".join(f"{s} WER" for s in SETS) + " |\n|---|" + "---:|" * len(SETS))
    for label, w in points.items():
        print(f"| {label} | " + " | ".join("–" if w[s] is None else f"{w[s]:.2f}" for s in SETS) + " |")
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, target in zip(axes, ("ood", "real")):
        for label, w in points.items():
            if w["dev"] is None or w[target] is None:
                continue
            ax.scatter(w["dev"], w[target], s=30)
            ax.annotate(label, (w["dev"], w[target]), textcoords="offset points", xytext=(4, 3), fontsize=8)
        if target in reference and "dev" in reference:
            ax.scatter(reference["dev"], reference[target], marker="*", s=160, color="black")
            ax.annotate("faster-whisper, same weights", (reference["dev"], reference[target]),
                        textcoords="offset points", xytext=(4, -10), fontsize=8)
        ax.set_xlabel("dev WER % (in distribution)")
        ax.set_ylabel(f"{target} WER % ({'held-out simulated' if target == 'ood' else 'real voices'})")
        ax.grid(alpha=0.3)
    fig.suptitle("Routes to the model's words: lower-left is better")
    print(_save(fig, args.out))


if __name__ == "__main__":
    main()
