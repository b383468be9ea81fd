"""Decoding: SpeakerLM's output for one clip, by beam search over words (greedy = one beam).

Beams advance in lockstep, one input each per step (a word, the turn marker, or the chosen speaker),
so they share one batched KV cache that is reordered as beams are kept. At each turn marker the
pointer picks the speaker (its argmax: the speaker choice is not searched over); two guards stop
loops: an n-gram repeated within a turn, and a turn that says again what an earlier one said.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from speakerlm.model import Example, SpeakerLM
from speakerlm.stages import timed
from speakerlm.turns import ANONYMOUS, Turn


@dataclass(frozen=True)
class Beam:
    score: float  # summed log-probability of the words and markers chosen
    turns: tuple[tuple[str, tuple[int, ...]], ...]  # (speaker label, token ids) so far
    n_anonymous: int  # anonymous speakers introduced so far (spk k may only be the next one)
    at_marker: bool  # the last input was a turn marker: the pointer chooses next


@torch.inference_mode()
@timed("decoding")
def decode(model: SpeakerLM, ex: Example, max_new_tokens: int = 400, num_beams: int = 1,
           repeat_limit: int = 4) -> list[Turn]:
    """Turns for one clip; the caller caps `max_new_tokens` by the audio's duration. An "asr"
    example gives one turn with an empty speaker: the words, no markers."""
    with model.autocast():
        return _decode(model, ex, max_new_tokens, num_beams, repeat_limit)


def _decode(model: SpeakerLM, ex: Example, max_new_tokens: int, num_beams: int, repeat_limit: int) -> list[Turn]:
    from transformers import DynamicCache

    backbone = model.backbone
    names = [n for n, _ in ex.slots]
    slot_embs = [model.speaker_projector(e) for _, e in ex.slots]
    presence = model.presence_bias(ex)
    prompt, memory = backbone.prompt(model.memory(ex), slot_embs, names, ex.task, ex.language)
    memory = None if memory is None else memory[None]
    cache = DynamicCache()
    hidden, cache = backbone.run(prompt[None], torch.ones(1, len(prompt), dtype=torch.long), memory, cache)
    last = hidden[:, -1]  # shape: (beams, d)
    asr = ex.task == "asr"
    beams = [Beam(0.0, (("", ()),) if asr else (), 0, False)]  # ASR: one open turn, no speaker
    finished: list[tuple[float, tuple]] = []
    suppressed = list(backbone.suppressed) + ([backbone.turn_id] if asr else [])
    for _ in range(min(max_new_tokens, backbone.max_positions - len(prompt) - 2)):
        logprobs = model.logits(last).float()
        logprobs[:, suppressed] = float("-inf")
        logprobs = logprobs.log_softmax(-1)
        candidates = []  # (score, parent beam, new beam or None when finished, next input or finished turns)
        for b, beam in enumerate(beams):
            if beam.at_marker:
                label, cls, n_anon = _choose_speaker(model, last[b : b + 1], slot_embs, names, beam.n_anonymous, presence)
                candidates.append((beam.score, b, Beam(beam.score, beam.turns + ((label, ()),), n_anon, False),
                                   model.speaker_input(cls, slot_embs)))
                continue
            # one more than the beams, so an ending never crowds out all; before the first turn only one
            # way on: whatever comes first opens a turn, so beams do not duplicate
            top = logprobs[b].topk(num_beams + 1 if beam.turns else 1)
            for lp, token in zip(top.values.tolist(), top.indices.tolist()):
                score = beam.score + lp
                if token == backbone.eos_id:
                    candidates.append((score, b, None, beam.turns))
                elif token == backbone.turn_id or not beam.turns:  # text before any marker opens a turn too
                    candidates.append((score, b, Beam(score, beam.turns, beam.n_anonymous, True), model.turn_embedding))
                else:
                    label, ids = beam.turns[-1]
                    grown = beam.turns[:-1] + ((label, ids + (token,)),)
                    if _looping(ids + (token,), repeat_limit):
                        candidates.append((score, b, None, grown))
                    else:
                        candidates.append((score, b, Beam(score, grown, beam.n_anonymous, False),
                                           backbone.embed_tokens(torch.tensor([token]))[0]))
        candidates.sort(key=lambda c: -c[0])
        live = []
        for rank, c in enumerate(candidates):  # as HF: an ending counts only if it ranks among the beams
            if c[2] is None:
                if rank < num_beams:
                    finished.append((c[0], c[3]))
            elif len(live) < num_beams:
                live.append(c)
        if not live or _settled(finished, live, num_beams):
            break
        parents = [c[1] for c in live]
        if parents != list(range(len(beams))):  # one beam going on as itself needs no reordering
            cache.reorder_cache(torch.tensor(parents))
        beams = [c[2] for c in live]
        embeds = torch.stack([c[3] for c in live])[:, None]
        past = cache.get_seq_length()
        mem = None if memory is None else memory.expand(len(beams), -1, -1)
        hidden, cache = backbone.run(embeds, torch.ones(len(beams), past + 1, dtype=torch.long), mem, cache)
        last = hidden[:, -1]
    pool = finished or [(beam.score, beam.turns) for beam in beams]
    _, turns = max(pool, key=lambda f: f[0] / _length(f[1]))  # length-normalised, as HF's default
    out = [Turn(label, backbone.decode_tokens(list(ids)).strip()) for label, ids in turns]
    return until_repeated([t for t in out if t.text])


def _length(turns) -> int:
    """Inputs a hypothesis has consumed: its words plus each turn's marker and speaker."""
    return max(1, sum(len(ids) + 2 for _, ids in turns))


def _settled(finished: list, live: list, num_beams: int) -> bool:
    """Whether search can stop: `num_beams` hypotheses have ended and no live beam, were it to end
    now, would rank among them (HF's early_stopping=False rule). Stopping at the first `num_beams`
    endings instead lets a beam that ended after one turn win over a longer one still being written."""
    if len(finished) < num_beams:
        return False
    if num_beams == 1:  # greedy: the argmax said end
        return True
    kept = sorted((score / _length(turns) for score, turns in finished), reverse=True)[:num_beams]
    return max(c[0] / _length(c[2].turns) for c in live) <= kept[-1]


def _choose_speaker(model: SpeakerLM, hidden: torch.Tensor, slot_embs: list[torch.Tensor], names: list[str],
                    n_anonymous: int, presence) -> tuple[str, int, int]:
    """The pointer's choice at a turn marker: (label, class, anonymous speakers introduced so far)."""
    cls = int(model.pointer_logits(hidden, slot_embs, n_anonymous, presence)[0].argmax())
    if cls < len(names):
        return names[cls], cls, n_anonymous
    return ANONYMOUS.format(cls - len(names)), cls, max(n_anonymous, cls - len(names) + 1)


def until_repeated(turns: list[Turn], min_words: int = 3, overlap: float = 0.8) -> list[Turn]:
    """The turns up to the first one that says again what an earlier turn said (≥ 80 % of its words,
    at least 3): the guard against a loop across turns, which the n-gram guard within a turn cannot see
    (a window's last sentence written four times over)."""
    words = lambda t: [w.strip(",.!?;:\"'").lower() for w in t.text.split()]
    for i, turn in enumerate(turns):
        mine = words(turn)
        if len(mine) >= min_words and any(
                sum(w in set(words(earlier)) for w in mine) >= overlap * len(mine) for earlier in turns[:i]):
            return turns[:i]
    return turns


def _looping(ids: tuple[int, ...], limit: int) -> bool:
    """True when the tail is one n-gram (n ≤ 4) repeated more than `limit` times."""
    for n in range(1, 5):
        if len(ids) >= n * (limit + 1):
            tail = ids[-n * (limit + 1) :]
            if all(tail[i] == tail[i % n] for i in range(len(tail))):
                return True
    return False
