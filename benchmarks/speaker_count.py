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
"""
from __future__ import annotations

import argparse
import pickle
from collections import Counter
from pathlib import Path

import numpy as np

from speakerlm.audio import SAMPLE_RATE
from speakerlm.data.datasets import load_dataset
from speakerlm.diarize import FRAMES_PER_SECOND, Diarizer, DiarizerConfig, SpeakerCount, pooled_windows
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("data", type=Path)
    p.add_argument("settings", nargs="*")
    p.add_argument("--limit", type=int)
    p.add_argument("--cache", type=Path, default=Path("runs/speaker-count"))
    p.add_argument("--oracle-count", action="store_true")
    args = p.parse_intermixed_args()  # settings may follow the flags
    try:
        settings = {s: setting(s) for s in args.settings}  # a bad setting fails before any work
    except UserError as e:
        raise SystemExit(str(e)) from None
    clips = load_dataset(args.data)[: args.limit]
    cached = cached_inputs(clips, args.cache / f"{args.data.name}.pkl")
    runs = [("default", DiarizerConfig(), False)] + ([("true count", DiarizerConfig(), True)] if args.oracle_count else [])
    runs += [(name, config, False) for name, config in settings.items()]
    print("| setting | WER | cpWER | Δcp | count error (estimated − true: clips) |\n|---|---:|---:|---:|---|")
    for name, config, oracle in runs:
        agg, off = score(clips, cached, config, oracle)
        errors = ", ".join(f"{k:+d}: {n}" for k, n in sorted(off.items()))
        print(f"| {name} | {agg['wer']:.2f} | {agg['cpwer']:.2f} | {agg['cpwer'] - agg['wer']:.2f} | {errors} |", flush=True)


if __name__ == "__main__":
    main()
