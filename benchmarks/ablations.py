"""Inference-time ablations of a trained SpeakerLM checkpoint on a dataset, through the evaluation
harness: the same weights with one mechanism switched off at inference.

    .venv/bin/python benchmarks/ablations.py data/dev --model speakerlm/bundled --limit 20 \
        --ablations full,no-presence,no-stream,no-discovery,posthoc --mode all --distractors 10 --out runs/ablate

- full          the engine as shipped (speaker discovery, pointer with presence bias, frame stream)
- no-presence   pointer without the enrolled-voice presence bias
- no-stream     no frame-level speaker stream in the audio memory (nor presence, which reads it)
- no-discovery  unenrolled voices labelled by the model alone (no clustering pass first)
- posthoc       the naming baseline: no registration in the prompt, names by voiceprint afterwards
- enrolment-voiceprints  matched enrolled people keep their enrolment voiceprint, not one taken from the recording (the default)

A switch removed only at inference measures what the trained model relies on, not what a model
trained without it would reach; training-time ablations need `speakerlm train --no-...`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from speakerlm import evaluate as ev
from speakerlm.datasets import load_dataset
from speakerlm.model import SpeakerLM
from speakerlm.transcribe import TranscribeOptions

ENGINE = {"full": {}, "no-presence": {}, "no-stream": {}, "no-discovery": dict(discover_speakers=False),
          "posthoc": dict(discover_speakers=False, naming="posthoc"),
          "enrolment-voiceprints": dict(enrolled_from_recording=False)}
MODEL = {"no-presence": dict(slot_presence=False), "no-stream": dict(frame_speaker_stream=False, slot_presence=False)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", type=Path)
    p.add_argument("--model", required=True)
    p.add_argument("--ablations", default=",".join(ENGINE))
    p.add_argument("--mode", default="all")
    p.add_argument("--distractors", type=int, default=10)
    p.add_argument("--limit", type=int)
    p.add_argument("--out", type=Path, default=Path("runs/ablations"))
    args = p.parse_args()
    clips = load_dataset(args.data)[: args.limit]
    original_load = SpeakerLM.load
    tables = []
    for name in args.ablations.split(","):
        def load(path, _override=MODEL.get(name, {})):
            model = original_load(path)
            model.config = replace(model.config, **_override)
            return model

        SpeakerLM.load = staticmethod(load)
        system = ev.System(f"speakerlm {name}", TranscribeOptions(engine="speakerlm", model=args.model, **ENGINE[name]))
        out = args.out / name
        out.mkdir(parents=True, exist_ok=True)
        runs = ev.evaluate([system], clips, args.mode, args.distractors, 0, log=out / ev.LOG_NAME, progress=True)
        ev.write_reports(runs, out, {"dataset": str(args.data), "ablation": name}, ())
        tables.append(ev.report_markdown(runs, str(args.data), ()))
        print(tables[-1], flush=True)
    SpeakerLM.load = original_load
    sys.stdout.write("\n".join(tables))


if __name__ == "__main__":
    main()
