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

from speakerlm import checkpoint
from speakerlm import evaluate as ev
from speakerlm.data.datasets import load_dataset
from speakerlm.engines.speakerlm import SpeakerLMEngineConfig
from speakerlm.model import SpeakerLM
from speakerlm.transcribe import TranscribeOptions

ENGINE = {"full": {}, "no-presence": {}, "no-stream": {}, "no-discovery": dict(discover_speakers=False),
          "posthoc": dict(discover_speakers=False, naming="posthoc"),
          "enrolment-voiceprints": dict(enrolled_from_recording=False)}
MODEL = {"no-presence": dict(slot_presence=False), "no-stream": dict(frame_speaker_stream=False, slot_presence=False)}


def load_with(path, override: dict, original_load=checkpoint.load_model) -> SpeakerLM:
    """The model folder at `path`, its config changed by `override`: the model is rebuilt from the
    changed config and given the trained tensors it still has a place for (without slot presence, the
    presence layer's are left out). No override: the model as saved."""
    if not override:
        return original_load(path)
    from safetensors.torch import load_file

    model = SpeakerLM(replace(checkpoint.read_config(path), **override))
    own = model.state_dict()
    tensors = load_file(str(Path(path) / "trained.safetensors"))

    def kept(name: str) -> bool:  # a plain weight may load into the base layer of a LoRA adapter here
        module, _, kind = name.rpartition(".")
        return name in own or f"{module}.base_layer.{kind}" in own

    checkpoint.load_trained(model, {n: t for n, t in tensors.items() if kept(n)})
    return model.eval()


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
    original_load = checkpoint.load_model
    tables = []
    try:
        for name in args.ablations.split(","):
            # the engine loads its model through speakerlm.checkpoint.load_model (imported when it is built)
            checkpoint.load_model = lambda path, _override=MODEL.get(name, {}): load_with(path, _override, original_load)
            system = ev.System(f"speakerlm {name}", TranscribeOptions(engine="speakerlm", model=args.model),
                               SpeakerLMEngineConfig(**ENGINE[name]))
            out = args.out / name
            out.mkdir(parents=True, exist_ok=True)
            runs = ev.evaluate([system], clips, args.mode, args.distractors, 0, log=out / ev.LOG_NAME, progress=True)
            ev.write_reports(runs, out, {"dataset": str(args.data), "ablation": name}, ())
            tables.append(ev.report_markdown(runs, str(args.data), ()))
            print(tables[-1], flush=True)
    finally:
        checkpoint.load_model = original_load
    sys.stdout.write("\n".join(tables))


if __name__ == "__main__":
    main()
