#!/usr/bin/env bash
# The decoder-only model on one GPU: 50 training steps in bf16 with LoRA and gradient checkpointing,
# then one clip decoded, printing the step time and the GPU's peak memory.
#
#   bash scripts/gpu_smoke.sh [LLM]     # LLM: smollm2-135m (packaged, default) or a local HF directory
#
# Needs the README's setup with a CUDA build of torch 2.13.0 in .venv. Simulates 8 short clips into
# runs/gpu-smoke/data first (a few minutes on the CPU); set STEPS to change the 50.
set -euo pipefail
cd "$(dirname "$0")/.."
LLM="${1:-smollm2-135m}"
STEPS="${STEPS:-50}"
OUT=runs/gpu-smoke
PY=.venv/bin/python
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: torch sees no GPU (install a CUDA build of torch 2.13.0)')"
[ -f "$OUT/data/simulation.json" ] || $PY -m speakerlm simulate --out "$OUT/data" --conversations 8 --split train \
    --speakers 2-3 --duration 20-30 --seed 5
rm -rf "$OUT/run"
$PY -m speakerlm train --data "$OUT/data" --out "$OUT/run" --backbone decoder --llm "$LLM" --llm-dtype bfloat16 \
    --lora-rank 16 --train-llm --gradient-checkpointing --stage 4 --steps "$STEPS" --warmup 5 --lr 2e-4 \
    --eval-every 0 --save-every "$STEPS"
$PY - "$OUT" <<'EOF'
import json, statistics, sys, torch
from pathlib import Path
from speakerlm.checkpoint import load_model
from speakerlm.decoding import decode
from speakerlm.train import TrainConfig, make_example, prepare_inputs, training_clips
import random

out = Path(sys.argv[1])
log = [json.loads(l) for l in (out / "run" / "log.jsonl").read_text().splitlines()]
steps = [r["seconds"] for r in log if "seconds" in r]
losses = [r["loss"] for r in log if "loss" in r]
peak = max(r.get("peak_gpu_mib", 0) for r in log)
print(f"steps {len(steps)}  median step {statistics.median(steps):.3f} s  loss {losses[0]:.3f} -> {losses[-1]:.3f}"
      f"  peak GPU memory in training {peak} MiB")
model = load_model(out / "run" / "checkpoint").cuda()
clip = prepare_inputs(model, training_clips(out / "data", TrainConfig())[:1], out / "features-decode", progress=False)[0]
clip.device = torch.device("cuda")
torch.set_default_device("cuda")
torch.cuda.reset_peak_memory_stats()
turns = decode(model, make_example(clip, "no", random.Random(0)), max_new_tokens=120)
print("decoded:", " | ".join(f"{t.speaker}: {t.text}" for t in turns))
print(f"peak GPU memory while decoding {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
EOF
