"""Load time of every pretrained part: cold (first use: conversion into an empty cache) and cached
(a new process reading the converted safetensors). Each measurement runs in a fresh process, timed
after torch and transformers are imported (their import alone takes seconds).

    .venv/bin/python benchmarks/load_times.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

PARTS = {
    "Whisper tiny.en": "from speakerlm.pretrained.whisper import load_whisper as f; f('tiny.en')",
    "Whisper base": "from speakerlm.pretrained.whisper import load_whisper as f; f('base')",
    "CAM++": "from speakerlm.pretrained.speaker_encoder import CAMPlusPlus as f; f()",
    "GE2E": "from speakerlm.pretrained.speaker_encoder import GE2E as f; f()",
    "SmolLM2-135M": "from speakerlm.pretrained.llm import load_llm as f; f()",
    "silero-vad": "from speakerlm.vad import _silero as f; f()",
}


def timed(code: str, cache: str) -> float:
    script = f"import time, torch, transformers, safetensors.torch; {code.split(';')[0]}; t = time.perf_counter(); {code.split(';')[1]}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, "SPEAKERLM_CACHE": cache})
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    cold_cache = tempfile.mkdtemp()
    print("| part | cold (convert + load), s | cached load, s |")
    print("|---|---|---|")
    for name, code in PARTS.items():
        cold = timed(code, cold_cache)
        cached = timed(code, cold_cache)
        print(f"| {name} | {cold:.2f} | {cached:.2f} |")


if __name__ == "__main__":
    main()
