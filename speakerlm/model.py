"""SpeakerLM: audio encoder → audio projector → LLM, with enrolled speakers as registration blocks.

    log-mel ─► audio encoder ─► (+ gated frame speaker stream) ─► memory / audio tokens ──┐
    enrolment embedding ─► speaker projector P ─► registration block per speaker ─────────┼─► LLM ─► turns
    turn marker hidden state ─► pointer over {registration slots, spk 0..K-1} ─────────────┘

The backbone (backbones.py) owns everything that differs between a Whisper encoder–decoder and a
decoder-only LLM; decoding is in decoding.py, checkpoints in checkpoint.py.

Choices the paper leaves open:
- Target layout. Each turn is `[TURN] [SPK] text…`: the LM emits a turn marker; at the marker a
  **pointer** scores every registration slot and K anonymous identities by hidden · key and picks the
  speaker (cross-entropy against the true slot); the chosen slot's projected embedding (or the
  anonymous identity's embedding) is the next input, then the LM writes the words. The label string
  (`Alice` or `spk 1`) is written from the pointer's choice. Why: free-text name tokens did not bind to
  enrolment embeddings at this scale (two prototypes, one with an auxiliary frame-to-enrolment loss);
  the pointer is the paper's "registration-conditioned" choice made explicit.
- Frame-level speaker stream: windowed speaker embeddings through the *same* projector P as the
  enrolment embeddings, added to the audio memory through a per-channel gate (initialised at 0.1, not
  0: a zero-initialised gate barely moved), so hidden states can be compared with slots.
- Speaker projector: one Linear (paper). One embedding position per registered speaker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from speakerlm.backbones import BACKBONES, Backbone
from speakerlm.stages import timed
from speakerlm.turns import Turn

IGNORE = -100  # label value that the losses skip
SPEAKER_DIMS = {"campp": 192, "ge2e": 256}  # embedding width of each frozen speaker encoder


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
    lora_rank: int = 0  # 0 = no adapters (the LLM's own weights are trained, if any); >0 = LoRA of this rank
    lora_alpha: int = 32
    projector_layers: int = 2  # decoder-only audio projector: Transformer layers before the CNN
    # dtype of the LLM's pretrained weights: "bfloat16" halves a large LLM's memory; what trains is
    # kept in float32 (train.set_trainable) and the forward pass runs under bf16 autocast
    llm_dtype: str = "float32"
    # the model writes each turn's start and end as Whisper's time tokens around it (Whisper backbone;
    # clips up to 30 s): turn times from the model itself instead of laid over the speech afterwards
    timestamps: bool = False

    @property
    def speaker_dim(self) -> int:
        return SPEAKER_DIMS[self.speaker_encoder]


@dataclass
class Example:
    """One clip as the model sees it (tensors already computed from audio; see features.py)."""

    audio: torch.Tensor  # (frames, d_enc) encoder states at 50 Hz, or (windows, n_mels, 3000) log-mel windows
    frame_speaker: Optional[torch.Tensor]  # (frames, speaker_dim) or None
    slots: list[tuple[str, torch.Tensor]]  # registered (name, voiceprint (speaker_dim,)), in prompt order
    turns: list[Turn] = field(default_factory=list)  # target turns (labels = slot names or `spk k`); empty at inference
    task: str = "sdr"  # "sdr": who said what (turns, speakers); "asr": the words only (curriculum stage 1)
    language: Optional[str] = None  # spoken language, for a multilingual backbone's prefix (None = English)


class SpeakerLM(nn.Module):
    def __init__(self, config: SpeakerLMConfig):
        super().__init__()
        if config.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {config.backbone!r}; choose one of {sorted(BACKBONES)}")
        if config.llm_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"llm_dtype must be float32 or bfloat16, got {config.llm_dtype!r}")
        if config.timestamps and config.backbone != "whisper":
            raise ValueError("timestamps need the Whisper backbone (its time tokens)")
        self.config = config
        self.backbone: Backbone = BACKBONES[config.backbone](config)
        d, d_encoder = self.backbone.d_model, self.backbone.d_encoder
        self.speaker_projector = nn.Linear(config.speaker_dim, d)  # the paper's single linear layer
        # the frame speaker stream lives in the audio memory's width (the encoder's)
        self.frame_projector = nn.Linear(d, d_encoder, bias=False) if d != d_encoder else nn.Identity()
        self.frame_gate = nn.Parameter(torch.full((d_encoder,), 0.1))
        self.anonymous = nn.Parameter(torch.randn(config.max_anonymous, d) * 0.02)  # spk 0..K-1 inputs/keys
        # the turn marker gets its own trainable embedding, used as its input and as its output row:
        # with the token embeddings frozen (they are tied to the output layer) the LM could not learn
        # to emit a rarely used special token (garbage tokens at turn boundaries)
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
        if config.lora_rank > 0:
            from peft import LoraConfig, inject_adapter_in_model

            inject_adapter_in_model(LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha,
                                               target_modules=list(self.backbone.lora_targets)), self.backbone.llm)
            for name, p in self.backbone.llm.named_parameters():  # peft gives adapters the base layer's dtype
                if "lora_" in name:
                    p.data = p.data.float()
        # the new parts train, the pretrained ones are frozen (curriculum stage 2); the trainer unfreezes
        # the encoder and the LLM for the stages that train them (train.set_trainable)
        self.backbone.audio_encoder.requires_grad_(False)
        for name, p in self.backbone.llm.named_parameters():
            p.requires_grad_("lora_" in name)
        # tensors that differ from the packaged weights without being trainable now (loaded from a
        # checkpoint, e.g. stage 2's decoder under stage 3): a checkpoint must keep them
        self.carried: set[str] = set()

    def trained_names(self) -> set[str]:
        """Names of the tensors a checkpoint holds: what trains now, and what was trained before."""
        return {n for n, p in self.named_parameters() if p.requires_grad} | self.carried

    @property
    def encoder_trained(self) -> bool:
        """Whether the audio encoder differs from the packaged one (trained now or in an earlier stage):
        then encoder states cached from the packaged encoder do not fit this model."""
        return any(n.startswith("backbone.audio_encoder.") or n.startswith("backbone.encoder.")
                   for n in self.trained_names())

    def autocast(self):
        """bf16 autocast when the LLM's weights are bf16 (so float32 heads and bf16 layers meet in one
        dtype); a no-op context for a float32 model."""
        device = next(self.parameters()).device.type
        return torch.autocast(device, dtype=torch.bfloat16, enabled=self.config.llm_dtype == "bfloat16")

    # ------------------------------------------------------------ inputs
    @timed("audio encoder")
    def encode_audio(self, mel: torch.Tensor, frames: int) -> torch.Tensor:
        """Log-mel windows (W, n_mels, 3000) → encoder states (frames, d_enc)."""
        from speakerlm.features import encode_windows

        return encode_windows(self.backbone.audio_encoder, mel, frames)

    def memory(self, ex: Example) -> torch.Tensor:
        """The audio the LLM attends to: encoder states (frames, d_enc) plus the gated speaker stream."""
        audio = ex.audio
        if audio.dim() == 3:  # log-mel windows: the encoder is being trained (stages 3–4), run it here
            frames = ex.frame_speaker.shape[0] if ex.frame_speaker is not None else audio.shape[0] * 1500
            audio = self.encode_audio(audio, frames)
        if self.config.frame_speaker_stream and ex.frame_speaker is not None:
            stream = self.frame_projector(self.speaker_projector(ex.frame_speaker))
            audio = audio + self.frame_gate * stream
        return audio

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM logits with the turn marker's column from its trainable embedding."""
        logits = self.backbone.logits(hidden)
        turn = hidden @ self.turn_embedding
        turn_id = self.backbone.turn_id
        return torch.cat([logits[..., :turn_id], turn[..., None], logits[..., turn_id + 1 :]], dim=-1)

    # ------------------------------------------------------------ the pointer
    def speaker_class(self, label: str, names: list[str]) -> int:
        """The pointer's target for a turn's label: a slot index, or len(names) + k for `spk k`."""
        if label in names:
            return names.index(label)
        k = int(label.split()[1]) if label.startswith("spk ") and label.split()[1].isdigit() else 0
        return len(names) + min(k, self.config.max_anonymous - 1)

    def speaker_input(self, cls: int, slot_embs: list[torch.Tensor]) -> torch.Tensor:
        """The embedding fed after the turn marker for the chosen speaker class."""
        return slot_embs[cls] if cls < len(slot_embs) else self.anonymous[cls - len(slot_embs)]

    def presence_bias(self, ex: Example) -> Optional[torch.Tensor]:
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

    def pointer_logits(self, hidden: torch.Tensor, slot_embs: list[torch.Tensor], n_anon_used: Optional[int] = None,
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
    def forward(self, batch: list[Example], whisper=None, whisper_weight: float = 0.0, whisper_right_only: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(LM logits (B, L, vocab), loss = LM cross-entropy on response tokens + pointer cross-entropy
        [+ `whisper_weight` × `whisper_divergence` from the pretrained backbone `whisper`])."""
        with self.autocast():
            logits, loss, seqs = self._forward(batch)
            if whisper is not None and whisper_weight > 0:
                divergence = self.whisper_divergence(whisper, batch, seqs, logits, whisper_right_only)
                loss = loss + whisper_weight * divergence
            return logits, loss

    def _forward(self, batch: list[Example]) -> tuple[torch.Tensor, torch.Tensor, list]:
        seqs = [self._sequence(ex) for ex in batch]
        embeds, mask, memory = right_padded([s[0] for s in seqs], [s[1] for s in seqs])
        labels = torch.full(mask.shape, IGNORE, dtype=torch.long)
        for i, (_, _, lab, _, _) in enumerate(seqs):
            labels[i, : len(lab)] = torch.tensor(lab)
        hidden, _ = self.backbone.run(embeds, mask, memory)
        # shape: hidden (B, L, d)
        logits = self.logits(hidden).float()
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE)
        ptr_losses = []
        for i, (ex, (_, _, _, pos, target)) in enumerate(zip(batch, seqs)):
            if pos:
                slot_embs = [self.speaker_projector(e) for _, e in ex.slots]
                scores = self.pointer_logits(hidden[i, pos], slot_embs, presence=self.presence_bias(ex))
                ptr_losses.append(F.cross_entropy(scores, torch.tensor(target), reduction="sum"))
        n_turns = sum(len(s[3]) for s in seqs)
        if ptr_losses:
            loss = loss + torch.stack(ptr_losses).sum() / n_turns
        return logits, loss, seqs

    def whisper_divergence(self, whisper, batch: list[Example], seqs: list, logits: torch.Tensor,
                           right_only: bool = False) -> torch.Tensor:
        """Mean KL(pretrained Whisper ‖ model) of the next word at every word token of the targets, Whisper
        reading the same audio (the encoder states, without the speaker stream) and the same words and
        times without turn markers or speakers (`whisper_view`), both over the text tokens alone.
        Why: fine-tuning the decoder on simulated voices costs recognition on others; this keeps its
        words close to Whisper's while the format is learnt (learning without forgetting, Li & Hoiem 2016).
        `right_only`: only at the tokens Whisper itself predicts right, so that its errors on voices it
        cannot read (the simulator's formant voices) are not taught."""
        words = self.backbone.eos_id  # text tokens come first in Whisper's vocabulary
        views = [whisper_view(labels, whisper.task_prefix(ex.task, ex.language), self.backbone.turn_id, words)
                 for ex, (_, _, labels, _, _) in zip(batch, seqs)]
        if not any(pairs for _, pairs in views):
            return logits.new_zeros(())
        if any(ex.audio.dim() != 2 for ex in batch):
            raise ValueError("the Whisper divergence needs cached encoder states (a frozen audio encoder)")
        embeds, mask, memory = right_padded([whisper.embed_tokens(torch.tensor(ids)) for ids, _ in views],
                                            [ex.audio for ex in batch])
        rows = torch.tensor([i for i, (_, pairs) in enumerate(views) for _ in pairs])
        ours = torch.tensor([p for _, pairs in views for p, _ in pairs])
        theirs = torch.tensor([q for _, pairs in views for _, q in pairs])
        with torch.no_grad():
            hidden, _ = whisper.run(embeds, mask, memory)
            target = whisper.logits(hidden[rows, theirs]).float()[:, :words].log_softmax(-1)
        model = logits[rows, ours, :words].log_softmax(-1)
        kl = (target.exp() * (target - model)).sum(-1)
        if right_only:
            tokens = torch.tensor([seqs[i][2][p] for i, (_, pairs) in enumerate(views) for p, _ in pairs])
            right = target.argmax(-1) == tokens
            return kl[right].mean() if right.any() else kl.new_zeros(())
        return kl.mean()

    @torch.no_grad()
    def teacher_forced_speakers(self, ex: Example) -> tuple[list[int], list[int]]:
        """(pointer's choice, true class) at every turn marker of `ex`'s target turns, the earlier turns
        given as they truly are: how well the pointer picks speakers when the words are right."""
        with self.autocast():
            return self._teacher_forced_speakers(ex)

    def _teacher_forced_speakers(self, ex: Example) -> tuple[list[int], list[int]]:
        embeds, memory, _, pos, target = self._sequence(ex)
        hidden, _ = self.backbone.run(embeds[None], torch.ones(1, len(embeds), dtype=torch.long),
                                      None if memory is None else memory[None])
        if not pos:
            return [], []
        slot_embs = [self.speaker_projector(e) for _, e in ex.slots]
        scores = self.pointer_logits(hidden[0, pos], slot_embs, presence=self.presence_bias(ex))
        return scores.argmax(dim=-1).tolist(), target

    def _sequence(self, ex: Example) -> tuple[torch.Tensor, Optional[torch.Tensor], list[int], list[int], list[int]]:
        """Embeddings of prompt + response for one clip, the next-token label of every position, and
        the positions and targets of the pointer (one per turn marker)."""
        names = [n for n, _ in ex.slots]
        slot_embs = [self.speaker_projector(e) for _, e in ex.slots]
        prompt, memory = self.backbone.prompt(self.memory(ex), slot_embs, names, ex.task, ex.language)
        SPK = -1  # placeholder in the response stream for the pointer-chosen speaker input
        response, classes = [], []
        if ex.task == "asr":  # the words alone: no turn markers, no speakers
            response = self.backbone.tokenize(" " + " ".join(t.text.strip() for t in ex.turns))
        for turn in ex.turns if ex.task == "sdr" else ():
            classes.append(self.speaker_class(turn.speaker, names))
            start, end = [], []
            if self.config.timestamps:  # <|start|> [TURN] [SPK] words <|end|>, as Whisper writes segments
                if turn.start is None or turn.end is None:
                    raise ValueError(f"a model that writes times needs timed target turns, got {turn}")
                start, end = [self.backbone.time_token(turn.start)], [self.backbone.time_token(turn.end)]
            response += start + [self.backbone.turn_id, SPK] + self.backbone.tokenize(" " + turn.text.strip()) + end
        response.append(self.backbone.eos_id)
        inputs = response[:-1]  # the last element is only ever predicted
        pieces, spk_iter = [prompt], iter(classes)
        for tok in inputs:
            if tok == SPK:
                pieces.append(self.speaker_input(next(spk_iter), slot_embs)[None])
            elif tok == self.backbone.turn_id:
                pieces.append(self.turn_embedding[None])
            else:
                pieces.append(self.backbone.embed_tokens(torch.tensor([tok])))
        # position p predicts element p+1; the element after a marker is the pointer's, not the LM's
        labels = [IGNORE] * (len(prompt) - 1) + [IGNORE if t == SPK else t for t in response]
        pointer_positions = [len(prompt) + k for k, t in enumerate(inputs) if t == self.backbone.turn_id]
        return torch.cat(pieces), memory, labels, pointer_positions, classes


def whisper_view(labels: list[int], prefix: list[int], turn_id: int, words: int) -> tuple[list[int], list[tuple[int, int]]]:
    """What pretrained Whisper reads of a target sequence: `prefix` + its times and words, without turn
    markers or speakers (`labels` as `SpeakerLM._sequence` gives them: position p predicts labels[p]).
    Returns Whisper's input tokens and, for every word token (id < `words`), the pair (the model's
    position, Whisper's position) that predicts it."""
    kept = [(p, t) for p, t in enumerate(labels) if t != IGNORE and t != turn_id]
    pairs = [(p, len(prefix) - 1 + j) for j, (p, t) in enumerate(kept) if t < words]
    return prefix + [t for _, t in kept[:-1]], pairs


def right_padded(embeds: list[torch.Tensor], memories: list[Optional[torch.Tensor]]
                 ) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Sequences of input embeddings (L_i, d) and their audio (T_i, d_audio) or None as one batch, padded
    on the right: (embeds (B, L, d), attention mask (B, L), memory (B, T, d_audio) or None); frames
    after a short clip are zero, as Whisper's own padding."""
    B, L = len(embeds), max(len(e) for e in embeds)
    padded = torch.zeros(B, L, embeds[0].shape[-1])
    mask = torch.zeros(B, L, dtype=torch.long)
    for i, e in enumerate(embeds):
        padded[i, : len(e)] = e
        mask[i, : len(e)] = 1
    if memories[0] is None:
        return padded, mask, None
    memory = torch.zeros(B, max(m.shape[0] for m in memories), memories[0].shape[-1])
    for i, m in enumerate(memories):
        memory[i, : m.shape[0]] = m
    return padded, mask, memory
