"""Model folders: `config.json` (the `SpeakerLMConfig`) + `trained.safetensors` (only the tensors that
training changed; the pretrained parts come from their packages). Also the two transformations of a
trained model: WiSE-FT mixing with the pretrained LLM (for export).
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Optional

import torch

from speakerlm.audio import Pathlike
from speakerlm.errors import UserError
from speakerlm.model import SpeakerLM, SpeakerLMConfig

BUNDLED = Path(__file__).parent / "bundled"  # the model shipped inside the package


def bundled_model() -> Optional[str]:
    """The model folder shipped inside the package, if this build has one."""
    return str(BUNDLED) if (BUNDLED / "trained.safetensors").exists() else None


def read_config(path: Pathlike) -> SpeakerLMConfig:
    """A model folder's config, or a one-line error if the folder is not a SpeakerLM model."""
    path = Path(path)
    if not (path / "config.json").is_file() or not (path / "trained.safetensors").is_file():
        raise UserError(f"{path}: not a SpeakerLM model (needs config.json and trained.safetensors); "
                        "pass a `speakerlm train` checkpoint or a `speakerlm export` folder")
    try:
        values = json.loads((path / "config.json").read_text())
        known = {f.name for f in fields(SpeakerLMConfig)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown settings {unknown}")
        return SpeakerLMConfig(**values)
    except (ValueError, TypeError) as e:
        raise UserError(f"{path / 'config.json'}: not a SpeakerLM config ({e})") from None


def trained_state_dict(model: SpeakerLM) -> dict[str, torch.Tensor]:
    """Only what training changed (this stage or an earlier one), never the pretrained weights."""
    names = model.trained_names()
    return {n: t.detach().clone() for n, t in model.state_dict().items() if n in names}


def save(model: SpeakerLM, path: Pathlike, half: bool = False) -> None:
    """config.json + trained.safetensors, written atomically; `half` stores float16 (half the size,
    loaded back into float32)."""
    from safetensors.torch import save_file

    from speakerlm.cache import atomic_path, write_text_atomic

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with atomic_path(path / "trained.safetensors") as tmp:
        save_file({k: (v.half() if half else v).contiguous() for k, v in trained_state_dict(model).items()}, str(tmp))
    write_text_atomic(path / "config.json", json.dumps(asdict(model.config), indent=2) + "\n")


def load_model(path: Pathlike) -> SpeakerLM:
    """Rebuild from config (pretrained parts from their packages) and load the trained tensors;
    safetensors only, so loading never unpickles anything."""
    from safetensors.torch import load_file

    model = SpeakerLM(read_config(path))
    trained = load_file(str(Path(path) / "trained.safetensors"))
    missing = {n for n, p in model.named_parameters() if p.requires_grad} - set(trained)
    if missing:
        raise UserError(f"{path}: the model's tensors do not fit its config (missing {sorted(missing)[:3]})")
    load_trained(model, trained)
    return model.eval()


def load_trained(model: SpeakerLM, tensors: dict[str, torch.Tensor]) -> None:
    """Load trained tensors, possibly saved by a model of another curriculum stage: a plain weight
    becomes the base layer of the LoRA adapter that wraps it here (stage 4 adds LoRA to stage 2's
    decoder). They are kept in every later checkpoint (`model.carried`)."""
    own = model.state_dict()
    renamed = {}
    for name, t in tensors.items():
        module, _, kind = name.rpartition(".")  # kind: weight or bias
        wrapped = f"{module}.base_layer.{kind}"
        renamed[wrapped if name not in own and wrapped in own else name] = t
    unexpected = set(renamed) - set(own)
    if unexpected:
        raise UserError(f"trained tensors this model does not have: {sorted(unexpected)[:3]}; "
                        "was the checkpoint made with another backbone or config?")
    model.load_state_dict(renamed, strict=False)
    model.carried |= set(renamed)


def mix_llm_with_pretrained(model: SpeakerLM, alpha: float) -> None:
    """Weight-space ensemble of the fine-tuned LLM with the pretrained one it started from (WiSE-FT,
    Wortsman et al. 2022): each trained LLM weight becomes pretrained + alpha · (trained − pretrained);
    a LoRA adapter is scaled by alpha. Fine-tuning on TTS voices moves the decoder away from what made
    it robust on real speech; mixing keeps part of both. alpha = 1 changes nothing."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    llm = model.backbone.llm
    prefix = next(f"{name}." for name, module in model.named_modules() if module is llm)
    pretrained = SpeakerLM(model.config).state_dict()  # the packaged weights (adapters: fresh init)
    mixed = {}
    for name, weight in trained_state_dict(model).items():
        if not name.startswith(prefix) or "lora_A" in name:
            continue  # heads and projectors have no pretrained value; lora_B alone scales the update
        base = torch.zeros_like(weight) if "lora_B" in name else pretrained[name]
        mixed[name] = base + alpha * (weight - base)
    model.load_state_dict(mixed, strict=False)
