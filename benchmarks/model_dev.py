"""The model alone on dev clips, for ablations and curriculum stages (the paper's Fig. 4 / Table 4):
no speaker discovery, no windows, no timing — each clip goes through the model once, with its speakers
registered from the dataset's enrolment audio, on the first N dev recordings cut at pauses into ~20 s
pieces (the training clips' length) (Match), none (No), or with N_ov distractors drawn from
the other dev clips' speakers (Over). Prints WER, cpWER, saWER and Δ per checkpoint.

    .venv/bin/python benchmarks/model_dev.py CHECKPOINT [CHECKPOINT …] --dev data/dev --clips 20
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from speakerlm.checkpoint import load_model
from speakerlm.data.datasets import load_dataset
from speakerlm.decoding import decode
from speakerlm.metrics import aggregate, score_clip
from speakerlm.model import SpeakerLM
from speakerlm.pretrained.whisper import ENCODER_FRAMES_PER_SECOND
from speakerlm.train import distractor_pool, feature_cache, make_example, prepare_inputs


def dev_inputs(model: SpeakerLM, dev: Path, clips: int, clip_seconds: float, cache_root: Path,
               pool: Optional[Path] = None) -> list:
    """The first `clips` dev recordings cut at pauses into pieces of about the training clips' length
    (the engine's windows are 20 s too), as cached model inputs; distractors are the other dev
    recordings' speakers, plus every speaker of `pool` (to reach N_ov = 100)."""
    # a model whose encoder was trained must encode the audio itself: give it log-mels, not cached states
    mel = model.encoder_trained
    recordings = {c.id for c in load_dataset(dev)[:clips]}
    pieces = [c for c in load_dataset(dev, clip_seconds=clip_seconds) if c.id.rsplit("-", 1)[0] in recordings]
    inputs = distractor_pool(prepare_inputs(model, pieces, feature_cache(cache_root, dev, model.config, mel),
                                            train_encoder=mel, progress=False))
    if pool is not None:  # only the pool's voiceprints are used: cached encoder states will do
        extra = prepare_inputs(model, load_dataset(pool), feature_cache(cache_root, pool, model.config, False),
                               train_encoder=False)
        voices = {f"pool/{s}": v for c in extra for s, v in c.voiceprints.items()}
        for c in inputs:
            c.distractors.update(voices)
    return inputs


def score_piece(model: SpeakerLM, clip, mode: str, rng: random.Random, distractors: int):
    """One piece through the model alone in one registration mode, scored."""
    ex = make_example(clip, mode, rng, distractors)
    hyp = decode(model, ex, max_new_tokens=int(40 + 8 * clip.frames / ENCODER_FRAMES_PER_SECOND))
    return score_clip(ex.turns, hyp, registered=mode != "no")


def sweep(model: SpeakerLM, checkpoint: Path, inputs: list, counts: list[int]) -> dict[int, float]:
    """Over-Regist saWER at each N_ov (0 = Match-Regist): the paper's Fig. 5."""
    out = {}
    for n in counts:
        rng = random.Random(0)
        scores = [score_piece(model, clip, "over" if n else "match", rng, n)
                  for clip in tqdm(inputs, desc=f"N_ov={n}", leave=False)]
        out[n] = aggregate(scores)["sawer"]
        print(f"| {checkpoint} | {n} | {out[n]:.2f} |", flush=True)
    return out


def plot_sweep(result: dict[int, float], png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(list(result), list(result.values()), marker="o")
    ax.set(xlabel="N_ov (distractor speakers registered)", ylabel="saWER %", title=title)
    ax.title.set_fontsize(8)
    ax.set_ylim(0, max(100, max(result.values()) + 5))
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def evaluate(checkpoint: Path, dev: Path, clips: int, distractors: int, cache_root: Path,
             clip_seconds: float = 20.0) -> dict:
    model = load_model(checkpoint)
    inputs = dev_inputs(model, dev, clips, clip_seconds, cache_root)
    rng = random.Random(0)  # one stream over clips × modes: the README's figures were drawn this way
    started = time.perf_counter()
    scores = {"no": [], "match": [], "over": []}
    for clip in tqdm(inputs, desc=checkpoint.name, leave=False):
        for mode in scores:
            scores[mode].append(score_piece(model, clip, mode, rng, distractors))
    no, match, over = (aggregate(scores[m]) for m in ("no", "match", "over"))
    return {"model": str(checkpoint), "wer": no["wer"], "cpwer": no["cpwer"], "delta_cp": no["cpwer"] - no["wer"],
            "match_sawer": match["sawer"], "match_delta_sa": match["sawer"] - match["wer"],
            "over_sawer": over["sawer"], "over_delta_sa": over["sawer"] - over["wer"],
            "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", type=Path, nargs="+")
    ap.add_argument("--dev", type=Path, default=Path("data/dev"))
    ap.add_argument("--clips", type=int, default=20, help="first N recordings of the dev set")
    ap.add_argument("--clip-seconds", type=float, default=20.0, help="cut them at pauses into pieces this long")
    ap.add_argument("--distractors", type=int, default=10, help="N_ov for the Over-Regist column")
    ap.add_argument("--cache", type=Path, default=Path("runs/features"), help="feature cache (shared with training)")
    ap.add_argument("--sweep", help="instead: Over-Regist saWER at these N_ov, e.g. 0,10,50,100 (Fig. 5)")
    ap.add_argument("--plot", type=Path, help="with --sweep: draw saWER against N_ov into this PNG")
    ap.add_argument("--distractor-pool", type=Path, help="dataset whose speakers are added to the distractors")
    ap.add_argument("--out", type=Path, help="append results here as JSON lines")
    args = ap.parse_args()
    if args.sweep:
        print("| model | N_ov | saWER |\n|---|---:|---:|")
        for checkpoint in args.checkpoints:
            model = load_model(checkpoint)
            inputs = dev_inputs(model, args.dev, args.clips, args.clip_seconds, args.cache, args.distractor_pool)
            result = sweep(model, checkpoint, inputs, [int(n) for n in args.sweep.split(",")])
            if args.plot:
                plot_sweep(result, args.plot, f"{checkpoint}: the model alone, {args.clips} dev recordings")
            if args.out:
                with args.out.open("a") as f:
                    f.write(json.dumps({"model": str(checkpoint), "sweep": result, "clips": args.clips}) + "\n")
        return
    print("| model | WER | cpWER | Δcp | Match saWER | Δsa | Over saWER | Δsa | s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for checkpoint in args.checkpoints:
        r = evaluate(checkpoint, args.dev, args.clips, args.distractors, args.cache, args.clip_seconds)
        print(f"| {checkpoint} | {r['wer']:.2f} | {r['cpwer']:.2f} | {r['delta_cp']:.2f} | {r['match_sawer']:.2f} | "
              f"{r['match_delta_sa']:.2f} | {r['over_sawer']:.2f} | {r['over_delta_sa']:.2f} | {r['seconds']} |", flush=True)
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps({**r, "clips": args.clips, "distractors": args.distractors}) + "\n")


if __name__ == "__main__":
    main()
