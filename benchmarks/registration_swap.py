"""Does the model use the enrolment audio? Transcribe each dev clip with its speakers enrolled, then
again with two speakers' enrolment embeddings swapped (names kept): if registration works, the names
in the output swap too. Prints, over all turns of the two swapped speakers, how many moved to the
other name, stayed, or went elsewhere.

    .venv/bin/python benchmarks/registration_swap.py DATA --model CHECKPOINT [--limit 20]
"""

from __future__ import annotations

import argparse

from speakerlm.data.datasets import load_dataset
from speakerlm.engines.speakerlm import SpeakerLMEngine, SpeakerLMEngineConfig
from speakerlm.transcribe import TranscribeOptions
from speakerlm.voiceprints import mean_voiceprint


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--model", required=True)
    ap.add_argument("--limit", type=int, default=20)
    args = ap.parse_args()
    # no speaker discovery: names must come from the model's use of the registration, not from clustering
    engine = SpeakerLMEngine(TranscribeOptions(engine="speakerlm", model=args.model),
                             SpeakerLMEngineConfig(discover_speakers=False))
    swapped = stayed = other = 0
    for clip in load_dataset(args.data)[: args.limit]:
        speakers = clip.speakers
        if len(speakers) < 2 or not all(s in clip.enrolment for s in speakers):
            continue
        names = {s: f"P{i}" for i, s in enumerate(speakers)}
        prints = {names[s]: mean_voiceprint([span.load() for span in clip.enrolment[s]]) for s in speakers}
        wave = clip.audio.load()
        a, b = names[speakers[0]], names[speakers[1]]
        before = engine.transcribe(wave, dict(prints))
        after = engine.transcribe(wave, {**prints, a: prints[b], b: prints[a]})
        # compare turn by turn where the two runs wrote the same number of turns
        for t0, t1 in zip(before, after):
            if t0.speaker in (a, b):
                if t1.speaker == ({a: b, b: a}[t0.speaker]):
                    swapped += 1
                elif t1.speaker == t0.speaker:
                    stayed += 1
                else:
                    other += 1
    total = max(1, swapped + stayed + other)
    print(f"turns of the swapped pair: {total}; names swapped {swapped / total:.1%}, unchanged {stayed / total:.1%}, "
          f"other {other / total:.1%}")


if __name__ == "__main__":
    main()
