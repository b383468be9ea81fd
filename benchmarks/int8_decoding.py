"""Decoding time of one window with float32 and int8 weights (`checkpoint.quantize_for_inference`),
interleaved so that both see the same machine load.

    .venv/bin/python benchmarks/int8_decoding.py AUDIO [--model DIR] [--seconds 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from speakerlm.audio import load_audio
from speakerlm.checkpoint import bundled_model, load_model, quantize_for_inference
from speakerlm.decoding import decode
from speakerlm.features import frame_speaker_stream, log_mel_windows, n_frames
from speakerlm.model import Example
from speakerlm.pretrained.speaker_encoder import load_speaker_encoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("audio")
    ap.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    ap.add_argument("--seconds", type=float, default=20.0, help="decode the first this many seconds")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    path = args.model or bundled_model()
    models = {"float32": load_model(path), "int8": quantize_for_inference(load_model(path), ("decoder", "proj_out"))}
    wave = load_audio(args.audio)[: int(args.seconds * 16000)]
    frames = n_frames(wave)
    with torch.inference_mode():
        audio = models["float32"].encode_audio(log_mel_windows(models["float32"].backbone.processor, wave), frames)
    example = Example(audio, frame_speaker_stream(load_speaker_encoder("campp"), wave, frames), [])
    for _ in range(args.repeats):
        for name, model in models.items():
            started = time.perf_counter()
            turns = decode(model, example, max_new_tokens=int(40 + 8 * args.seconds))
            print(f"{name}: {time.perf_counter() - started:.2f} s, {sum(len(t.text.split()) for t in turns)} words, "
                  f"{torch.get_num_threads()} thread(s)", flush=True)


if __name__ == "__main__":
    main()
