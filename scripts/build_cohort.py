"""Build the bundled score-normalisation cohort: one CAM++ voiceprint per voice of the simulator's
*test* split (never trained on, never in a dev, ood or real set), L2-normalised, float16.

    .venv/bin/python scripts/build_cohort.py [--bank DIR] [--out speakerlm/bundled/cohort-campp.npy]

The voice bank's probe-sentence embeddings are what it reads (`speakerlm simulate --build-bank` makes
them); `voiceprints.match_names` scores each cluster against each enrolled voiceprint relative to these
voices (S-norm).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from speakerlm.cache import atomic_path
from speakerlm.data.voices import VoiceBank
from speakerlm.voiceprints import unit_rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bank", type=Path, help="voice bank folder (default: the simulator's)")
    p.add_argument("--out", type=Path, default=Path("speakerlm/bundled/cohort-campp.npy"))
    args = p.parse_args()
    bank = VoiceBank.open(args.bank)
    measured = {v: bank.root / "embeddings" / f"{v.id}.npy" for v in bank.split("test")}  # probe sentences' embeddings
    voices = [v for v, path in measured.items() if path.exists()]
    if not voices:
        raise SystemExit(f"{bank.root}: no measured test-split voices; run `speakerlm simulate --build-bank` first")
    prints = unit_rows(np.stack([np.load(measured[v]).mean(axis=0) for v in voices]))
    with atomic_path(args.out) as tmp, open(tmp, "wb") as f:
        np.save(f, prints.astype(np.float16))
    print(f"{args.out}: {len(voices)} voices ({len({v.person for v in voices})} persons)")


if __name__ == "__main__":
    main()
