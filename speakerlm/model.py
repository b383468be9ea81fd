"""SpeakerLM: audio encoder → audio projector → LLM, with enrolled speakers as registration blocks.

    log-mel ─► Whisper encoder ─► (+ gated frame speaker stream) ─► memory / audio tokens ─┐
    enrolment embedding ─► speaker projector P ─► registration block per speaker ───────────┼─► LLM ─► turns
    turn marker hidden state ─► pointer over {registration slots, spk 0..K-1} ──────────────┘

Two backbones behind one interface (`Backbone`):
- `WhisperBackbone`: the pretrained Whisper decoder is the LLM; audio enters by cross-attention;
  registration blocks sit in the `<|startofprev|>` prompt region.
- `DecoderOnlyBackbone` (the paper's design): any Hugging Face causal LM; audio tokens (projector
  output) and registration blocks are spliced into a ChatML prompt's `inputs_embeds`; LoRA via peft.

Choices the paper leaves open (INFERRED), recorded here:
- Target layout. Each turn is `[TURN] [SPK] text…`: the LM emits a turn marker; at the marker a
  **pointer** scores every registration slot and K anonymous identities by hidden · key and picks the
  speaker (cross-entropy against the true slot); the chosen slot's projected embedding (or the
  anonymous identity's embedding) is the next input, then the LM writes the words. The label string
  (`Alice` or `spk 1`) is written by the formatter from the pointer's choice. Why: two prototypes
  showed that free-text name tokens never bind to enrolment embeddings at our scale
  (research/prototype.md); the pointer is the paper's "registration-conditioned" choice made explicit.
- Frame-level speaker stream: windowed speaker embeddings through the *same* projector P as the
  enrolment embeddings, added to the audio memory through a per-channel gate (initialised at 0.1, not
  0: the prototype's zero-initialised gate barely moved), so hidden states can be compared with slots.
- Registration block: decoder-only backbone, the paper's `name <start>[emb]<end>` with `<start>`/`<end>`
  tokenised as text; Whisper backbone, one position per speaker (P(e) + a learned slot embedding) and
  no name tokens, because Whisper's decoder has only 448 positions and 100 distractors must fit; the
  pointer does not need the name in the prompt.
- Audio projector (decoder-only): 2-layer Transformer at the encoder width, then a Conv1d with stride 2
  (time ×2 down, 50 → 25 Hz) to the LLM width (MinMo's projector shape, paper §3.1).
- Speaker projector: one Linear (paper). One embedding position per registered speaker.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from speakerlm.labels import ANONYMOUS
from speakerlm.turns import Turn

IGNORE = -100  # label value that the losses skip


@dataclass(frozen=True)
class SpeakerLMConfig:
    backbone: str = "whisper"  # "whisper" (encoder–decoder) or "decoder" (decoder-only causal LM)
    whisper: str = "tiny.en"  # audio encoder; for backbone="whisper" also the LLM
    llm: str = "smollm2-135m"  # causal LM for backbone="decoder" (or a local HF directory)
    speaker_encoder: str = "campp"  # frozen speaker-embedding extractor: "campp" (192-d) or "ge2e" (256-d)
    frame_speaker_stream: bool = True  # add projected windowed speaker embeddings to the audio memory
    max_anonymous: int = 8  # anonymous identities spk 0..K-1 the pointer can choose
    pointer_dim: int = 128  # width of pointer queries and keys
    slot_presence: bool = True  # pointer also sees how strongly each enrolled voice occurs in the audio
    lora_rank: int = 0  # 0 = train the LLM's weights directly (whisper); >0 = LoRA of this rank
    lora_alpha: int = 32
    projector_layers: int = 2  # decoder-only audio projector: Transformer layers before the CNN
    train_encoder: bool = False  # Whisper encoder trainable (stages 3–4)
    train_llm: bool = True  # LLM (or its LoRA) trainable (stages 1, 4)

    @property
    def speaker_dim(self) -> int:
        return {"campp": 192, "ge2e": 256}[self.speaker_encoder]


@dataclass
class Example:
    """One clip as the model sees it (tensors already computed from audio; see features.py)."""

    audio: torch.Tensor  # (frames, d_enc) Whisper encoder states at 50 Hz, or log-mel windows if trainable
    frame_speaker: Optional[torch.Tensor]  # (frames, speaker_dim) or None
    slots: list[tuple[str, torch.Tensor]]  # registered (name, mean enrolment embedding (speaker_dim,)), prompt order
    turns: list[Turn] = field(default_factory=list)  # target turns (labels = slot names or `spk k`); empty at inference


class AudioProjector(nn.Module):
    """2-layer Transformer at the encoder width, then a stride-2 CNN to the LLM width (paper §3.1)."""

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
    """What SpeakerLM needs from an LLM: token embeddings, a prompt, a causal pass, LM logits."""

    d_model: int
    turn_id: int  # token the LM emits to open a turn
    eos_id: int  # token that ends the transcript
    suppressed: tuple[int, ...] = ()  # tokens generation never emits (e.g. Whisper's special and timestamp tokens)

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def tokenize(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode_tokens(self, ids: list[int]) -> str:
        raise NotImplementedError

    def prompt(self, audio: torch.Tensor, slot_embs: list[torch.Tensor], names: list[str]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(prompt embeddings (P, d), cross-attention memory (T, d) or None) for one clip."""
        raise NotImplementedError

    def run(self, embeds: torch.Tensor, mask: torch.Tensor, memory: Optional[torch.Tensor],
            memory_mask: Optional[torch.Tensor], cache=None):
        """Causal pass over (B, L, d) embeddings → (hidden (B, L, d), cache)."""
        raise NotImplementedError

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class WhisperBackbone(Backbone):
    def __init__(self, config: SpeakerLMConfig):
        super().__init__()
        from speakerlm.whisper import load_whisper

        whisper, self.processor = load_whisper(config.whisper)
        self.encoder, self.decoder, self.proj_out = whisper.model.encoder, whisper.model.decoder, whisper.proj_out
        self.d_model = whisper.config.d_model
        ids = {t: self.processor.tokenizer.convert_tokens_to_ids(t) for t in
               ("<|startofprev|>", "<|startoftranscript|>", "<|notimestamps|>", "<|startoflm|>", "<|endoftext|>")}
        self.prefix_ids = [ids["<|startoftranscript|>"], ids["<|notimestamps|>"]]
        self.prev_id, self.turn_id, self.eos_id = ids["<|startofprev|>"], ids["<|startoflm|>"], ids["<|endoftext|>"]
        self.slot_embedding = nn.Parameter(torch.zeros(self.d_model))  # marks a registration position
        vocab = whisper.config.vocab_size
        self.suppressed = [i for i in range(ids["<|startoftranscript|>"], vocab) if i != self.turn_id]
        self.max_positions = whisper.config.max_target_positions

    def embed_tokens(self, ids):
        return self.decoder.embed_tokens(ids)

    def tokenize(self, text):
        return self.processor.tokenizer.encode(text, add_special_tokens=False)

    def decode_tokens(self, ids):
        return self.processor.tokenizer.decode(ids, skip_special_tokens=True)

    def prompt(self, audio, slot_embs, names):
        parts = [self.embed_tokens(torch.tensor([self.prev_id]))]
        parts += [(e + self.slot_embedding)[None] for e in slot_embs]
        parts.append(self.embed_tokens(torch.tensor(self.prefix_ids)))
        return torch.cat(parts), audio

    def run(self, embeds, mask, memory, memory_mask, cache=None):
        out = self.decoder(inputs_embeds=embeds, attention_mask=mask, encoder_hidden_states=memory,
                           cache=cache, use_cache=cache is not None)
        return out.last_hidden_state, out.past_key_values

    def logits(self, hidden):
        return self.proj_out(hidden)


class DecoderOnlyBackbone(Backbone):
    SYSTEM = "You are a helpful assistant."
    INSTRUCTION = "Transcribe by roles."  # the paper's No/Match/Over-Regist instruction
    TURN_TOKEN = "<file_sep>"  # a special token SmolLM2 never writes in prose; any unused token works

    def __init__(self, config: SpeakerLMConfig, d_encoder: int):
        super().__init__()
        from speakerlm.llm import load_llm

        self.llm, self.tokenizer = load_llm(config.llm)
        self.d_model = self.llm.config.hidden_size
        self.projector = AudioProjector(d_encoder, self.d_model, config.projector_layers)
        self.turn_id = self.tokenizer.convert_tokens_to_ids(self.TURN_TOKEN)
        if self.turn_id is None or self.turn_id == self.tokenizer.unk_token_id:
            self.turn_id = self.tokenizer.eos_token_id  # a tiny test vocabulary without it
        self.eos_id = self.tokenizer.convert_tokens_to_ids("<|im_end|>") or self.tokenizer.eos_token_id
        head = f"<|im_start|>system\n{self.SYSTEM}<|im_end|>\n<|im_start|>user\n{self.INSTRUCTION}"
        self.head_ids = self.tokenize(head)
        self.start_ids, self.end_ids = self.tokenize("<start>"), self.tokenize("<end>")
        self.tail_ids = self.tokenize("<|im_end|>\n<|im_start|>assistant\n")

    def embed_tokens(self, ids):
        return self.llm.get_input_embeddings()(ids)

    def tokenize(self, text):
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode_tokens(self, ids):
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def prompt(self, audio, slot_embs, names):
        emb = lambda ids: self.embed_tokens(torch.tensor(ids, dtype=torch.long))
        parts = [emb(self.head_ids)]
        for name, e in zip(names, slot_embs):  # the paper's Fig. 2 block: name <start>[embedding]<end>
            parts += [emb(self.tokenize(f" {name}")), emb(self.start_ids), e[None], emb(self.end_ids)]
        parts += [emb(self.tokenize(" ")), emb(self.start_ids), self.projector(audio[None])[0], emb(self.end_ids),
                  emb(self.tail_ids)]
        return torch.cat(parts), None

    def run(self, embeds, mask, memory, memory_mask, cache=None):
        out = self.llm.model(inputs_embeds=embeds, attention_mask=mask, cache=cache, use_cache=cache is not None)
        return out.last_hidden_state, out.past_key_values

    def logits(self, hidden):
        return self.llm.lm_head(hidden)


class SpeakerLM(nn.Module):
    def __init__(self, config: SpeakerLMConfig):
        super().__init__()
        self.config = config
        if config.backbone == "whisper":
            self.backbone: Backbone = WhisperBackbone(config)
            d_encoder = self.backbone.d_model
        elif config.backbone == "decoder":
            from speakerlm.whisper import load_whisper

            whisper, self.processor = load_whisper(config.whisper)
            self.audio_encoder = whisper.model.encoder
            d_encoder = whisper.config.d_model
            self.backbone = DecoderOnlyBackbone(config, d_encoder)
        else:
            raise ValueError(f"unknown backbone {config.backbone!r}")
        d = self.backbone.d_model
        self.speaker_projector = nn.Linear(config.speaker_dim, d)  # the paper's single linear layer
        # frame speaker stream lives in the audio memory's width (encoder width for both backbones)
        self.frame_projector = nn.Linear(d, d_encoder, bias=False) if d != d_encoder else nn.Identity()
        self.frame_gate = nn.Parameter(torch.full((d_encoder,), 0.1))
        self.anonymous = nn.Parameter(torch.randn(config.max_anonymous, d) * 0.02)  # spk 0..K-1 inputs/keys
        # the turn marker gets its own trainable embedding, used as its input and as its output row:
        # with the token embeddings frozen (they are tied to the output layer) the LM could not learn
        # to emit a rarely used special token (measured: garbage tokens at turn boundaries)
        turn = self.backbone.embed_tokens(torch.tensor([self.backbone.turn_id]))[0].detach().clone()
        self.turn_embedding = nn.Parameter(turn)
        self.pointer_query = nn.Linear(d, config.pointer_dim)
        self.pointer_key = nn.Linear(d, config.pointer_dim)
        if config.slot_presence:
            # prior: a voice that never matches the audio (cosine ~0.2) is pushed down, one that does
            # (~0.7) up; learned from there
            self.presence = nn.Linear(2, 1)
            with torch.no_grad():
                self.presence.weight.copy_(torch.tensor([[4.0, 4.0]]))
                self.presence.bias.fill_(-3.0)
        # tensors an earlier curriculum stage trained that this stage keeps frozen (stage 3 freezes the
        # decoder that stage 2 trained): still saved, or a stage-3 checkpoint would lose stage 2's work
        self.carried: set[str] = set()
        self._set_trainable()

    # ------------------------------------------------------------ trainable parts
    def _set_trainable(self) -> None:
        cfg = self.config
        for p in self.parameters():
            p.requires_grad_(True)
        encoder = self.backbone.encoder if cfg.backbone == "whisper" else self.audio_encoder
        encoder.requires_grad_(cfg.train_encoder)
        llm = self.backbone.decoder if cfg.backbone == "whisper" else self.backbone.llm
        if cfg.backbone == "whisper":
            # the token embeddings (tied to proj_out) stay frozen: they are 20 M of the decoder's 30 M
            # parameters, and leaving them out keeps the bundled checkpoint small
            self.backbone.proj_out.requires_grad_(False)
            self.backbone.decoder.embed_tokens.requires_grad_(False)
        if cfg.lora_rank > 0:
            from peft import LoraConfig, inject_adapter_in_model

            llm.requires_grad_(False)
            targets = ["q_proj", "v_proj", "k_proj", "o_proj"] if cfg.backbone == "decoder" else ["q_proj", "v_proj", "out_proj"]
            inject_adapter_in_model(LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, target_modules=targets), llm)
            for name, p in llm.named_parameters():
                p.requires_grad_(cfg.train_llm and "lora_" in name)
        else:
            for name, p in llm.named_parameters():
                p.requires_grad_(cfg.train_llm and not name.startswith("embed_tokens"))

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only what training changed (this stage or an earlier one): the checkpoint holds these, never
        the pretrained weights."""
        names = self._trained_names()
        return {n: t.detach().clone() for n, t in self.state_dict().items() if n in names}

    def _trained_names(self) -> set[str]:
        return {n for n, p in self.named_parameters() if p.requires_grad} | self.carried

    @property
    def encoder_trained(self) -> bool:
        """Whether the audio encoder differs from the packaged one (trained now or in an earlier stage):
        then encoder states cached from the packaged encoder do not fit this model."""
        return any(n.startswith(("backbone.encoder.", "audio_encoder.")) for n in self._trained_names())

    def load_trained(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load trained tensors, possibly saved by a model of another stage: a plain weight becomes the
        base layer of the LoRA adapter that wraps it here (stage 4 adds LoRA to stage 2's decoder)."""
        own = self.state_dict()
        renamed = {}
        for name, t in tensors.items():
            module, _, kind = name.rpartition(".")  # kind: weight or bias
            wrapped = f"{module}.base_layer.{kind}"
            renamed[wrapped if name not in own and wrapped in own else name] = t
        unexpected = set(renamed) - set(own)
        if unexpected:
            raise ValueError(f"trained tensors this model does not have: {sorted(unexpected)[:3]}")
        self.load_state_dict(renamed, strict=False)
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        self.carried |= set(renamed) - trainable

    def mix_llm_with_pretrained(self, alpha: float) -> None:
        """Weight-space ensemble of the fine-tuned LLM with the pretrained one it started from (WiSE-FT,
        Wortsman et al. 2022): each trained LLM weight becomes pretrained + alpha · (trained − pretrained);
        a LoRA adapter is scaled by alpha. Fine-tuning on TTS voices moves the decoder away from what
        made it robust on real speech; mixing keeps part of both. alpha = 1 changes nothing."""
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        prefix = "backbone.decoder." if self.config.backbone == "whisper" else "backbone.llm."
        pretrained = SpeakerLM(self.config).state_dict()  # the packaged weights (adapters: fresh init)
        trained = self.trainable_state_dict()
        mixed = {}
        for name, weight in trained.items():
            if not name.startswith(prefix) or "lora_A" in name:
                continue  # heads and projectors have no pretrained value; lora_B alone scales the update
            base = torch.zeros_like(weight) if "lora_B" in name else pretrained[name]
            mixed[name] = base + alpha * (weight - base)
        self.load_state_dict(mixed, strict=False)

    def quantize_for_inference(self, parts: tuple[str, ...] = ("decoder", "proj_out")) -> "SpeakerLM":
        """int8 weights (dynamic quantization, fbgemm) for the backbone's Linear layers, inference only.
        Why: decoding one token reads Whisper's 51,864 × 384 output layer (80 MB in float32); at batch 1
        that is memory-bound, and int8 reads a quarter of it (measured 11.3 → 3.3 ms per token, one
        thread). torch.ao's eager API is deprecated for torchao, which does not install here."""
        import warnings

        from torch.ao.quantization import quantize_dynamic

        if self.config.backbone != "whisper":
            raise ValueError("int8 inference is implemented for the Whisper backbone only")
        unknown = set(parts) - {"encoder", "decoder", "proj_out"}
        if unknown:
            raise ValueError(f"unknown backbone parts {sorted(unknown)}; choose from encoder, decoder, proj_out")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for part in parts:
                module = getattr(self.backbone, part)
                if isinstance(module, nn.Linear):  # quantize_dynamic swaps children, so wrap a bare Linear
                    module = quantize_dynamic(nn.Sequential(module), {nn.Linear}, dtype=torch.qint8)[0]
                else:
                    module = quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8)
                setattr(self.backbone, part, module)
        return self.eval()

    # ------------------------------------------------------------ inputs
    def encode_audio(self, mel: torch.Tensor, frames: int) -> torch.Tensor:
        """Log-mel windows (W, n_mels, 3000) → encoder states (frames, d_enc)."""
        from speakerlm.features import encode_windows

        encoder = self.backbone.encoder if self.config.backbone == "whisper" else self.audio_encoder
        return encode_windows(encoder, mel, frames)

    def _memory(self, ex: Example) -> torch.Tensor:
        audio = ex.audio
        if audio.dim() == 3:  # log-mel windows: the encoder is being trained (stages 3–4), run it here
            frames = ex.frame_speaker.shape[0] if ex.frame_speaker is not None else audio.shape[0] * 1500
            audio = self.encode_audio(audio, frames)
        if self.config.frame_speaker_stream and ex.frame_speaker is not None:
            stream = self.frame_projector(self.speaker_projector(ex.frame_speaker))
            audio = audio + self.frame_gate * stream
        return audio

    def _sequence(self, ex: Example) -> tuple[torch.Tensor, Optional[torch.Tensor], list[int], list[int], list[int]]:
        """Embeddings of prompt + response for one clip, the next-token label of every position, and
        the positions and targets of the pointer (one per turn marker)."""
        names = [n for n, _ in ex.slots]
        slot_embs = [self.speaker_projector(e) for _, e in ex.slots]
        prompt, memory = self.backbone.prompt(self._memory(ex), slot_embs, names)
        SPK = -1  # placeholder in the response stream for the pointer-chosen speaker input
        response, classes = [], []
        for turn in ex.turns:
            classes.append(self._speaker_class(turn.speaker, names))
            response += [self.backbone.turn_id, SPK] + self.backbone.tokenize(" " + turn.text.strip())
        response.append(self.backbone.eos_id)
        inputs = response[:-1]  # the last element is only ever predicted
        pieces, spk_iter = [prompt], iter(classes)
        for tok in inputs:
            if tok == SPK:
                pieces.append(self._speaker_input(next(spk_iter), slot_embs)[None])
            elif tok == self.backbone.turn_id:
                pieces.append(self.turn_embedding[None])
            else:
                pieces.append(self.backbone.embed_tokens(torch.tensor([tok])))
        # position p predicts element p+1; the element after a marker is the pointer's, not the LM's
        labels = [IGNORE] * (len(prompt) - 1) + [IGNORE if t == SPK else t for t in response]
        pointer_positions = [len(prompt) + k for k, t in enumerate(inputs) if t == self.backbone.turn_id]
        return torch.cat(pieces), memory, labels, pointer_positions, classes

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM logits with the turn marker's column from its trainable embedding."""
        logits = self.backbone.logits(hidden)
        turn = hidden @ self.turn_embedding
        return torch.cat([logits[..., : self.backbone.turn_id], turn[..., None], logits[..., self.backbone.turn_id + 1 :]], dim=-1)

    def _speaker_class(self, label: str, names: list[str]) -> int:
        if label in names:
            return names.index(label)
        k = int(label.split()[1]) if label.startswith("spk ") and label.split()[1].isdigit() else 0
        return len(names) + min(k, self.config.max_anonymous - 1)

    def _speaker_input(self, cls: int, slot_embs: list[torch.Tensor]) -> torch.Tensor:
        return slot_embs[cls] if cls < len(slot_embs) else self.anonymous[cls - len(slot_embs)]

    def _presence(self, ex: Example) -> Optional[torch.Tensor]:
        """(slots,) bias from the frozen speaker encoder's own similarity: each enrolled voice against
        the clip's frame speaker stream (max and mean of the top 5 % cosines). Why: with 50-100
        distractors the learned bilinear score alone picked absent voices (Over-Regist saWER 158 %);
        the speaker encoder tells voices apart far better (EER 0.7 %) than a few hundred CPU steps teach."""
        if not self.config.slot_presence or not ex.slots or ex.frame_speaker is None:
            return None
        enrol = F.normalize(torch.stack([e for _, e in ex.slots]), dim=-1)
        frames = F.normalize(ex.frame_speaker[::12], dim=-1)  # the stream changes every 0.25 s (12.5 frames)
        cos = enrol @ frames.T
        k = max(1, cos.shape[1] // 20)
        feats = torch.stack([cos.max(dim=1).values, cos.topk(k, dim=1).values.mean(dim=1)], dim=-1)
        return self.presence(feats)[:, 0]

    def _pointer_logits(self, hidden: torch.Tensor, slot_embs: list[torch.Tensor], n_anon_used: Optional[int] = None,
                        presence: Optional[torch.Tensor] = None) -> torch.Tensor:
        """hidden (n, d) at turn markers → (n, slots + K) scores; optionally forbid anonymous ids that
        skip ahead of first-appearance order."""
        keys = torch.cat([torch.stack(slot_embs), self.anonymous]) if slot_embs else self.anonymous
        scores = self.pointer_query(hidden) @ self.pointer_key(keys).T / self.config.pointer_dim ** 0.5
        if presence is not None:
            scores = torch.cat([scores[..., : len(slot_embs)] + presence, scores[..., len(slot_embs):]], dim=-1)
        if n_anon_used is not None:
            scores[..., len(slot_embs) + n_anon_used + 1 :] = float("-inf")
        return scores

    # ------------------------------------------------------------ training
    def forward(self, batch: list[Example]) -> tuple[torch.Tensor, torch.Tensor]:
        """(LM logits (B, L, vocab), loss = LM cross-entropy on response tokens + pointer cross-entropy)."""
        seqs = [self._sequence(ex) for ex in batch]
        B, L = len(seqs), max(len(s[0]) for s in seqs)
        d = self.backbone.d_model
        embeds = torch.zeros(B, L, d)
        mask = torch.zeros(B, L, dtype=torch.long)
        labels = torch.full((B, L), IGNORE, dtype=torch.long)
        memory = memory_mask = None
        if seqs[0][1] is not None:
            T = max(s[1].shape[0] for s in seqs)
            memory = torch.zeros(B, T, seqs[0][1].shape[-1])
            for i, s in enumerate(seqs):
                memory[i, : s[1].shape[0]] = s[1]  # zero frames after a short clip, as Whisper's own padding
        for i, (e, _, lab, _, _) in enumerate(seqs):
            embeds[i, : len(e)] = e
            mask[i, : len(e)] = 1
            labels[i, : len(lab)] = torch.tensor(lab)
        hidden, _ = self.backbone.run(embeds, mask, memory, memory_mask)
        logits = self._logits(hidden)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE)
        ptr_losses = []
        for i, (ex, (_, _, _, pos, target)) in enumerate(zip(batch, seqs)):
            if pos:
                slot_embs = [self.speaker_projector(e) for _, e in ex.slots]
                scores = self._pointer_logits(hidden[i, pos], slot_embs, presence=self._presence(ex))
                ptr_losses.append(F.cross_entropy(scores, torch.tensor(target), reduction="sum"))
        n_turns = sum(len(s[3]) for s in seqs)
        if ptr_losses:
            loss = loss + torch.stack(ptr_losses).sum() / n_turns
        return logits, loss

    # ------------------------------------------------------------ inference
    @torch.inference_mode()
    def generate(self, ex: Example, max_new_tokens: int = 400, repeat_limit: int = 4, num_beams: int = 1) -> list[Turn]:
        """Greedy (num_beams=1) or beam-search decoding with a KV cache. At each turn marker the pointer
        picks the speaker; the guard stops an n-gram loop ("real real real…"); the caller caps the
        length by the audio duration."""
        if num_beams > 1:
            return self._beam_search(ex, max_new_tokens, repeat_limit, num_beams)
        from transformers import DynamicCache

        names = [n for n, _ in ex.slots]
        slot_embs = [self.speaker_projector(e) for _, e in ex.slots]
        prompt, memory = self.backbone.prompt(self._memory(ex), slot_embs, names)
        memory = None if memory is None else memory[None]
        cache = DynamicCache()
        hidden, cache = self.backbone.run(prompt[None], torch.ones(1, len(prompt), dtype=torch.long), memory, None, cache)
        turns: list[tuple[str, list[int]]] = []
        presence = self._presence(ex)
        n_anon, total = 0, 0  # anonymous speakers introduced so far; tokens generated
        max_positions = getattr(self.backbone, "max_positions", 1 << 30) - len(prompt) - 2
        while total < min(max_new_tokens, max_positions):
            logits = self._logits(hidden[:, -1])[0]
            logits[list(self.backbone.suppressed)] = float("-inf")
            token = int(logits.argmax())
            if token == self.backbone.eos_id:
                break
            if token == self.backbone.turn_id or not turns:  # text before any marker opens a turn too
                hidden, cache = self._step(self.turn_embedding[None], memory, cache)
                cls = int(self._pointer_logits(hidden[0, -1:], slot_embs, n_anon, presence)[0].argmax())
                if cls < len(names):
                    label = names[cls]
                else:
                    label = ANONYMOUS.format(cls - len(names))
                    n_anon = max(n_anon, cls - len(names) + 1)
                turns.append((label, []))
                hidden, cache = self._step(self._speaker_input(cls, slot_embs)[None], memory, cache)
                total += 2
                continue
            turns[-1][1].append(token)
            total += 1
            if _looping(turns[-1][1], repeat_limit):
                break
            hidden, cache = self._step(self.backbone.embed_tokens(torch.tensor([token])), memory, cache)
        out = [Turn(label, self.backbone.decode_tokens(ids).strip()) for label, ids in turns]
        return _until_repeated([t for t in out if t.text])

    def _beam_search(self, ex: Example, max_new_tokens: int, repeat_limit: int, num_beams: int) -> list[Turn]:
        """Beam search over words; the speaker at each turn marker stays the pointer's argmax. Beams
        advance in lockstep, one input each per step (a word, the turn marker, or the chosen speaker),
        so they share one batched KV cache that is reordered as beams are kept."""
        from transformers import DynamicCache

        names = [n for n, _ in ex.slots]
        slot_embs = [self.speaker_projector(e) for _, e in ex.slots]
        presence = self._presence(ex)
        prompt, memory = self.backbone.prompt(self._memory(ex), slot_embs, names)
        memory = None if memory is None else memory[None]
        cache = DynamicCache()
        hidden, cache = self.backbone.run(prompt[None], torch.ones(1, len(prompt), dtype=torch.long), memory, None, cache)
        last = hidden[:, -1]
        # a beam: (log-prob, turns [(label, token ids)], anonymous speakers used, waits for the pointer)
        beams: list[tuple[float, list, int, bool]] = [(0.0, [], 0, False)]
        finished: list[tuple[float, list]] = []
        limit = min(max_new_tokens, getattr(self.backbone, "max_positions", 1 << 30) - len(prompt) - 2)
        for _ in range(limit):
            logprobs = self._logits(last).float()
            logprobs[:, list(self.backbone.suppressed)] = float("-inf")
            logprobs = logprobs.log_softmax(-1)
            candidates = []  # (score, parent beam, new beam or None when finished, next input / finished turns)
            for b, (score, turns, n_anon, at_marker) in enumerate(beams):
                if at_marker:
                    cls = int(self._pointer_logits(last[b : b + 1], slot_embs, n_anon, presence)[0].argmax())
                    label = names[cls] if cls < len(names) else ANONYMOUS.format(cls - len(names))
                    n_anon = n_anon if cls < len(names) else max(n_anon, cls - len(names) + 1)
                    candidates.append((score, b, (score, turns + [(label, [])], n_anon, False),
                                       self._speaker_input(cls, slot_embs)))
                    continue
                # one more than the beams, so an ending never crowds out all; before the first turn only
                # one way on: whatever comes first opens a turn (as in greedy), so beams do not duplicate
                top = logprobs[b].topk(num_beams + 1 if turns else 1)
                for lp, token in zip(top.values.tolist(), top.indices.tolist()):
                    if token == self.backbone.eos_id:
                        candidates.append((score + lp, b, None, turns))
                    elif token == self.backbone.turn_id or not turns:  # text before any marker opens a turn too
                        candidates.append((score + lp, b, (score + lp, turns, n_anon, True), self.turn_embedding))
                    else:
                        ids = turns[-1][1] + [token]
                        grown = turns[:-1] + [(turns[-1][0], ids)]
                        if _looping(ids, repeat_limit):
                            candidates.append((score + lp, b, None, grown))
                        else:
                            candidates.append((score + lp, b, (score + lp, grown, n_anon, False),
                                               self.backbone.embed_tokens(torch.tensor([token]))[0]))
            candidates.sort(key=lambda c: -c[0])
            live = []
            for rank, c in enumerate(candidates):  # as HF: an ending counts only if it ranks among the beams
                if c[2] is None:
                    if rank < num_beams:
                        finished.append((c[0], c[3]))
                elif len(live) < num_beams:
                    live.append(c)
            candidates = live
            if not candidates or len(finished) >= num_beams:  # as HF's early_stopping=True
                break
            cache.reorder_cache(torch.tensor([c[1] for c in candidates]))
            beams = [c[2] for c in candidates]
            embeds = torch.stack([c[3] for c in candidates])[:, None]
            past = cache.get_seq_length()
            mem = None if memory is None else memory.expand(len(beams), -1, -1)
            hidden, cache = self.backbone.run(embeds, torch.ones(len(beams), past + 1, dtype=torch.long), mem, None, cache)
            last = hidden[:, -1]
        pool = finished or [(score, turns) for score, turns, _, _ in beams]
        length = lambda turns: max(1, sum(len(ids) + 2 for _, ids in turns))
        _, turns = max(pool, key=lambda f: f[0] / length(f[1]))  # length-normalised, as HF's default
        out = [Turn(label, self.backbone.decode_tokens(ids).strip()) for label, ids in turns]
        return _until_repeated([t for t in out if t.text])

    def _step(self, embeds: torch.Tensor, memory, cache):
        past = cache.get_seq_length()
        mask = torch.ones(1, past + len(embeds), dtype=torch.long)
        return self.backbone.run(embeds[None], mask, memory, None, cache)

    # ------------------------------------------------------------ checkpoints
    def save(self, path: Path, half: bool = False) -> None:
        """config.json + trained.safetensors (only trained tensors), written atomically; `half` stores
        float16 (the bundled model: half the size, loaded back into float32)."""
        from safetensors.torch import save_file

        from speakerlm.cache import atomic_path, write_text_atomic

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / "trained.safetensors") as tmp:
            tensors = self.trainable_state_dict()
            save_file({k: (v.half() if half else v).contiguous() for k, v in tensors.items()}, str(tmp))
        write_text_atomic(path / "config.json", json.dumps(asdict(self.config), indent=2) + "\n")

    @staticmethod
    def load(path: Path) -> "SpeakerLM":
        """Rebuild from config (pretrained parts from their packages) and load the trained tensors;
        safetensors only, so loading never unpickles anything."""
        from safetensors.torch import load_file

        path = Path(path)
        config = json.loads((path / "config.json").read_text())
        config.setdefault("slot_presence", False)  # checkpoints from before the presence bias
        model = SpeakerLM(SpeakerLMConfig(**config))
        trained = load_file(str(path / "trained.safetensors"))
        missing = set(model.trainable_state_dict()) - set(trained)
        unexpected = set(trained) - set(model.state_dict())
        if missing or unexpected:
            raise ValueError(f"{path}: checkpoint does not fit its config (missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
        model.load_trained(trained)
        return model.eval()


def _until_repeated(turns: list[Turn], min_words: int = 3, overlap: float = 0.8) -> list[Turn]:
    """The turns up to the first one that says again what an earlier turn said (≥ 80 % of its words,
    at least 3): the guard against a loop across turns, which the n-gram guard within a turn cannot see
    (measured: the last sentence of a window written four times over)."""
    words = lambda t: [w.strip(",.!?;:\"'").lower() for w in t.text.split()]
    for i, turn in enumerate(turns):
        mine = words(turn)
        if len(mine) >= min_words and any(
                sum(w in set(words(earlier)) for w in mine) >= overlap * len(mine) for earlier in turns[:i]):
            return turns[:i]
    return turns


def _looping(ids: list[int], limit: int) -> bool:
    """True when the tail is one n-gram (n ≤ 4) repeated more than `limit` times."""
    for n in range(1, 5):
        if len(ids) >= n * (limit + 1):
            tail = ids[-n * (limit + 1) :]
            if all(tail[i] == tail[i % n] for i in range(len(tail))):
                return True
    return False
