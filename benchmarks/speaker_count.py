"""The cascade's attribution under other clustering settings, from cached embeddings (seconds a setting).

    .venv/bin/python benchmarks/speaker_count.py data/ood [--limit N] [--cache runs/speaker-count] \
        [--oracle-count] [SETTING ...]

A SETTING is `KEY=VALUE[,KEY=VALUE…]` over `DiarizerConfig`'s clustering fields (`merge_cosine=0.9`,
`min_cluster_windows=0,merge_cosine=1.01`, `clustering=ahc,ahc_threshold=0.4`); `window_s` and `hop_s`
pool the cached short windows into other clustering windows (`window_s=3.0,hop_s=1.0`). The first run computes
and caches, per clip, what the cascade clusters (speech regions, CAM++ windows) and the words it joins
(faster-whisper, as the cascade calls it); each setting then re-clusters, labels the frames and joins
the words exactly as the cascade does, and prints WER, cpWER, Δcp and how far each clip's speaker
count is from the truth (estimated − true: clips). `default` is the shipped config; `--oracle-count`
adds it told the true count.

`--separation` asks whether any rule on the clusters' statistics could count better: per clip, the
spectral clustering's estimate (before the small-cluster and over-split repairs) and the true count, the reference speakers' closest pair (windows labelled by the reference
turn they overlap most: Welch's t along the axis joining them, as `diarize.separation` measures it for
the over-split merge, and their centroids' cosine), and the weakest pair when the spectral clustering
is made to find one speaker more than it estimated.
"""
from __future__ import annotations

import argparse
import pickle
from collections import Counter
from pathlib import Path

import numpy as np

from speakerlm.audio import SAMPLE_RATE
from speakerlm.data.datasets import load_dataset
from speakerlm.diarize import (FRAMES_PER_SECOND, Diarizer, DiarizerConfig, SpeakerCount, pooled_windows, separation,
                               spectral_clusters, unit_rows)
from speakerlm.errors import UserError
from speakerlm.evaluate import engine_config
from speakerlm.metrics import aggregate, score_clip
from speakerlm.word_speakers import WordJoinConfig, word_clusters, words_to_turns


def cached_inputs(clips, path: Path) -> dict:
    """Per clip id: (speech regions, the diarizer's embeddings, frame count, faster-whisper's words)."""
    cached = pickle.loads(path.read_bytes()) if path.exists() else {}
    missing = [c for c in clips if c.id not in cached]
    if missing:
        from tqdm import tqdm

        from speakerlm.pretrained.fast_whisper import FastWhisper
        from speakerlm.pretrained.speaker_encoder import load_speaker_encoder
        from speakerlm.vad import speech_regions

        diarizer, asr = Diarizer(load_speaker_encoder("campp")), FastWhisper("tiny.en")
        for clip in tqdm(missing, desc="embedding and transcribing"):
            wave = clip.audio.load()
            regions = speech_regions(wave)
            words = [w for s in asr.transcribe(wave) for w in s.words]
            n_frames = int(np.ceil(wave.size / SAMPLE_RATE * FRAMES_PER_SECOND))
            cached[clip.id] = (regions, diarizer.embed_speech(wave, regions), n_frames, words)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(cached))
    return cached


def setting(text: str) -> DiarizerConfig:
    """`KEY=VALUE[,KEY=VALUE…]` → the diarizer's config, typed as `--engine-config` types switches."""
    return engine_config(DiarizerConfig, dict(item.partition("=")[::2] for item in text.split(",")), "diarizer")


def score(clips, cached: dict, config: DiarizerConfig, oracle: bool = False) -> tuple[dict, Counter]:
    class _Dim:  # the clustering reads only the embedding size from its encoder
        dim = 192

    diarizer, join, scores, off = Diarizer(_Dim(), config), WordJoinConfig(), [], Counter()
    for clip in clips:
        regions, ((embs, times), short), n_frames, words = cached[clip.id]
        if (config.window_s, config.hop_s) != (DiarizerConfig.window_s, DiarizerConfig.hop_s):
            embs, times = pooled_windows(*short, regions, config.window_s, config.hop_s)  # other clustering windows
        true = len({t.speaker for t in clip.reference})
        frames, centroids = diarizer.label(embs, times, regions, n_frames, SpeakerCount(true) if oracle else SpeakerCount(), short)
        off[len(centroids) - true] += 1
        speakers = [f"spk {k}" for k in word_clusters(words, frames, join)]
        scores.append(score_clip(list(clip.reference), words_to_turns(words, speakers, join.turn_gap_s), registered=False))
    return aggregate(scores), off


def closest_pair(embs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(Welch's t, centroid cosine) of the pair of clusters that `separation` finds least apart."""
    ids = np.unique(labels)
    centroids = unit_rows(np.stack([embs[labels == k].mean(axis=0) for k in ids]))
    pairs = [(separation(embs[labels == a], embs[labels == b]), float(centroids[i] @ centroids[j]))
             for i, a in enumerate(ids) for j, b in enumerate(ids) if j > i]
    return min(pairs) if pairs else (float("nan"), float("nan"))


def separations(clips, cached: dict, config: DiarizerConfig) -> None:
    print("| clip | spectral estimate | true | reference speakers' closest pair: t, cosine | one cluster more: weakest pair t, cosine |"
          "\n|---|---:|---:|---|---|")
    for clip in clips:
        regions, ((embs, times), _), _, _ = cached[clip.id]
        speakers = sorted({t.speaker for t in clip.reference})
        overlap = np.array([[sum(max(0.0, min(e, t.end) - max(s, t.start)) for t in clip.reference if t.speaker == who)
                             for who in speakers] for s, e in times])
        estimated = spectral_clusters(embs, None, 1, config.max_speakers, config.prune_fraction, config.min_pruned)
        k = int(estimated.max()) + 1
        more = spectral_clusters(embs, k + 1, 1, config.max_speakers, config.prune_fraction, config.min_pruned)
        (t_ref, cos_ref), (t_more, cos_more) = closest_pair(embs, overlap.argmax(axis=1)), closest_pair(embs, more)
        print(f"| {clip.id} | {k} | {len(speakers)} | {t_ref:.1f}, {cos_ref:.2f} | {t_more:.1f}, {cos_more:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("data", type=Path)
    p.add_argument("settings", nargs="*")
    p.add_argument("--limit", type=int)
    p.add_argument("--cache", type=Path, default=Path("runs/speaker-count"))
    p.add_argument("--oracle-count", action="store_true")
    p.add_argument("--separation", action="store_true", help="per clip: could the clusters' statistics count better?")
    args = p.parse_intermixed_args()  # settings may follow the flags
    try:
        settings = {s: setting(s) for s in args.settings}  # a bad setting fails before any work
    except UserError as e:
        raise SystemExit(str(e)) from None
    clips = load_dataset(args.data)[: args.limit]
    cached = cached_inputs(clips, args.cache / f"{args.data.name}.pkl")
    if args.separation:
        return separations(clips, cached, DiarizerConfig())
    runs = [("default", DiarizerConfig(), False)] + ([("true count", DiarizerConfig(), True)] if args.oracle_count else [])
    runs += [(name, config, False) for name, config in settings.items()]
    print("| setting | WER | cpWER | Δcp | count error (estimated − true: clips) |\n|---|---:|---:|---:|---|")
    for name, config, oracle in runs:
        agg, off = score(clips, cached, config, oracle)
        errors = ", ".join(f"{k:+d}: {n}" for k, n in sorted(off.items()))
        print(f"| {name} | {agg['wer']:.2f} | {agg['cpwer']:.2f} | {agg['cpwer'] - agg['wer']:.2f} | {errors} |", flush=True)


if __name__ == "__main__":
    main()
