"""Which speaker encoder separates voices better? CAM++ vs GE2E on distinct TTS voices and on the real
human voices of Debian's pocketsphinx-testdata. Prints mean same/different-speaker cosine and the
pairwise equal-error rate (EER) per encoder and data set.

    .venv/bin/python benchmarks/speaker_encoders.py
"""

from __future__ import annotations

import itertools
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from speakerlm.audio import load_audio
from speakerlm.pretrained.speaker_encoder import load_speaker_encoder

SENTENCES = [
    "The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.", "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.", "The juice of lemons makes fine punch.",
]
# mutually distinct voices per ecosystem.md §5.2 (different recorded speakers, espeak variants that
# the embeddings separate, sox pitch shifts of flite voices)
TTS_VOICES = {
    "flite rms": ["flite", "-voice", "rms"], "flite slt": ["flite", "-voice", "slt"],
    "flite awb": ["flite", "-voice", "awb"], "flite kal16": ["flite", "-voice", "kal16"],
    "espeak klatt": ["espeak-ng", "-v", "en-us+klatt"], "espeak f2": ["espeak-ng", "-v", "en+f2"],
    "espeak Annie": ["espeak-ng", "-v", "en-us+Annie"], "espeak us": ["espeak-ng", "-v", "en-us"],
    "rms +300c": ["flite", "-voice", "rms", "|pitch 300"], "slt -400c": ["flite", "-voice", "slt", "|pitch -400"],
}
REAL = Path("/usr/share/pocketsphinx/test/data")


def synth(cmd: list[str], text: str, out: Path) -> Path:
    effect = [c[1:].split() for c in cmd if c.startswith("|")]
    cmd = [c for c in cmd if not c.startswith("|")]
    raw = out.with_suffix(".raw.wav")
    if cmd[0] == "flite":
        subprocess.run(cmd + ["-t", text, "-o", str(raw)], check=True)
    else:
        subprocess.run(cmd + ["-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", str(out)] + sum(effect, []) + ["norm", "-3"], check=True)
    return out


def eer(same: np.ndarray, diff: np.ndarray) -> tuple[float, float]:
    """Equal-error rate and its threshold: where false rejections of `same` equal false accepts of `diff`."""
    thresholds = np.unique(np.concatenate([same, diff]))
    frr = np.array([np.mean(same < t) for t in thresholds])
    far = np.array([np.mean(diff >= t) for t in thresholds])
    i = int(np.argmin(np.abs(frr - far)))
    return (frr[i] + far[i]) / 2, float(thresholds[i])


def score(embs: dict[str, list[np.ndarray]]) -> dict:
    items = [(spk, e) for spk, es in embs.items() for e in es]
    same, diff = [], []
    for (a, ea), (b, eb) in itertools.combinations(items, 2):
        (same if a == b else diff).append(float(ea @ eb))
    same, diff = np.array(same), np.array(diff)
    rate, threshold = eer(same, diff)
    return {"speakers": len(embs), "utterances": len(items), "same": same.mean(), "diff": diff.mean(),
            "diff_max": diff.max(), "eer": rate, "threshold": threshold}


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    tts = {v: [synth(cmd, s, tmp / f"{i}_{k}.wav") for k, s in enumerate(SENTENCES)] for i, (v, cmd) in enumerate(TTS_VOICES.items())}
    real = {"librivox reader": sorted(REAL.glob("librivox/*.wav")), "cards speaker": sorted(REAL.glob("cards/*.wav"))}
    print("| encoder | data | speakers | utterances | same-speaker cos | different-speaker cos (max) | EER | threshold |")
    print("|---|---|---|---|---|---|---|---|")
    for name in ("campp", "ge2e"):
        enc = load_speaker_encoder(name)
        for label, data in (("TTS voices", tts), ("real voices (pocketsphinx)", real)):
            embs = {spk: [enc.embed(load_audio(p)) for p in paths] for spk, paths in data.items()}
            r = score(embs)
            print(f"| {name} | {label} | {r['speakers']} | {r['utterances']} | {r['same']:.3f} | {r['diff']:.3f} ({r['diff_max']:.3f}) "
                  f"| {r['eer']:.1%} | {r['threshold']:.2f} |")


if __name__ == "__main__":
    main()
