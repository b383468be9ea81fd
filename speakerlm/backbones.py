"""The LLM behind SpeakerLM: two small classes behind one interface, owning every backbone difference.

- `WhisperBackbone`: the pretrained Whisper decoder plays the LLM; audio enters by cross-attention;
  registration blocks sit in the `<|startofprev|>` prompt region, one position per speaker (P(e) + a
  learned slot embedding, no name tokens: Whisper's decoder has 448 positions and 100 distractors must
  fit; the pointer does not need the name in the prompt).
- `DecoderOnlyBackbone` (the paper's design): any Hugging Face causal LM; audio tokens (the audio
  projector's output) and registration blocks (`name <start>[embedding]<end>`, the paper's Fig. 2) are
  spliced into a ChatML prompt's `inputs_embeds`; LoRA through peft.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


TIME_STEP = 0.02  # seconds per Whisper time token

class AudioProjector(nn.Module):
    """2-layer Transformer at the encoder width, then a stride-2 CNN to the LLM width (MinMo's
    projector shape, paper §3.1): time ×2 down, 50 → 25 Hz."""

    def __init__(self, d_in: int, d_out: int, layers: int = 2):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_in, nhead=max(1, d_in // 64), dim_feedforward=2 * d_in,
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers)
        self.cnn = nn.Conv1d(d_in, d_out, kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d_in) → (B, ceil(T/2), d_out)."""
        if x.shape[1] % 2:
            x = F.pad(x, (0, 0, 0, 1))
        return self.cnn(self.transformer(x).transpose(1, 2)).transpose(1, 2)


class Backbone(nn.Module):
    """What SpeakerLM needs from an audio encoder and an LLM."""

    d_model: int  # LLM width
    d_encoder: int  # audio encoder width
    processor: object  # pretrained.whisper.Processor: wave → log-mel, for the audio encoder
    audio_encoder: nn.Module  # Whisper's encoder (frozen until curriculum stage 3)
    llm: nn.Module  # the language model that LoRA wraps and stages 1 and 4 train
    lora_targets: tuple[str, ...]  # module names inside `llm` that LoRA adapts
    frozen_llm_prefixes: tuple[str, ...] = ()  # parameters of `llm` that training never changes
    turn_id: int  # token the LM emits to open a turn
    eos_id: int  # token that ends the transcript
    suppressed: tuple[int, ...] = ()  # tokens decoding never emits (e.g. Whisper's special and timestamp tokens)
    max_positions: int = 1 << 30  # prompt + response positions the LLM can hold
    time_ids: range = range(0)  # the tokens that write times, where the model writes turn times

    def time_token(self, seconds: float) -> int:
        """The token that writes `seconds` (from the clip's start)."""
        raise NotImplementedError

    def token_time(self, token: int) -> float:
        """The seconds a token of `time_ids` writes."""
        raise NotImplementedError

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def tokenize(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode_tokens(self, ids: list[int]) -> str:
        raise NotImplementedError

    def prompt(self, audio: torch.Tensor, slot_embs: list[torch.Tensor], names: list[str], task: str = "sdr",
               language: Optional[str] = None) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(prompt embeddings (P, d), cross-attention memory (T, d_encoder) or None) for one clip;
        `task` "sdr" (who said what) or "asr" (the words only, curriculum stage 1)."""
        raise NotImplementedError

    def run(self, embeds: torch.Tensor, mask: torch.Tensor, memory: Optional[torch.Tensor], cache=None):
        """Causal pass over (B, L, d) embeddings → (hidden (B, L, d), cache)."""
        raise NotImplementedError

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def add_int8_output_layer(self) -> None:
        """Inference only: an int8 copy of the output layer for greedy decoding's shortlist (where a
        backbone has one; decoding._greedy_choice)."""


class WhisperBackbone(Backbone):
    lora_targets = ("q_proj", "v_proj", "out_proj")
    # the token embeddings (tied to the output layer) stay frozen: 20 M of the decoder's 30 M parameters,
    # and leaving them out keeps a checkpoint small
    frozen_llm_prefixes = ("embed_tokens",)

    def __init__(self, config):
        super().__init__()
        from speakerlm.pretrained.whisper import load_whisper

        whisper, self.processor = load_whisper(config.whisper)
        self.encoder, self.decoder, self.proj_out = whisper.model.encoder, whisper.model.decoder, whisper.proj_out
        self.decoder.to(getattr(torch, config.llm_dtype))  # the LLM's dtype; the encoder stays float32
        self.proj_out.to(getattr(torch, config.llm_dtype))
        self.d_model = self.d_encoder = whisper.config.d_model
        ids = {t: self.processor.tokenizer.convert_tokens_to_ids(t) for t in
               ("<|startofprev|>", "<|startoftranscript|>", "<|notimestamps|>", "<|startoflm|>", "<|endoftext|>",
                "<|transcribe|>")}
        self.sot_id, self.transcribe_id, self.notimestamps_id = (
            ids["<|startoftranscript|>"], ids["<|transcribe|>"], ids["<|notimestamps|>"])
        # a multilingual Whisper is told the language and the task after <|startoftranscript|>, as it was
        # trained; an English-only one takes neither
        self.multilingual = bool(whisper.generation_config.is_multilingual)
        self.languages = dict(getattr(whisper.generation_config, "lang_to_id", None) or {})
        self.prev_id, self.turn_id, self.eos_id = ids["<|startofprev|>"], ids["<|startoflm|>"], ids["<|endoftext|>"]
        self.slot_embedding = nn.Parameter(torch.zeros(self.d_model))  # marks a registration position
        # Whisper's time tokens <|0.00|> … <|30.00|> follow <|notimestamps|>, one per 0.02 s
        self.time_ids = range(self.notimestamps_id + 1, whisper.config.vocab_size) if config.timestamps else range(0)
        self.suppressed = [i for i in range(ids["<|startoftranscript|>"], whisper.config.vocab_size)
                           if i != self.turn_id and i not in self.time_ids]
        self.max_positions = whisper.config.max_target_positions
        self.output_int8 = None  # see add_int8_output_layer

    @property
    def audio_encoder(self) -> nn.Module:
        return self.encoder

    @property
    def llm(self) -> nn.Module:
        return self.decoder

    def embed_tokens(self, ids):
        return self.decoder.embed_tokens(ids)

    def tokenize(self, text):
        return self.processor.tokenizer.encode(text, add_special_tokens=False)

    def decode_tokens(self, ids):
        return self.processor.tokenizer.decode(ids, skip_special_tokens=True)

    def prefix_ids(self, language: Optional[str] = None, timestamps: bool = False) -> list[int]:
        """`<|startoftranscript|>` [`<|lang|>` `<|transcribe|>`] [`<|notimestamps|>`]: without the last,
        Whisper writes times, as in its own timestamp mode."""
        tail = [] if timestamps else [self.notimestamps_id]
        if not self.multilingual:
            if language not in (None, "en"):
                raise ValueError(f"language {language!r}: this Whisper is English-only; use a multilingual one (base)")
            return [self.sot_id, *tail]
        token = f"<|{language or 'en'}|>"
        if token not in self.languages:
            raise ValueError(f"language {language!r}: not one of Whisper's languages")
        return [self.sot_id, self.languages[token], self.transcribe_id, *tail]

    def task_prefix(self, task: str = "sdr", language: Optional[str] = None) -> list[int]:
        """The prefix `task` is prompted with: timestamp mode for "sdr" when the model writes times."""
        return self.prefix_ids(language, bool(self.time_ids) and task == "sdr")

    def prompt(self, audio, slot_embs, names, task="sdr", language=None):
        # registration blocks sit in the previous-text region; plain ASR is Whisper's own prompt
        parts = [] if task == "asr" else [self.embed_tokens(torch.tensor([self.prev_id]))]
        parts += [(e + self.slot_embedding)[None] for e in slot_embs]
        parts.append(self.embed_tokens(torch.tensor(self.task_prefix(task, language))))
        return torch.cat(parts), audio

    def time_token(self, seconds: float) -> int:
        return self.time_ids[int(min(max(round(seconds / TIME_STEP), 0), len(self.time_ids) - 1))]

    def token_time(self, token: int) -> float:
        return round((token - self.time_ids[0]) * TIME_STEP, 2)

    def run(self, embeds, mask, memory, cache=None):
        out = self.decoder(inputs_embeds=embeds, attention_mask=mask, encoder_hidden_states=memory,
                           cache=cache, use_cache=cache is not None)
        return out.last_hidden_state, out.past_key_values

    def logits(self, hidden):
        return self.proj_out(hidden)

    def add_int8_output_layer(self) -> None:
        """An int8 copy of the output layer (20 MB), with which greedy decoding scores all 51,864 tokens
        and then computes only the best few exactly (decoding._greedy_choice). Why: at a decoding step
        the float32 layer (80 MB, tied to the token embeddings) is read whole for a handful of rows, which
        is most of a step's memory traffic; the int8 copy reads a quarter of it. The float32 layer is
        read whole only here, to build the copy; afterwards only shortlisted rows are."""
        if not isinstance(self.proj_out, nn.Linear) or self.proj_out.weight.dtype != torch.float32:
            return  # a bf16 output layer keeps its own kernels
        import warnings

        from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

        weight = self.proj_out.weight.detach()
        scales = (weight.abs().amax(dim=1).clamp(min=1e-8) / 127).double()  # one scale per token's row
        with warnings.catch_warnings():  # torch.ao's eager API is deprecated for torchao, not installed here
            warnings.simplefilter("ignore")
            rows = torch.quantize_per_channel(weight, scales, torch.zeros(len(scales), dtype=torch.long), 0, torch.qint8)
            self.output_int8 = Int8Linear(weight.shape[1], weight.shape[0], bias_=False, dtype=torch.qint8)
            self.output_int8.set_weight_bias(rows, None)  # built here, not by quantize_dynamic: no float copy

    def output_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """The output layer's weight rows of `ids` (any shape) → (*ids.shape, d)."""
        return self.proj_out.weight[ids]

    def batch(self, prompts: list[torch.Tensor], memories: list[torch.Tensor], beams: int = 1) -> "WhisperBatch":
        return WhisperBatch(self.decoder, prompts, memories, beams)


class WhisperBatch:
    """Several clips run by the Whisper decoder in lockstep, one input per row each step, `beams` rows
    per clip (rows `c * beams` … `c * beams + beams - 1` are clip c's): prompts left-padded to one
    length, each row at its own positions, each clip's cross-attention masked to its own audio
    (memories differ in length). The rows of one clip share its audio's keys and values: their queries
    go to the cross-attention as one clip's query positions, which is the same attention (nothing in
    cross-attention is causal), so a beam search holds each clip's 12 MB of audio keys once. Written by
    hand around transformers' decoder layers because its `WhisperDecoder` has no cross-attention mask."""

    def __init__(self, decoder: nn.Module, prompts: list[torch.Tensor], memories: list[torch.Tensor], beams: int = 1):
        from transformers import DynamicCache, EncoderDecoderCache

        self.decoder, self.beams = decoder, beams
        n, width = max(len(p) for p in prompts), max(len(m) for m in memories)
        x = prompts[0].new_zeros(len(prompts), n, prompts[0].shape[-1])
        self.memory = memories[0].new_zeros(len(memories), width, memories[0].shape[-1])
        self.valid = torch.zeros(len(prompts), n, dtype=torch.bool)  # which positions hold an input
        heard = torch.zeros(len(memories), width, dtype=torch.bool)
        for i, (p, m) in enumerate(zip(prompts, memories)):
            x[i, n - len(p):], self.valid[i, n - len(p):] = p, True
            self.memory[i, : len(m)], heard[i, : len(m)] = m, True
        self.memory_mask = heard[:, None, None, :]
        self.next_position = torch.tensor([len(p) for p in prompts])
        if beams > 1:
            x, self.valid = x.repeat_interleave(beams, 0), self.valid.repeat_interleave(beams, 0)
            self.next_position = self.next_position.repeat_interleave(beams)
        positions = (torch.arange(n)[None] - (n - self.next_position)[:, None]).clamp(min=0)
        self.cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        self.last = self._run(x, positions)[:, -1]  # shape: (rows, d)

    def _run(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        past, (rows, q, d) = self.cache.get_seq_length(), x.shape
        keys, queries = torch.arange(past + q)[None], (past + torch.arange(q))[:, None]
        # causal; a padding position sees itself, so no row of the softmax is empty
        mask = (self.valid[:, None, None, :] | (keys == queries)) & (keys <= queries)  # (rows, 1, q, keys)
        h = x + self.decoder.embed_positions.weight[positions]
        for layer in self.decoder.layers:  # WhisperDecoderLayer.forward, the cross-attention per clip
            h = h + layer.self_attn(layer.self_attn_layer_norm(h), cache=self.cache, attention_mask=mask)[0]
            across = layer.encoder_attn_layer_norm(h).reshape(rows // self.beams, self.beams * q, d)
            across = layer.encoder_attn(across, key_value_states=self.memory, attention_mask=self.memory_mask,
                                        cache=self.cache)[0]
            h = h + across.reshape(rows, q, d)
            h = h + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(h))))
        return self.decoder.layer_norm(h)

    def step(self, embeds: torch.Tensor, taken: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(rows, d) next inputs → (rows, d) hidden states, stored in `last`. `taken` (rows,) bool: only
        these rows take their input; for the others the step is a padding position, as if not made."""
        taken = torch.ones(len(embeds), dtype=torch.bool) if taken is None else taken
        self.valid = torch.cat([self.valid, taken[:, None]], dim=1)
        positions = self.next_position[:, None].clone()
        self.next_position += taken.long()
        hidden = self._run(embeds[:, None], positions)[:, 0]
        self.last = torch.where(taken[:, None], hidden, self.last)
        return self.last

    def keep(self, clips: list[int], rows: Optional[list[int]] = None) -> None:
        """Go on with these clips (in increasing order) only, the others having finished, and with
        `rows` (the earlier row each new row continues; by default the kept clips' own rows): a beam
        search's kept beams, a row repeated where two beams grow from one. The audio's keys and values
        (the batch's largest tensors, 12 MB a clip) are moved up in place, not copied."""
        def move_up(tensor: torch.Tensor) -> torch.Tensor:
            for j, i in enumerate(clips):
                if i != j:
                    tensor[j] = tensor[i]
            return tensor[: len(clips)]

        if clips != list(range(len(self.memory))):
            for layer in self.cache.cross_attention_cache.layers:
                layer.keys, layer.values = move_up(layer.keys), move_up(layer.values)
            self.memory, self.memory_mask = move_up(self.memory), move_up(self.memory_mask)
        if rows is None:
            rows = [c * self.beams + b for c in clips for b in range(self.beams)]
        if rows == list(range(len(self.last))):
            return
        index = torch.tensor(rows)
        self.cache.self_attention_cache.reorder_cache(index)  # small: copied
        self.valid, self.next_position, self.last = self.valid[index], self.next_position[index], self.last[index]


class DecoderOnlyBackbone(Backbone):
    SYSTEM = "You are a helpful assistant."
    INSTRUCTIONS = {"sdr": "Transcribe by roles.",  # the paper's No/Match/Over-Regist instruction
                    "asr": "Transcribe the speech."}  # its stage-1 ASR alignment
    TURN_TOKEN = "<|speaker_turn|>"  # added to the tokenizer (llm.add_turn_token)
    lora_targets = ("q_proj", "v_proj", "k_proj", "o_proj")

    def __init__(self, config):
        super().__init__()
        from speakerlm.pretrained.llm import add_turn_token, load_llm
        from speakerlm.pretrained.whisper import load_whisper

        whisper, self.processor = load_whisper(config.whisper)  # the audio encoder stays float32
        self.audio_encoder = whisper.model.encoder
        self.d_encoder = whisper.config.d_model
        self.llm, self.tokenizer = load_llm(config.llm, config.llm_dtype)
        self.d_model = self.llm.config.hidden_size
        self.projector = AudioProjector(self.d_encoder, self.d_model, config.projector_layers)
        # the answer ends at the chat's end-of-turn (ChatML `<|im_end|>`, Qwen's and SmolLM2's EOS)
        vocab = self.tokenizer.get_vocab()
        self.eos_id = vocab["<|im_end|>"] if "<|im_end|>" in vocab else self.tokenizer.eos_token_id
        stops = {self.eos_id, self.tokenizer.eos_token_id, self.tokenizer.pad_token_id} - {None}
        self.turn_id = add_turn_token(self.tokenizer, self.llm, self.TURN_TOKEN, stops)
        self.head_ids = {task: self.tokenize(f"<|im_start|>system\n{self.SYSTEM}<|im_end|>\n<|im_start|>user\n{text}")
                         for task, text in self.INSTRUCTIONS.items()}
        self.start_ids, self.end_ids = self.tokenize("<start>"), self.tokenize("<end>")
        self.tail_ids = self.tokenize("<|im_end|>\n<|im_start|>assistant\n")

    def embed_tokens(self, ids):
        return self.llm.get_input_embeddings()(ids)

    def tokenize(self, text):
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode_tokens(self, ids):
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def prompt(self, audio, slot_embs, names, task="sdr", language=None):
        emb = lambda ids: self.embed_tokens(torch.tensor(ids, dtype=torch.long))
        parts = [emb(self.head_ids[task])]
        for name, e in zip(names, slot_embs):  # the paper's Fig. 2 block: name <start>[embedding]<end>
            parts += [emb(self.tokenize(f" {name}")), emb(self.start_ids), e[None], emb(self.end_ids)]
        parts += [emb(self.tokenize(" ")), emb(self.start_ids), self.projector(audio[None])[0], emb(self.end_ids),
                  emb(self.tail_ids)]
        return torch.cat(parts), None

    def run(self, embeds, mask, memory, cache=None):
        out = self.llm.model(inputs_embeds=embeds, attention_mask=mask, cache=cache, use_cache=cache is not None)
        return out.last_hidden_state, out.past_key_values

    def logits(self, hidden):
        return self.llm.lm_head(hidden)


BACKBONES = {"whisper": WhisperBackbone, "decoder": DecoderOnlyBackbone}
