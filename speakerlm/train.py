"""Training: the paper's four-stage curriculum on one config, resumable, on a CPU or many GPUs.

Reads top to bottom:
1. a `TrainConfig`, with each of the paper's stages a typed override of it (`STAGES`);
2. data: clips from any dataset `speakerlm.data.datasets` reads (the simulator's output, or real data),
   turned once into cached model inputs (encoder states while the encoder is frozen, frame speaker
   stream, enrolment embeddings);
3. batches by a token budget, each with a registration mode sampled per batch (paper §3.2: 1/3
   Match, 1/3 No, 1/3 Over with N_ov ~ U{1..50} distractors from other conversations, shuffled);
4. AdamW, linear warm-up then cosine decay, gradient clipping and accumulation, through
   `accelerate` (so `accelerate launch` / `torchrun` run the same script data-parallel);
5. atomic checkpoints with optimizer, schedule, RNG and data position: a killed run resumes exactly;
   a JSONL log, periodic dev evaluation and a training-curve PNG.

    speakerlm train --data DIR --dev DIR --out runs/x --stage 2 --steps 600
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator, Optional

import torch

from speakerlm.checkpoint import load_model, load_trained, save, trained_state_dict
from speakerlm.errors import UserError
from speakerlm.model import Example, SpeakerLM, SpeakerLMConfig
from speakerlm.turns import Turn, target_turns

NAME_POOL = (  # registered names are drawn from here per example, so names carry no voice information
    "Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Karl Laura Mallory Nina Oscar Peggy Quentin "
    "Rita Sam Trent Ursula Victor Wendy Xavier Yara Zoe Aaron Bella Caleb Diana Ethan Fiona George Hannah "
    "Isaac Julia Kevin Lily Mason Nora Owen Paula Ryan Sofia Tom Uma Vera Will Ximena Yusuf Zara Mei Wei "
    "Ravi Priya Omar Leila Hugo Ines Lars Astrid Pablo Lucia Kenji Yuki Chen Ana Tariq Amara Kofi Nia"
).split()


@dataclass(frozen=True)
class TrainConfig:
    model: SpeakerLMConfig = field(default_factory=SpeakerLMConfig)
    train_encoder: bool = False  # the audio encoder trains (stages 3–4)
    train_llm: bool = False  # the LLM (or its LoRA adapters) trains (stages 1, 4; stage 2 of the Whisper backbone)
    steps: int = 600  # optimizer steps in this stage
    lr_start: float = 1e-5  # paper: linear warm-up from 1e-5…
    lr_peak: float = 5e-5  # …to 5e-5, then cosine decay
    warmup_steps: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    accumulation: int = 1  # micro-batches per optimizer step
    token_budget: int = 6000  # dynamic batching: audio frames/2 + text tokens per micro-batch (paper: 6K)
    max_distractors: int = 50  # Over-Regist draws N_ov ~ U{1..max}
    registration: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)  # P(match), P(no), P(over)
    # chance that a Match or Over example registers only some of its speakers (the others stay
    # anonymous `spk k`): the condition the engine creates when enrolled and discovered voices mix
    partial_registration: float = 0.0
    # weight of the pretrained Whisper decoder's next-word distributions as a second target
    # (`SpeakerLM.whisper_divergence`; Whisper backbone with a frozen encoder); 0 = off
    keep_whisper: float = 0.0
    keep_whisper_right_only: bool = False  # ...only at the word tokens Whisper itself predicts right
    eval_every: int = 100  # steps between dev evaluations (0 = never)
    eval_clips: int = 20  # dev clips per evaluation
    save_every: int = 50  # steps between checkpoints
    seed: int = 0
    gradient_checkpointing: bool = False  # trade compute for activation memory (a large LLM on a GPU)
    # "sdr": who said what, in a registration mode; "asr": single-speaker utterances, words only
    # (stage 1's alignment of the audio projector, paper §3.3)
    data_mode: str = "sdr"
    segment_seconds: tuple[float, float] = (40.0, 50.0)  # recordings longer are cut into such training clips
    # spoken language (Whisper codes): one for all data, or one per dataset in the order given; empty:
    # each dataset's own (what its lhotse manifests say), else English. A multilingual backbone's
    # prefix; Chinese dev clips are scored by characters.
    language: tuple[str, ...] = ()
    channel: Optional[int] = None  # lhotse channel id to train on (multi-channel data); None mixes all channels


# The curriculum (paper §3.3). For the Whisper backbone the pretrained decoder already did stage 1's
# ASR; because a frozen Whisper decoder cannot learn to emit turn markers, its stage 2 also trains the
# decoder (LoRA or layers) — a deviation recorded in the README with the measurement behind it.
STAGES: dict[int, dict] = {
    1: dict(train_encoder=False, train_llm=True, data_mode="asr"),  # ASR alignment
    2: dict(train_encoder=False, train_llm=False),  # simulated SDR, projectors only
    3: dict(train_encoder=True, train_llm=False),  # encoder + projectors
    4: dict(train_encoder=True, train_llm=True),  # everything, LoRA on the LLM
}


def stage_config(base: TrainConfig, stage: int, **overrides) -> TrainConfig:
    return replace(base, **{**STAGES[stage], **overrides})


def set_trainable(model: SpeakerLM, cfg: TrainConfig) -> SpeakerLM:
    """Which parts this stage trains: the new parts always; the audio encoder and the LLM (its LoRA
    adapters when it has them) as the stage says."""
    backbone = model.backbone
    backbone.audio_encoder.requires_grad_(cfg.train_encoder)
    for name, p in backbone.llm.named_parameters():
        own = "lora_" in name if model.config.lora_rank > 0 else not name.startswith(backbone.frozen_llm_prefixes)
        p.requires_grad_(cfg.train_llm and own)
    for p in model.parameters():  # mixed precision: what trains is kept in float32, frozen weights may be bf16
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    if cfg.gradient_checkpointing:  # recompute each layer's activations in the backward pass
        for part in (backbone.llm, backbone.audio_encoder):
            part.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


# ---------------------------------------------------------------- data: clips → cached model inputs

@dataclass
class ClipInputs:
    """One clip's model inputs. The large tensors are either held (`audio`, `frame_speaker`) or read
    from their cache file at each use (`source`): training memory then does not grow with the hours
    of data, only the voiceprints (a few hundred floats per speaker) stay in memory."""

    id: str
    audio: Optional[torch.Tensor]  # (frames, d_enc) encoder states (frozen encoder), or log-mel windows; None: in `source`
    frame_speaker: Optional[torch.Tensor]  # (frames, speaker_dim); None: in `source`
    reference: list[Turn]  # reference turns, speakers by dataset id
    voiceprints: dict[str, torch.Tensor]  # reference speaker → enrolment embedding
    distractors: dict[str, torch.Tensor]  # absent speaker → enrolment embedding
    frames: int = 0  # encoder frames (50 per second); from frame_speaker when held
    language: Optional[str] = None  # spoken language (Whisper code); None = English
    source: Optional[Path] = None  # the safetensors file holding "audio" and "frame_speaker"
    device: Optional[torch.device] = None  # where the tensors go when read (an accelerator)

    def __post_init__(self):
        if not self.frames and self.frame_speaker is not None:
            self.frames = self.frame_speaker.shape[0]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(audio, frame_speaker), on `device`."""
        audio, stream = self.audio, self.frame_speaker
        if audio is None:
            from safetensors import safe_open

            with safe_open(str(self.source), framework="pt") as f:
                audio, stream = f.get_tensor("audio"), f.get_tensor("frame_speaker")
        if self.device is not None:
            audio, stream = audio.to(self.device), stream.to(self.device)
        return audio, stream

    @property
    def cost(self) -> int:
        return self.frames // 2 + sum(len(t.text) for t in self.reference) // 4


def feature_cache(root: Path, dataset: Path, config: SpeakerLMConfig, train_encoder: bool) -> Path:
    """Where a dataset's cached inputs live: one folder per encoder, speaker encoder and input kind, so
    a GE2E run never reads CAM++ streams and a stage-3 run (encoder trained) reads log-mels, not states."""
    kind = "mel" if train_encoder else "states"
    return root / f"{dataset.name}-{config.whisper.replace('/', '_')}-{config.speaker_encoder}-{kind}"


def prepare_inputs(model: SpeakerLM, clips, cache: Path, train_encoder: bool = False,
                   progress: bool = True) -> list[ClipInputs]:
    """Compute (or read from `cache`) each clip's encoder states, frame speaker stream and voiceprints.
    Over-Regist distractors come from other clips' speakers (paper §3.2), so no distractor audio is
    embedded here: `distractor_pool` builds them from the voiceprints, once all datasets are read."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    from tqdm import tqdm

    from speakerlm.cache import atomic_path
    from speakerlm.features import frame_speaker_stream, log_mel_windows, n_frames
    from speakerlm.pretrained.speaker_encoder import load_speaker_encoder
    from speakerlm.voiceprints import mean_voiceprint

    cache.mkdir(parents=True, exist_ok=True)
    encoder = load_speaker_encoder(model.config.speaker_encoder)
    processor = model.backbone.processor
    prints: dict = {}

    def voiceprint(spans) -> torch.Tensor:
        key = tuple((str(s.path), s.start, s.end) for s in spans)
        if key not in prints:
            prints[key] = torch.from_numpy(mean_voiceprint([s.load() for s in spans], model.config.speaker_encoder))
        return prints[key]

    out = []
    for clip in tqdm(clips, desc="model inputs", disable=not progress):
        path = cache / f"{clip.id}.safetensors"
        if not path.exists():
            tensors = _reusable_inputs(cache, clip.id)
            if "audio" not in tensors or "frame_speaker" not in tensors:
                wave = clip.audio.load()
                frames = n_frames(wave)
            if "audio" not in tensors:
                mel = log_mel_windows(processor, wave)
                if train_encoder:  # the encoder runs inside the training step
                    tensors["audio"] = mel.contiguous()
                else:
                    with torch.no_grad():
                        tensors["audio"] = model.encode_audio(mel, frames).contiguous()
            if "frame_speaker" not in tensors:
                tensors["frame_speaker"] = frame_speaker_stream(encoder, wave, frames)
                tensors.update({f"spk/{s}": voiceprint(v) for s, v in clip.enrolment.items()})
            with atomic_path(path) as tmp:
                save_file(tensors, str(tmp))
        with safe_open(str(path), framework="pt") as f:  # the voiceprints now, the rest at each use
            enrolled = {k[4:]: f.get_tensor(k) for k in f.keys() if k.startswith("spk/")}
            frames = f.get_slice("frame_speaker").get_shape()[0]
        out.append(ClipInputs(clip.id, None, None, list(clip.reference), enrolled, {}, frames=frames, source=path,
                              language=clip.language))
    return out


def _reusable_inputs(cache: Path, clip_id: str) -> dict[str, torch.Tensor]:
    """Tensors of this clip already cached for another run kind of the same dataset and Whisper: the
    audio input if the kind (states / mel) matches, the speaker tensors if the speaker encoder does.
    Saves recomputing CAM++ streams when stage 3 starts, or encoder states for a GE2E ablation."""
    from safetensors.torch import load_file

    prefix, speaker_encoder, kind = cache.name.rsplit("-", 2)
    found: dict[str, torch.Tensor] = {}
    for sibling in sorted(cache.parent.glob(f"{prefix}-*-*")):
        file = sibling / f"{clip_id}.safetensors"
        if sibling == cache or not file.exists() or sibling.name.rsplit("-", 2)[0] != prefix:
            continue
        _, other_encoder, other_kind = sibling.name.rsplit("-", 2)
        t = load_file(str(file))
        if other_kind == kind and "audio" not in found:
            found["audio"] = t["audio"]
        if other_encoder == speaker_encoder and "frame_speaker" not in found:
            found.update({k: v for k, v in t.items() if k != "audio"})
    return found


def distractor_pool(clips: list[ClipInputs]) -> list[ClipInputs]:
    """Give every clip, as its distractors, the speakers of all other clips (never its own)."""
    everyone = {s: v for c in clips for s, v in c.voiceprints.items()}
    for c in clips:
        c.distractors = {s: v for s, v in everyone.items() if s not in c.voiceprints}
    return clips


def draw_names(rng: random.Random, n: int) -> list[str]:
    """n distinct names; past the pool's size (the Over-Regist sweep to N_ov = 100) two-part names."""
    if n <= len(NAME_POOL):
        return rng.sample(NAME_POOL, n)
    doubled = NAME_POOL + [f"{a} {b}" for a in NAME_POOL for b in NAME_POOL if a != b]
    return rng.sample(doubled, n)


def make_example(clip: ClipInputs, mode: str, rng: random.Random, n_distractors: int = 0,
                 partial: bool = False) -> Example:
    """One training/eval example in a registration mode ("match", "no", "over"; or "asr", the words
    alone): names drawn from the pool, order shuffled. `partial`: a random non-empty proper subset of
    the speakers is registered (clips of ≥ 2 speakers)."""
    speakers = list(dict.fromkeys(t.speaker for t in clip.reference))
    audio, stream = clip.tensors()
    if mode == "asr":
        return Example(audio, stream, [], [Turn("", " ".join(t.text for t in clip.reference))], task="asr",
                       language=clip.language)
    if mode == "no" or not all(s in clip.voiceprints for s in speakers):
        return Example(audio, stream, [], target_turns(clip.reference), language=clip.language)
    registered = rng.sample(speakers, rng.randint(1, len(speakers) - 1)) if partial and len(speakers) > 1 else speakers
    names = draw_names(rng, len(registered) + (n_distractors if mode == "over" else 0))
    rename = dict(zip(registered, names))
    slots = [(rename[s], clip.voiceprints[s]) for s in registered]
    if mode == "over":
        pool = list(clip.distractors.values())
        for name, emb in zip(names[len(registered):], rng.sample(pool, min(n_distractors, len(pool)))):
            slots.append((name, emb))
    rng.shuffle(slots)
    reference = [Turn(rename.get(t.speaker, t.speaker), t.text, t.start, t.end) for t in clip.reference]
    return Example(audio, stream, slots, target_turns(reference, registered=rename.values()),
                   language=clip.language)


def batches(clips: list[ClipInputs], cfg: TrainConfig, rng: random.Random) -> Iterator[list[int]]:
    """Endless micro-batches of clip indices under the token budget, similar lengths together."""
    while True:
        order = sorted(range(len(clips)), key=lambda i: clips[i].cost + rng.random() * 50)
        groups, current, used = [], [], 0
        for i in order:
            if current and used + clips[i].cost > cfg.token_budget:
                groups.append(current)
                current, used = [], 0
            current.append(i)
            used += clips[i].cost
        groups.append(current)
        rng.shuffle(groups)
        yield from groups


def registration_mode(cfg: TrainConfig, rng: random.Random) -> tuple[str, int]:
    if cfg.data_mode == "asr":
        return "asr", 0
    u = rng.random()
    p_match, p_no, _ = cfg.registration
    if u < p_match:
        return "match", 0
    if u < p_match + p_no:
        return "no", 0
    return "over", rng.randint(1, cfg.max_distractors)


# ---------------------------------------------------------------- schedule, checkpoints, evaluation

def learning_rate(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr_start + (cfg.lr_peak - cfg.lr_start) * step / max(1, cfg.warmup_steps)
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr_start + 0.5 * (cfg.lr_peak - cfg.lr_start) * (1 + math.cos(math.pi * min(1.0, progress)))


def save_checkpoint(out: Path, model: SpeakerLM, optimizer, step: int, rng: random.Random, batch_stream_pos: int) -> None:
    """Write `out/checkpoint` atomically: a new folder, then a rename over the old one."""
    tmp = out / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save(model, tmp)
    torch.save({"optimizer": optimizer.state_dict(), "step": step, "batches_drawn": batch_stream_pos,
                "python_rng": rng.getstate(), "torch_rng": torch.get_rng_state()}, tmp / "trainer.pt")
    final, old = out / "checkpoint", out / "checkpoint.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def evaluate_dev(model: SpeakerLM, clips: list[ClipInputs], seed: int = 0, data_mode: str = "sdr") -> dict:
    """WER and cpWER (No-Regist), saWER (Match-Regist) on dev clips, micro-averaged; in the "asr" data
    mode WER alone. Chinese clips (language zh*) are scored by characters: the error rates are then
    CERs. Dev clips in several scorings get one set of figures per scoring, keys prefixed "en_", "zh_"."""
    from speakerlm.decoding import decode
    from speakerlm.metrics import aggregate, score_clip, scoring_language
    from speakerlm.pretrained.whisper import ENCODER_FRAMES_PER_SECOND

    model.eval()
    rng = random.Random(seed)
    modes = ("asr",) if data_mode == "asr" else ("no", "match")
    scores: dict[str, dict[str, list]] = {}  # scoring → mode → per-clip scores
    for clip in clips:
        scoring = scoring_language(clip.language)
        for mode in modes:
            ex = make_example(clip, mode, rng)
            hyp = decode(model, ex, max_new_tokens=int(40 + 8 * clip.frames / ENCODER_FRAMES_PER_SECOND))
            scores.setdefault(scoring, {}).setdefault(mode, []).append(
                score_clip(ex.turns, hyp, registered=mode == "match", language=scoring))
    model.train()
    out = {}
    for scoring, by_mode in scores.items():
        prefix = f"{scoring}_" if len(scores) > 1 else ""
        if data_mode == "asr":
            figures = {"wer": aggregate(by_mode["asr"])["wer"]}
        else:
            no, match = aggregate(by_mode["no"]), aggregate(by_mode["match"])
            figures = {"wer": no["wer"], "cpwer": no["cpwer"], "sawer": match["sawer"], "match_wer": match["wer"]}
        out.update({prefix + k: v for k, v in figures.items()})
    return out


# ---------------------------------------------------------------- the loop

def train(cfg: TrainConfig, data: Path | list[Path], out: Path, dev: Optional[Path] = None, init: Optional[Path] = None,
          limit: Optional[int] = None, stop_after: Optional[int] = None) -> Path:
    """Run (or resume) one stage in `out` on one or more datasets; `stop_after` ends this sitting after
    that many steps, so a long run can be done in chunks (the next call resumes from the checkpoint).
    Under `accelerate launch` / `torchrun` every process takes its own share of each step's batches."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs
    from tqdm import tqdm

    from speakerlm.plots import plot_training_curve

    # some parameters sit out whole batches (the registration slots in a No-Regist batch), so DDP must
    # not wait for their gradients
    accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    if cfg.keep_whisper > 0 and (cfg.model.backbone != "whisper" or cfg.train_encoder):
        raise UserError("--keep-whisper needs the Whisper backbone with its audio encoder frozen (stages 1-2)")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed + accelerator.process_index)  # registration draws: each process its own
    resume = out / "checkpoint"
    model = set_trainable(_starting_model(cfg, resume, init), cfg)
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2, default=str) + "\n")
    inputs, dev_inputs = _training_inputs(model, cfg, data, dev, out, limit, accelerator)

    whisper = None
    if cfg.keep_whisper > 0:
        whisper = SpeakerLM(cfg.model).backbone.eval().requires_grad_(False)  # the pretrained decoder
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr_start, weight_decay=cfg.weight_decay)
    step, drawn = _restore(resume, optimizer, rng) if resume.exists() else (0, 0)
    model, optimizer = accelerator.prepare(model, optimizer)
    stream = batches(inputs, cfg, random.Random(cfg.seed))  # the same stream on every process
    for _ in range(drawn):  # replay the data order up to where the checkpoint stopped
        next(stream)
    log = (out / "log.jsonl").open("a")
    bar = tqdm(total=cfg.steps, initial=step, desc="train", disable=not accelerator.is_main_process)
    model.train()
    last = cfg.steps if stop_after is None else min(cfg.steps, step + stop_after)
    while step < last:
        started = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(cfg, step)
        total = 0.0
        for _ in range(cfg.accumulation):
            mode, n_ov = registration_mode(cfg, rng)  # one registration mode per batch (paper §3.2)
            shares = [next(stream) for _ in range(accelerator.num_processes)]  # a batch for every process…
            drawn += accelerator.num_processes
            partial = mode != "no" and rng.random() < cfg.partial_registration
            batch = [make_example(inputs[i], mode, rng, n_ov, partial)
                     for i in shares[accelerator.process_index]]  # …this one's
            _, loss = model(batch, whisper, cfg.keep_whisper, cfg.keep_whisper_right_only)
            accelerator.backward(loss / cfg.accumulation)
            total += loss.item() / cfg.accumulation
        accelerator.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{total:.3f}")
        if not accelerator.is_main_process:
            continue
        record = {"step": step, "loss": round(total, 5), "lr": learning_rate(cfg, step - 1),
                  "seconds": round(time.perf_counter() - started, 3), "processes": accelerator.num_processes}
        if accelerator.device.type == "cuda":
            record["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(accelerator.device) / 2**20)
        _log(log, record)
        if step % cfg.save_every == 0 or step == last:
            save_checkpoint(out, accelerator.unwrap_model(model), optimizer, step, rng, drawn)
        if dev_inputs and cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps):
            _log(log, {"step": step, **evaluate_dev(accelerator.unwrap_model(model), dev_inputs,
                                                    data_mode=cfg.data_mode)})
            plot_training_curve(out / "log.jsonl", out / "training_curve.png")
    bar.close()
    if accelerator.is_main_process:
        plot_training_curve(out / "log.jsonl", out / "training_curve.png")
    return out / "checkpoint"


def _starting_model(cfg: TrainConfig, resume: Path, init: Optional[Path]) -> SpeakerLM:
    """This stage's own checkpoint if it was interrupted; else the previous stage's tensors in a model
    of this stage's config; else a fresh model."""
    if resume.exists():
        return load_model(resume)
    model = SpeakerLM(cfg.model)
    if init is not None:
        load_trained(model, trained_state_dict(load_model(init)))
    return model


def training_clips(path: Path, cfg: TrainConfig, language: Optional[str] = None) -> list:
    """A dataset's clips as training sees them: recordings longer than the training segments cut into
    them (references clipped, enrolment from the same speaker elsewhere in the recording); in the
    "asr" data mode, every single-speaker utterance of them. `language` overrides what the data says."""
    from speakerlm.data.datasets import load_dataset, single_speaker_utterances

    clips = load_dataset(path, segments=cfg.segment_seconds, channel=cfg.channel)
    if language is not None:
        clips = [replace(c, language=language) for c in clips]
    if cfg.data_mode == "asr":
        clips = [u for c in clips for u in single_speaker_utterances(c)]
    return clips


def _training_inputs(model: SpeakerLM, cfg: TrainConfig, data, dev: Optional[Path], out: Path,
                     limit: Optional[int], accelerator) -> tuple[list[ClipInputs], list[ClipInputs]]:
    """Every dataset's clips as cached model inputs, with Over-Regist distractors from all of them."""
    paths = [data] if isinstance(data, Path) else list(data)
    languages = dataset_languages(cfg.language, paths)
    everywhere = languages[paths[0]] if len(cfg.language) == 1 else None  # one --language: the dev data's too
    clips = {path: training_clips(path, cfg, languages.get(path, everywhere))[:limit] for path in paths}
    dev_clips = training_clips(dev, cfg, everywhere)[: cfg.eval_clips] if dev else []
    everything = [*dev_clips, *(c for cs in clips.values() for c in cs)]
    check_languages(model, {c.language for c in everything})
    if cfg.model.timestamps and cfg.data_mode == "sdr":
        check_timed(everything)
    # cached encoder states are the packaged encoder's; a model whose encoder an earlier stage trained
    # (and this one freezes) needs its own
    features = out / "features" if model.encoder_trained and not cfg.train_encoder else out.parent / "features"
    cache = lambda path: feature_cache(features, path, cfg.model, cfg.train_encoder)
    inputs = []
    with accelerator.main_process_first():  # the main process fills the feature cache, the others read it
        for path in paths:
            inputs += prepare_inputs(model, clips[path], cache(path), cfg.train_encoder,
                                     progress=accelerator.is_main_process)
    dev_inputs = prepare_inputs(model, dev_clips, cache(dev), cfg.train_encoder, progress=False) if dev else []
    if accelerator.device.type != "cpu":
        # the model builds prompts and labels from fresh tensors: let them, and every clip's inputs as
        # it is read, live on the accelerator
        torch.set_default_device(accelerator.device)
        for c in inputs + dev_inputs:
            c.device = accelerator.device
            c.voiceprints = {k: v.to(accelerator.device) for k, v in c.voiceprints.items()}
    return distractor_pool(inputs), dev_inputs


def check_timed(clips) -> None:
    """A model that writes turn times learns them from timed references within Whisper's 30 s of time
    tokens: refuse, before any step, clips it cannot be taught on."""
    from speakerlm.pretrained.whisper import CHUNK_SECONDS

    for c in clips:
        if any(t.start is None or t.end is None for t in c.reference):
            raise UserError(f"{c.id}: the reference has no times, which --timestamps needs; give timed references")
        if max(t.end for t in c.reference) > CHUNK_SECONDS:
            raise UserError(f"{c.id}: turns run past {CHUNK_SECONDS} s, beyond Whisper's time tokens; "
                            f"cut the data shorter with --segment-seconds 20 {CHUNK_SECONDS}")


def dataset_languages(given: tuple[str, ...], paths: list[Path]) -> dict[Path, str]:
    """--language as {dataset: code}: one code for every dataset, or one per dataset in order;
    datasets missing here keep their clips' own languages."""
    from speakerlm.data.datasets import whisper_language

    if not given:
        return {}
    if len(given) not in (1, len(paths)):
        raise UserError(f"--language {' '.join(given)}: give one language for all data or one per --data folder "
                        f"({len(paths)}), in the same order")
    codes = [whisper_language(g) for g in given]
    return {p: codes[0] if len(codes) == 1 else codes[i] for i, p in enumerate(paths)}


def check_languages(model: SpeakerLM, languages: set) -> None:
    """Refuse, before any step, data in a language the backbone cannot be prompted with (an English-only
    Whisper given Chinese)."""

    if not hasattr(model.backbone, "prefix_ids"):  # a decoder-only LLM reads any language's text
        return
    for language in sorted(languages - {None}):
        try:
            model.backbone.prefix_ids(language)
        except ValueError as e:
            raise UserError(f"training data in {language}: {e}") from None


def _restore(resume: Path, optimizer, rng: random.Random) -> tuple[int, int]:
    """Optimizer, RNG states and data position of an interrupted run: (step, batches drawn)."""
    state = torch.load(resume / "trainer.pt", weights_only=False)  # our own file, written by save_checkpoint
    optimizer.load_state_dict(state["optimizer"])
    rng.setstate(state["python_rng"])
    torch.set_rng_state(state["torch_rng"])
    return state["step"], state["batches_drawn"]


def _log(log, record: dict) -> None:
    log.write(json.dumps(record) + "\n")
    log.flush()


def export(checkpoint: Path, out: Path, half: bool = True, llm_alpha: float = 1.0) -> Path:
    """A training checkpoint → a model folder to ship or pass as `--model` (float16 by default: the
    bundled model is made this way), optionally with its LLM mixed back towards the pretrained one."""
    from speakerlm.checkpoint import mix_llm_with_pretrained

    if not 0.0 <= llm_alpha <= 1.0:
        raise UserError(f"--llm-alpha {llm_alpha}: give a value from 0 (pretrained LLM) to 1 (as trained)")
    model = load_model(checkpoint)
    if llm_alpha != 1.0:
        mix_llm_with_pretrained(model, llm_alpha)
    save(model, out, half=half)
    return Path(out)


def add_train_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="train SpeakerLM on a dataset (one curriculum stage per run)")
    p.add_argument("--data", type=Path, nargs="+", required=True, help="training data (any format `evaluate` reads); several folders are pooled")
    p.add_argument("--dev", type=Path, help="dev data for periodic evaluation")
    p.add_argument("--out", type=Path, required=True, help="run directory (resumes if it holds a checkpoint)")
    p.add_argument("--stage", type=int, default=2, choices=sorted(STAGES))
    p.add_argument("--init", type=Path, help="checkpoint of the previous stage")
    p.add_argument("--backbone", default="whisper", choices=("whisper", "decoder"))
    p.add_argument("--whisper", default="tiny.en", help="audio encoder (and LLM of the whisper backbone): "
                   "tiny.en, base, or a local Hugging Face Whisper directory")
    p.add_argument("--llm", default="smollm2-135m", help="decoder backbone: smollm2-135m or a local Hugging Face "
                   "causal-LM directory (e.g. Qwen2.5-7B-Instruct)")
    p.add_argument("--speaker-encoder", default="campp", choices=("campp", "ge2e"))
    p.add_argument("--no-frame-speaker-stream", action="store_true")
    p.add_argument("--no-slot-presence", action="store_true", help="pointer without the enrolled-voice presence bias")
    p.add_argument("--lora-rank", type=int, default=0)
    p.add_argument("--timestamps", action="store_true",
                   help="the model writes each turn's start and end as Whisper time tokens (Whisper backbone; clips ≤ 30 s)")
    p.add_argument("--partial-registration", type=float, default=0.0,
                   help="chance that a Match/Over batch registers only some of its speakers (the rest anonymous)")
    p.add_argument("--keep-whisper", type=float, default=0.0, metavar="WEIGHT",
                   help="also train towards the pretrained Whisper decoder's next-word distributions on the same "
                        "audio and words, with this weight (keeps recognition on voices unlike the training data)")
    p.add_argument("--keep-whisper-right-only", action="store_true",
                   help="with --keep-whisper: only at the words Whisper itself predicts right")
    p.add_argument("--train-llm", action="store_true", help="also train the LLM in this stage")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--lr", type=float, default=5e-5, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--token-budget", type=int, default=6000)
    p.add_argument("--accumulation", type=int, default=1)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--save-every", type=int, default=50)
    p.add_argument("--limit", type=int, help="use only the first N training clips")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stop-after", type=int, help="end this sitting after N steps (resume later)")
    p.add_argument("--llm-dtype", default="float32", choices=("float32", "bfloat16"),
                   help="the LLM's pretrained weights in this dtype (bfloat16: bf16 autocast, trained tensors float32)")
    p.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations in the backward pass")
    p.add_argument("--language", nargs="+", default=(), metavar="CODE",
                   help="spoken language: one for all --data, or one per --data folder in order (default: what each "
                        "dataset's lhotse manifests say, else en); a multilingual Whisper's prefix; zh dev data is scored by characters")
    p.add_argument("--segment-seconds", type=float, nargs=2, default=(40.0, 50.0), metavar=("SHORTEST", "LONGEST"),
                   help="recordings longer than LONGEST are cut into training segments of this length (default 40 50)")
    p.add_argument("--channel", type=int, help="lhotse data: train on this channel id (e.g. one AMI headset or array "
                   "microphone); default: the mean of all the recording's channels (of its one file, or of all its files)")
    p.set_defaults(func=cmd_train)

    e = subparsers.add_parser("export", help="turn a training checkpoint into a model folder to ship (float16)")
    e.add_argument("checkpoint", type=Path)
    e.add_argument("out", type=Path)
    e.add_argument("--full-precision", action="store_true", help="keep float32 (default: float16, half the size)")
    e.add_argument("--llm-alpha", type=float, default=1.0,
                   help="mix the trained LLM with the pretrained one: 1 = as trained, 0 = pretrained (WiSE-FT)")
    e.set_defaults(func=lambda a: print(export(a.checkpoint, a.out, not a.full_precision, a.llm_alpha)))


def cmd_train(args: argparse.Namespace) -> None:
    base = TrainConfig(model=SpeakerLMConfig(backbone=args.backbone, whisper=args.whisper, llm=args.llm,
                                             speaker_encoder=args.speaker_encoder,
                                             frame_speaker_stream=not args.no_frame_speaker_stream,
                                             slot_presence=not args.no_slot_presence,
                                             lora_rank=args.lora_rank, llm_dtype=args.llm_dtype,
                                             timestamps=args.timestamps))
    overrides = {"train_llm": True} if args.train_llm else {}
    cfg = stage_config(base, args.stage, **overrides, steps=args.steps, lr_peak=args.lr,
                       warmup_steps=args.warmup, token_budget=args.token_budget, accumulation=args.accumulation,
                       eval_every=args.eval_every, save_every=args.save_every, seed=args.seed,
                       partial_registration=args.partial_registration, keep_whisper=args.keep_whisper,
                       keep_whisper_right_only=args.keep_whisper_right_only,
                       gradient_checkpointing=args.gradient_checkpointing, language=tuple(args.language),
                       segment_seconds=tuple(args.segment_seconds), channel=args.channel)
    print(train(cfg, args.data, args.out, args.dev, args.init, args.limit, args.stop_after))
