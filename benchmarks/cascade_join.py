"""How the cascade joins words to speakers: its attribution variants over one recognition pass.

    .venv/bin/python benchmarks/cascade_join.py data/ood data/real [--limit N] [--cache runs/cascade-join]

The words (faster-whisper tiny.en, as the cascade decodes them), the speech regions and CAM++ windows
at every scale below are computed once per clip and cached; each variant then clusters, labels frames
and joins words to speakers exactly as `speakerlm/engines/cascade.py` does, No-Regist, no hints:
- frame labels from the clustered 1.5 s windows (majority of their cluster labels) or from shorter
  windows scored against the centroids (each frame takes the centroid with the highest summed cosine);
- the join: every word by its own frames (`word`) or, inside a sentence, short runs of another speaker
  given to the sentence's main speaker (`sentence`).
Prints WER, cpWER, Δcp, DER and the share of correctly recognised words given to the wrong speaker.
"""
from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np

from speakerlm.attribution import AttributionCounts, attribution_counts
from speakerlm.audio import SAMPLE_RATE
from speakerlm.data.datasets import load_dataset
from speakerlm.diarize import FRAMES_PER_SECOND, Diarizer, DiarizerConfig, SpeakerCount, pooled_windows
from speakerlm.engines.cascade import CascadeConfig
from speakerlm.word_speakers import word_clusters, words_to_turns
from speakerlm.metrics import aggregate, score_clip

CLUSTER_SCALE = (DiarizerConfig.window_s, DiarizerConfig.hop_s)
LABEL_SCALES = [(1.5, 0.25), (1.0, 0.25), (0.75, 0.25)]


def prepared(clip, encoder, cache: Path, scales=(CLUSTER_SCALE, *LABEL_SCALES)) -> dict:
    """The clip's words, speech regions and window embeddings at `scales` (cached; scales missing from
    the cache are added to it)."""
    from speakerlm.pretrained.fast_whisper import FastWhisper
    from speakerlm.vad import speech_regions

    path = cache / f"{clip.id}.pkl"
    out = pickle.loads(path.read_bytes()) if path.exists() else None
    if out is not None and all(s in out["embs"] for s in scales):
        return out
    wave = clip.audio.load()
    if out is None:
        words = [w for s in FastWhisper("tiny.en").transcribe(wave, "en") for w in s.words]
        out = dict(words=words, regions=speech_regions(wave), embs={},
                   n=int(np.ceil(wave.size / SAMPLE_RATE * FRAMES_PER_SECOND)))
    diarizer = Diarizer(encoder)
    for scale in scales:
        if scale not in out["embs"]:
            out["embs"][scale] = diarizer.embed(wave, out["regions"], *scale)
    path.write_bytes(pickle.dumps(out))
    return out


def turns(p: dict, encoder, label_scale, join: str, pooled: bool = False):
    """The cascade's turns for one variant, as `Diarizer.label` and `Cascade.transcribe` make them:
    frame labels from the clustered 1.5 s windows (`label_scale` None) or from shorter windows; the
    clustered windows embedded on their own, or `pooled` from the short ones (the default)."""
    short = p["embs"][label_scale] if label_scale else None
    clustered = pooled_windows(*short, p["regions"], *CLUSTER_SCALE) if pooled else p["embs"][CLUSTER_SCALE]
    frames, _ = Diarizer(encoder).label(*clustered, p["regions"], p["n"], SpeakerCount(), short)
    config = CascadeConfig(speaker_unit=join)
    clusters = word_clusters(p["words"], frames, config)
    return words_to_turns(p["words"], [f"spk {k}" for k in clusters], config.turn_gap_s)


def main() -> None:
    from speakerlm.pretrained.speaker_encoder import load_speaker_encoder

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("data", nargs="+", type=Path)
    p.add_argument("--limit", type=int)
    p.add_argument("--cache", type=Path, default=Path("runs/cascade-join"))
    args = p.parse_args()
    encoder = load_speaker_encoder("campp")
    default = (DiarizerConfig.label_window_s, DiarizerConfig.label_hop_s)
    variants = ([(None, "word", False), (None, "sentence", False)]
                + [(s, j, False) for s in LABEL_SCALES for j in ("word", "sentence")] + [(default, "sentence", True)])
    print("| data | frame labels | join | WER | cpWER | Δcp | DER | misattributed |\n|---|---|---|---:|---:|---:|---:|---:|")
    for data in args.data:
        clips = load_dataset(data)[: args.limit] if args.limit else load_dataset(data)
        (args.cache / data.name).mkdir(parents=True, exist_ok=True)
        preps = []
        for i, clip in enumerate(clips):
            preps.append(prepared(clip, encoder, args.cache / data.name))
            print(f"\r{data.name}: {i + 1}/{len(clips)} clips prepared", end="", file=sys.stderr)
        print(file=sys.stderr)
        for label_scale, join, pooled in variants:
            scores, counts = [], AttributionCounts()
            for clip, prep in zip(clips, preps):
                hyp = turns(prep, encoder, label_scale, join, pooled)
                scores.append(score_clip(clip.reference, hyp, registered=False))
                counts = counts + attribution_counts(clip.reference, hyp)
            a = aggregate(scores)
            labels = "clustered 1.5 s windows" if label_scale is None else f"{label_scale[0]} s windows every {label_scale[1]} s"
            labels += ", clustering windows pooled from them (default)" if pooled else ""
            print(f"| {data.name} | {labels} | {join} | {a['wer']:.2f} | {a['cpwer']:.2f} | {a['cpwer'] - a['wer']:.2f} "
                  f"| {a['der']:.2f} | {counts.summary()['misattributed']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
