"""Many voices over long recordings: does the cascade count the speakers and keep them apart?

    .venv/bin/python benchmarks/long_form.py data/long data/long-ood [--window 60] [--cache runs/long-form]

Make the sets with `speakerlm simulate --preset long --out data/long` and `--preset long-ood`. Each
recording's words (faster-whisper tiny.en, as the cascade decodes them), speech regions and CAM++ windows
(1.5 s every 0.5 s for clustering, 0.75 s every 0.25 s for frame labels) are computed once and cached;
every clustering variant then labels frames and joins words exactly as `speakerlm/engines/cascade.py`
does, No-Regist, no hints. Per variant it prints the estimated speaker count against the truth, WER,
whole-recording cpWER and DER; the last row scores the same words per window of about `--window`
seconds, each window clustered with its true speaker count (the figure a whole recording should reach).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from cascade_join import CLUSTER_SCALE, prepared
from speakerlm.data.datasets import load_dataset, split_clip
from speakerlm.diarize import Diarizer, DiarizerConfig, SpeakerCount, pooled_windows
from speakerlm.engines.cascade import CascadeConfig
from speakerlm.word_speakers import word_clusters, words_to_turns
from speakerlm.metrics import aggregate, error_rate_percent, sawer, score_clip
from speakerlm.plots import plot_speaker_counts
from speakerlm.turns import Turn
from speakerlm.vad import Region
from speakerlm.voiceprints import match_names, mean_voiceprint

LABEL_SCALE = (DiarizerConfig.label_window_s, DiarizerConfig.label_hop_s)
BEFORE = dict(prune_fraction=0.2, max_speakers=8, merge_cosine=0.8, merge_max_separation=float("inf"), min_cluster_windows=0,
              pool_windows=False)
VARIANTS = {
    "spectral, cap 8, pruning 0.2, merge 0.8": DiarizerConfig(**BEFORE),
    "spectral, cap 16": DiarizerConfig(**{**BEFORE, "max_speakers": 16}),
    "spectral auto-pruned, cap 16, merge 0.8": DiarizerConfig(**{**BEFORE, "max_speakers": 16, "prune_fraction": 0.0}),
    "spectral auto-pruned, cap 16, merge 0.87": DiarizerConfig(**{**BEFORE, "max_speakers": 16, "prune_fraction": 0.0,
                                                                 "merge_cosine": 0.87}),
    "spectral auto-pruned, cap 16, no merge": DiarizerConfig(**{**BEFORE, "max_speakers": 16, "prune_fraction": 0.0,
                                                               "merge_cosine": 1.01}),
    "spectral auto-pruned, cap 16, clusters ≥ 5 windows, merge 0.87": DiarizerConfig(merge_max_separation=float("inf")),
    "ahc 0.4, cap 16, clusters ≥ 5 windows, no merge": DiarizerConfig(clustering="ahc", ahc_threshold=0.4, merge_cosine=1.01),
    "ahc 0.5, cap 16, clusters ≥ 5 windows, no merge": DiarizerConfig(clustering="ahc", ahc_threshold=0.5, merge_cosine=1.01),
    "default, 1.5 s clustering windows embedded on their own": DiarizerConfig(pool_windows=False),
    "default: auto-pruned, cap 16, clusters ≥ 5 windows, merge 0.87 unless t ≥ 25": DiarizerConfig(),
}
DEFAULT = "default: auto-pruned, cap 16, clusters ≥ 5 windows, merge 0.87 unless t ≥ 25"


def cascade_turns(p: dict, encoder, config: DiarizerConfig, span=None, count=SpeakerCount(),
                  voiceprints=None) -> tuple[list[Turn], int]:
    """The cascade's turns (times relative to the span's start) and its speaker count, from the cached
    pass, for the whole recording or for the [a, b) seconds `span` alone; clusters that match one of
    `voiceprints` take its name, as the cascade names them."""
    a, b = span or (0.0, np.inf)
    (embs, times), (label_embs, label_times) = p["embs"][CLUSTER_SCALE], p["embs"][LABEL_SCALE]
    inside = (times.mean(axis=1) >= a) & (times.mean(axis=1) < b)
    label_inside = (label_times.mean(axis=1) >= a) & (label_times.mean(axis=1) < b)
    words = [w for w in p["words"] if a <= (w.start + w.end) / 2 < b]
    if not inside.any() or not words:
        return [], 0
    regions = [Region(max(r.start, a), min(r.end, b)) for r in p["regions"] if r.end > a and r.start < b]
    short = label_embs[label_inside], label_times[label_inside]
    clustered = pooled_windows(*short, regions, config.window_s, config.hop_s) if config.pool_windows else \
        (embs[inside], times[inside])
    frames, centroids = Diarizer(encoder, config).label(*clustered, regions, p["n"], count, short)
    clusters = word_clusters(words, frames, CascadeConfig())
    named = match_names(centroids, voiceprints or {})
    turns = words_to_turns(words, [named.get(k, f"spk {k}") for k in clusters], CascadeConfig().turn_gap_s)
    return [replace(t, start=t.start - a, end=t.end - a) for t in turns], len(centroids)


def main() -> None:
    from speakerlm.pretrained.speaker_encoder import load_speaker_encoder

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("data", nargs="+", type=Path)
    p.add_argument("--window", type=float, default=60.0, help="seconds per window of the per-window row")
    p.add_argument("--variants", help="names of VARIANTS separated by ; (default: all)")
    p.add_argument("--roster", default=DEFAULT,
                   help="the variant whose whole-recording run is repeated with half the voices enrolled")
    p.add_argument("--cache", type=Path, default=Path("runs/long-form"))
    p.add_argument("--figure", type=Path, help="a PNG of each recording's estimated speaker count against the "
                                               "truth, the first variant (before) beside the default")
    args = p.parse_args()
    counts: dict[str, list[tuple[int, int]]] = {}  # variant → (truth, found) per recording, every set
    variants = {k: VARIANTS[k] for k in args.variants.split(";")} if args.variants else VARIANTS
    encoder = load_speaker_encoder("campp")
    print("| data | clustering | speakers found (truth) | count ±1 | WER | cpWER | Δcp | DER |\n"
          "|---|---|---|---:|---:|---:|---:|---:|")
    for data in args.data:
        clips = load_dataset(data)
        (args.cache / data.name).mkdir(parents=True, exist_ok=True)
        preps = []
        for i, clip in enumerate(clips):
            preps.append(prepared(clip, encoder, args.cache / data.name, (CLUSTER_SCALE, LABEL_SCALE)))
            print(f"\r{data.name}: {i + 1}/{len(clips)} recordings prepared", end="", file=sys.stderr)
        print(file=sys.stderr)
        truth = [len({t.speaker for t in c.reference}) for c in clips]
        for name, config in variants.items():
            scores, found = [], []
            for clip, prep in zip(clips, preps):
                hyp, k = cascade_turns(prep, encoder, config)
                scores.append(score_clip(clip.reference, hyp, registered=False))
                found.append(k)
            counts.setdefault(name, []).extend(zip(truth, found))
            a = aggregate(scores)
            within = np.mean([abs(f - t) <= 1 for f, t in zip(found, truth)]) * 100
            pairs = " ".join(f"{f}({t})" for f, t in zip(found, truth))
            print(f"| {data.name} | {name} | {pairs} | {within:.0f} % | {a['wer']:.2f} | {a['cpwer']:.2f} | "
                  f"{a['cpwer'] - a['wer']:.2f} | {a['der']:.2f} |", flush=True)
        # half the voices enrolled (every other one in order of first speech): the named speakers'
        # saWER over their own words, beside the whole recording's cpWER
        scores, theirs = [], []
        for clip, prep in zip(clips, preps):
            speakers = list(dict.fromkeys(t.speaker for t in sorted(clip.reference, key=lambda t: t.start)))
            enrolled = speakers[::2]
            prints = {s: mean_voiceprint([span.load() for span in clip.enrolment[s]], embed=encoder.embed)
                      for s in enrolled}
            hyp, _ = cascade_turns(prep, encoder, VARIANTS[args.roster], voiceprints=prints)
            scores.append(score_clip(clip.reference, hyp, registered=False))
            theirs.append(sawer([t for t in clip.reference if t.speaker in prints], [t for t in hyp if t.speaker in prints]))
        a = aggregate(scores)
        print(f"| {data.name} | {args.roster}, half the voices enrolled | – | – | {a['wer']:.2f} | {a['cpwer']:.2f} | "
              f"{a['cpwer'] - a['wer']:.2f} | {a['der']:.2f} | enrolled voices' saWER "
              f"{error_rate_percent(sum(theirs[1:], theirs[0])):.2f} |", flush=True)
        scores = []
        for clip, prep in zip(clips, preps):
            for w in split_clip(clip, args.window):
                span = (w.audio.start - clip.audio.start, (w.audio.end or np.inf) - clip.audio.start)
                count = SpeakerCount(num=len({t.speaker for t in w.reference}))
                scores.append(score_clip(w.reference, cascade_turns(prep, encoder, DiarizerConfig(), span, count)[0],
                                         registered=False))
        a = aggregate(scores)
        print(f"| {data.name} | per {args.window:.0f} s window, true count | – | – | {a['wer']:.2f} | {a['cpwer']:.2f} | "
              f"{a['cpwer'] - a['wer']:.2f} | {a['der']:.2f} |", flush=True)
    if args.figure:
        shown = [n for n in (next(iter(variants)), DEFAULT) if n in counts]
        print(f"wrote {plot_speaker_counts({n: counts[n] for n in dict.fromkeys(shown)}, args.figure)}")


if __name__ == "__main__":
    main()
