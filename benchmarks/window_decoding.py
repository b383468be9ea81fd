"""Pretrained Whisper on the SpeakerLM engine's windows (speech cut at pauses into ≤ 20 s pieces, each
decoded alone), decoded four ways: how much of the model's gap to long-form faster-whisper the window
decoding itself costs, and which of Whisper's decoding habits win it back.

    .venv/bin/python benchmarks/window_decoding.py data/ood data/real [--window 20]

Rows: transformers `generate` on the PyTorch rebuild (greedy, `<|notimestamps|>`: the prompt the
model is trained with); faster-whisper greedy at temperature 0 only; with Whisper's temperature
fallback; and with the fallback in timestamp mode. One WER per set (No speakers), the text of each
window joined.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from speakerlm.audio import SAMPLE_RATE
from speakerlm.data.datasets import load_dataset
from speakerlm.decoding import FALLBACK_TEMPERATURES
from speakerlm.metrics import aggregate, score_clip
from speakerlm.pretrained.fast_whisper import COMPUTE_TYPE, ct2_dir
from speakerlm.pretrained.whisper import load_whisper, transcribe_window
from speakerlm.turns import Turn
from speakerlm.vad import group_regions, speech_regions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="+", type=Path)
    ap.add_argument("--window", type=float, default=20.0, help="longest window, seconds (the engine's: 20)")
    ap.add_argument("--whisper", default="tiny.en")
    args = ap.parse_args()
    from faster_whisper import WhisperModel

    model, processor = load_whisper(args.whisper)
    fw = WhisperModel(str(ct2_dir(args.whisper)), device="cpu", compute_type=COMPUTE_TYPE, cpu_threads=1,
                      local_files_only=True)

    def faster(piece, temperature, timestamps=False):
        segments, _ = fw.transcribe(piece, beam_size=1, vad_filter=False, condition_on_previous_text=False,
                                    without_timestamps=not timestamps, temperature=temperature)
        return " ".join(s.text.strip() for s in segments)

    ways = {"transformers generate, greedy": lambda p: transcribe_window(model, processor, p),
            "faster-whisper greedy, temperature 0": lambda p: faster(p, 0.0),
            "faster-whisper greedy, temperature fallback": lambda p: faster(p, FALLBACK_TEMPERATURES),
            "faster-whisper greedy, fallback, timestamp mode": lambda p: faster(p, FALLBACK_TEMPERATURES, timestamps=True)}
    print(f"| data | decoding of the {args.window:g} s windows | WER |\n|---|---|---:|")
    for data in args.data:
        clips = load_dataset(data)
        waves = [clip.audio.load() for clip in clips]
        windows = [group_regions(speech_regions(w), args.window) for w in waves]
        for name, way in ways.items():
            scores = []
            for clip, wave, cuts in zip(clips, waves, windows):
                text = " ".join(way(wave[int(c.start * SAMPLE_RATE) : int(c.end * SAMPLE_RATE)]) for c in cuts)
                scores.append(score_clip(clip.reference, [Turn("spk 0", text)], registered=False))
            print(f"| {data.name} | {name} | {aggregate(scores)['wer']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
