"""SpeakerLM speed on this machine, per backbone: training step time for one 45 s clip and for a batch,
generation tokens/s, RTF of inference on a 45 s clip (encoder + speaker stream + decoding), peak memory.

    .venv/bin/python benchmarks/model_speed.py [--backbones whisper,decoder] [--threads 2]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from speakerlm.audio import SAMPLE_RATE
from speakerlm.decoding import decode
from speakerlm.features import frame_speaker_stream, log_mel_windows, n_frames
from speakerlm.model import Example, SpeakerLM, SpeakerLMConfig
from speakerlm.pretrained.speaker_encoder import load_speaker_encoder
from speakerlm.train import TrainConfig, set_trainable
from speakerlm.turns import Turn, target_turns

SECONDS = 45.0
WORDS = "the quick brown fox jumps over the lazy dog and then it runs far away".split()


def clip_inputs(model: SpeakerLM, wave: np.ndarray):
    frames = n_frames(wave)
    with torch.no_grad():
        audio = model.encode_audio(log_mel_windows(model.backbone.processor, wave), frames)
    return audio, frame_speaker_stream(load_speaker_encoder(model.config.speaker_encoder), wave, frames)


LORA_RANK = {"whisper": 0, "decoder": 16}  # Whisper's decoder trains its own weights; a larger LLM trains LoRA


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbones", default="whisper,decoder")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(int(SECONDS * SAMPLE_RATE))).astype(np.float32)  # speed does not depend on content
    # a 45 s clip's transcript: ~120 words in 12 turns of 3 speakers
    turns = [Turn(f"s{i % 3}", " ".join(WORDS[(i + k) % len(WORDS)] for k in range(10))) for i in range(12)]
    print("| backbone | train step, 1 clip (s) | train step, batch of 4 (s) | generation tokens/s | RTF 45 s | peak RSS (MB) |")
    print("|---|---|---|---|---|---|")
    for backbone in args.backbones.split(","):
        config = SpeakerLMConfig(backbone=backbone, lora_rank=LORA_RANK[backbone])
        model = set_trainable(SpeakerLM(config), TrainConfig(model=config, train_llm=True))  # the LLM trains too
        audio, stream = clip_inputs(model, wave)
        ex = Example(audio, stream, [], target_turns(turns))
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        step = {}
        for n in (1, 4):
            for repeat in range(2):  # the first pass warms up allocations
                t = time.perf_counter()
                _, loss = model([ex] * n)
                loss.backward()
                opt.step()
                opt.zero_grad()
                step[n] = time.perf_counter() - t
        model.eval()
        t = time.perf_counter()
        inputs = clip_inputs(model, wave)
        out = decode(model, Example(*inputs, []), max_new_tokens=200)
        total = time.perf_counter() - t
        t = time.perf_counter()
        out = decode(model, Example(*inputs, []), max_new_tokens=200)
        gen = time.perf_counter() - t
        tokens = sum(len(model.backbone.tokenize(" " + tr.text)) + 2 for tr in out)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"| {backbone} | {step[1]:.2f} | {step[4]:.2f} | {tokens / gen:.1f} ({tokens} tokens) | {total / SECONDS:.3f} | {peak:.0f} |")


if __name__ == "__main__":
    main()
