"""Decoding: SpeakerLM's output for one clip, by beam search over words (greedy = one beam).

Beams advance in lockstep, one input each per step (a word, the turn marker, or the chosen speaker),
so they share one batched KV cache that is reordered as beams are kept (`_Search` is one clip's search
between steps). Several clips decode as one batch: greedily (`decode_greedy_batch`) or by beam search
(`decode_beam_batch`, every clip's beams rows of one decoder pass). At each turn marker the
pointer picks the speaker (its argmax: the speaker choice is not searched over); two guards stop
loops: an n-gram repeated within a turn, and a turn that says again what an earlier one said.

A model trained with turn times (`SpeakerLMConfig.timestamps`) writes Whisper time tokens around each
turn; they are read into the turns' start and end (`_turns`) and never into their text. A beam
search follows Whisper's timestamp rules (`_time_rule`): a time is scored as the total of all times,
and a turn's end is followed by the next start and the turn marker.

With `temperatures`, a greedy decode is checked as Whisper's own `transcribe` checks each window
(average log-probability ≥ -1, gzip compression ratio ≤ 2.4, no loop cut short) and redone by sampling
at the next temperature when it fails: a window whose answer ends after two words ("Ten.") or loops
gets another try instead of losing its speech.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass, replace
from typing import Optional

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
    lead: tuple[int, ...] = ()  # time tokens written before the first turn (its start)


# Whisper's (openai/whisper `transcribe`, faster-whisper): the thresholds and the temperature schedule
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
LOGPROB_THRESHOLD = -1.0
COMPRESSION_RATIO_THRESHOLD = 2.4


@dataclass(frozen=True)
class Decoded:
    turns: list[Turn]
    avg_logprob: float  # per token written (words, turn markers, the end)
    compression_ratio: float  # of the whole text, as Whisper measures repetition
    looped: bool  # a loop guard cut the answer short

    @property
    def passes(self) -> bool:
        return (self.avg_logprob >= LOGPROB_THRESHOLD and self.compression_ratio <= COMPRESSION_RATIO_THRESHOLD
                and not self.looped)


@torch.inference_mode()
@timed("decoding")
def decode(model: SpeakerLM, ex: Example, max_new_tokens: int = 400, num_beams: int = 1,
           repeat_limit: int = 4, temperatures: tuple[float, ...] = (0.0,),
           fusion: Optional["WordFusion"] = None, greedy: Optional["Decoded"] = None) -> list[Turn]:
    """Turns for one clip; the caller caps `max_new_tokens` by the audio's duration. An "asr"
    example gives one turn with an empty speaker: the words, no markers. Each temperature after the
    first is tried only when the decode before it fails Whisper's checks (`Decoded.passes`); when
    none passes, the most probable answer is kept. Temperature 0 is the beam search (greedy at one
    beam); above 0 one path is sampled, from a generator seeded per clip so runs repeat. `greedy`: the
    temperature-0 answer already decoded (in a greedy batch), tried first instead of decoding it again."""
    tried = []
    if greedy is not None:
        if greedy.passes:
            return greedy.turns
        tried, temperatures = [greedy], tuple(t for t in temperatures if t > 0)
    with model.autocast():
        for temperature in temperatures:
            tried.append(_decode(model, ex, max_new_tokens, num_beams, repeat_limit, temperature, fusion))
            if tried[-1].passes:
                return tried[-1].turns
    return max(tried, key=lambda d: d.avg_logprob).turns


@torch.inference_mode()
@timed("decoding")
def decode_greedy_batch(model: SpeakerLM, examples: list[Example], max_new_tokens: list[int],
                        repeat_limit: int = 4, fusion: Optional[WordFusion] = None,
                        checked: bool = False) -> list:
    """Greedy turns for several clips at once: the same answer as `decode(model, ex, n)` for each, in
    one decoder pass per step for all of them. Why: at one clip a step is many small operations and
    the output layer's 51,864 × d weights read for a single row; rows in lockstep share both (and,
    with `add_int8_output_layer`, read an int8 copy). A backbone without a batched decoder
    (`Backbone.batch`) decodes the clips one by one. With `fusion`, Whisper's decoder runs beside as a
    batch of its own, each row stepping only on the words and times its clip writes. `checked`: each
    clip's `Decoded` (turns and Whisper's checks, for a temperature fallback) instead of its turns."""
    backbone = model.backbone
    if not hasattr(backbone, "batch"):
        with model.autocast():
            decoded = [_decode(model, ex, n, 1, repeat_limit, 0.0, fusion) for ex, n in zip(examples, max_new_tokens)]
        return decoded if checked else [d.turns for d in decoded]
    with model.autocast():
        setups = [_Setup.of(model, ex, n) for ex, n in zip(examples, max_new_tokens)]
        batch = backbone.batch([c.prompt for c in setups], [c.memory for c in setups])
        beside = None if fusion is None else fusion.backbone.batch([fusion.prompt(ex) for ex in examples],
                                                                    [ex.audio for ex in examples])
        beams = [_first_beam(ex) for ex in examples]
        results: list[Optional[Decoded]] = [None] * len(examples)
        rows = list(range(len(examples)))  # the clip of each batch row
        for step in range(max(c.budget for c in setups) + 1):
            mixed = None if beside is None else (fusion, beside.last, [r for r, i in enumerate(rows) if _writing(beams[i])])
            best = _greedy_choice(model, batch.last, [_banned(backbone, examples[i]) for i in rows], mixed)
            going, inputs, heard = [], [], []  # heard: whether Whisper's row takes the row's input
            for r, i in enumerate(rows):
                beam, setup = beams[i], setups[i]
                if step >= setup.budget:  # as long as it may write: the answer so far
                    results[i] = _result(backbone, beam.score, beam, False)
                    continue
                if beam.at_marker:
                    label, cls, n_anon = _choose_speaker(model, batch.last[r : r + 1], setup.slot_embs, setup.names,
                                                         beam.n_anonymous, setup.presence)
                    beams[i] = replace(beam, turns=beam.turns + ((label, ()),), n_anonymous=n_anon, at_marker=False)
                    going.append(r)
                    inputs.append(model.speaker_input(cls, setup.slot_embs))
                    heard.append(False)
                    continue
                score = beam.score + float(best.values[r])
                token = int(best.indices[r])
                grown, ended, looped = _extend(model, beam, score, token, repeat_limit)
                if grown is None:
                    results[i] = _result(backbone, score, ended, looped)
                else:
                    beams[i] = grown
                    going.append(r)
                    inputs.append(_next_input(model, grown, token))
                    heard.append(_words_or_time(backbone, beam, token))
            if not going:
                break
            if len(going) < len(rows):
                batch.keep(going)
                if beside is not None:
                    beside.keep(going)
                rows = [rows[r] for r in going]
            batch.step(torch.stack(inputs))
            if beside is not None:  # the same embeddings: the token embeddings are Whisper's own, frozen
                beside.step(torch.stack(inputs), torch.tensor(heard))
    return results if checked else [d.turns for d in results]


@torch.inference_mode()
@timed("decoding")
def decode_beam_batch(model: SpeakerLM, examples: list[Example], max_new_tokens: list[int], num_beams: int,
                      repeat_limit: int = 4) -> list[Decoded]:
    """A beam search for several clips at once: for each clip the answer `decode(model, ex, n,
    num_beams)` gives (up to the rounding of batched arithmetic), with every clip's beams as rows of
    one decoder pass per step, `num_beams` rows a clip sharing its audio's keys and values
    (`WhisperBatch`). Why: a step of one clip's few beams costs nearly what a step of all clips' beams
    does (many small operations, the output layer's weights read once). A clip with fewer live beams
    fills its rows with copies of its first, which are never read. A backbone without a batched
    decoder searches the clips one by one."""
    backbone = model.backbone
    if not hasattr(backbone, "batch"):
        with model.autocast():
            return [_decode(model, ex, n, num_beams, repeat_limit) for ex, n in zip(examples, max_new_tokens)]
    with model.autocast():
        setups = [_Setup.of(model, ex, n) for ex, n in zip(examples, max_new_tokens)]
        batch = backbone.batch([c.prompt for c in setups], [c.memory for c in setups], beams=num_beams)
        searches = [_Search(model, ex, setup, num_beams, repeat_limit) for ex, setup in zip(examples, setups)]
        banned = [_banned(backbone, ex) for ex in examples]
        results: list[Optional[Decoded]] = [None] * len(examples)
        clips = list(range(len(examples)))  # the clip of each group of `num_beams` rows
        for step in range(max(c.budget for c in setups) + 1):
            logprobs = _logprobs(model, batch.last, [banned[i] for i in clips for _ in range(num_beams)])
            kept, rows, inputs = [], [], []
            for g, i in enumerate(clips):
                search, first = searches[i], g * num_beams
                live = None
                if step < setups[i].budget:  # as long as it may write; then the answer so far
                    mine = slice(first, first + len(search.beams))
                    live = search.advance(logprobs[mine], batch.last[mine])
                if live is None:
                    results[i] = search.result()
                    continue
                kept.append(g)
                fill = num_beams - len(live)
                rows += [first + parent for parent, _, _ in live] + [first + live[0][0]] * fill
                inputs += [x for _, x, _ in live] + [live[0][1]] * fill
            if not kept:
                break
            batch.keep(kept, rows)
            clips = [clips[g] for g in kept]
            batch.step(torch.stack(inputs))
    return results


@dataclass(frozen=True)
class _Setup:
    """What decoding one clip starts from, whichever way it is decoded."""

    names: list[str]  # registered voices, in prompt order
    slot_embs: list[torch.Tensor]  # their projected voiceprints
    presence: Optional[torch.Tensor]  # the pointer's presence bias (model.presence_bias)
    prompt: torch.Tensor  # (P, d)
    memory: Optional[torch.Tensor]  # (T, d_encoder) cross-attention memory, or None
    budget: int  # steps it may take: the caller's cap, within the LLM's positions

    @classmethod
    def of(cls, model: SpeakerLM, ex: Example, max_new_tokens: int) -> "_Setup":
        names = [n for n, _ in ex.slots]
        slot_embs = [model.speaker_projector(e) for _, e in ex.slots]
        prompt, memory = model.backbone.prompt(model.memory(ex), slot_embs, names, ex.task, ex.language)
        budget = min(max_new_tokens, model.backbone.max_positions - len(prompt) - 2)
        return cls(names, slot_embs, model.presence_bias(ex), prompt, memory, budget)


def _first_beam(ex: Example) -> Beam:
    return Beam(0.0, (("", ()),) if ex.task == "asr" else (), 0, False)  # ASR: one open turn, no speaker


def _banned(backbone, ex: Example) -> list[int]:
    """Tokens this clip may not write beyond the backbone's suppressed ones: an "asr" clip writes
    words only (no turn marker, no times)."""
    return [backbone.turn_id, *backbone.time_ids] if ex.task == "asr" else []


SHORTLIST = 64  # tokens per row that greedy decoding computes exactly, from an int8 pass over all


def _greedy_choice(model: SpeakerLM, hidden: torch.Tensor, banned: list[list[int]], mixed: Optional[tuple] = None):
    """(log-probability, token) of each row's most probable next token (see `_logprobs`)."""
    return _logprobs(model, hidden, banned, mixed).max(-1)


def _logprobs(model: SpeakerLM, hidden: torch.Tensor, banned: list[list[int]], mixed: Optional[tuple] = None):
    """(rows, vocab) next-token log-probabilities; `banned` adds tokens per row to the backbone's
    suppressed ones. With an int8 copy of the output layer (`add_int8_output_layer`),
    that copy scores all tokens (a quarter of the memory traffic, which is what a step's output layer
    costs) and only the SHORTLIST best are computed exactly: a greedy choice is the exact argmax, a
    beam's few best tokens the exact ones, unless int8 rounding (at most 0.09 on a logit, random inputs
    to the bundled model's layer) pushes them out of the top 64; the normaliser and the other tokens
    take the int8 values.
    `mixed` = (WordFusion, Whisper's hidden states, rows): those rows' word scores mixed with Whisper's,
    every logit computed exactly (a shortlist of the model's alone could miss Whisper's choice)."""
    backbone = model.backbone
    quick = getattr(backbone, "output_int8", None) if mixed is None else None
    if quick is None:
        logits = model.logits(hidden).float()
    else:
        turn = hidden @ model.turn_embedding  # the turn marker's column, from its trainable embedding
        logits = quick(hidden).float()
        logits[:, backbone.turn_id] = turn
    logits[:, backbone.suppressed] = float("-inf")
    for r, tokens in enumerate(banned):
        if tokens:
            logits[r, tokens] = float("-inf")
    if quick is not None:
        top = logits.topk(SHORTLIST, dim=-1)
        rows = backbone.output_rows(top.indices)  # shape: (rows, SHORTLIST, d)
        exact = (rows @ hidden[:, :, None])[..., 0]
        exact = torch.where(top.indices == backbone.turn_id, turn[:, None], exact)
        exact = torch.where(torch.isinf(top.values), top.values, exact)
        logits.scatter_(1, top.indices, exact)
    logprobs = logits.log_softmax(-1)
    if mixed is not None and mixed[2]:
        fusion, whisper_hidden, rows = mixed
        logprobs[rows] = fusion.mix(logprobs[rows], whisper_hidden[rows])
    return logprobs


class WordFusion:
    """The pretrained Whisper decoder beside the model's, for greedy decoding: it reads the same audio
    (the encoder states, without the speaker stream) and the same words and times, never the turn
    markers or speakers, so it sees the plain timestamped transcript it was trained to write. Each
    word token scores (1 - weight) × the model's log-probability + weight × Whisper's; the end, the
    turn marker and the time tokens keep the model's own. Why: fine-tuning the decoder on simulated
    voices costs recognition on others, while the format (turns, speakers, times) only the model knows."""

    def __init__(self, backbone, weight: float):
        self.backbone, self.weight = backbone, weight

    def prompt(self, ex: Example) -> torch.Tensor:
        b = self.backbone
        return b.embed_tokens(torch.tensor(b.task_prefix(ex.task, ex.language)))

    def mix(self, logprobs: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """The model's log-probabilities (rows, vocab) with Whisper's, from its `hidden` (rows, d), mixed in."""
        whisper = self.backbone.logits(hidden).float()
        whisper[:, self.backbone.suppressed] = float("-inf")
        words = self.backbone.eos_id  # text tokens come first in Whisper's vocabulary
        fused = logprobs.clone()
        fused[:, :words] = (1 - self.weight) * logprobs[:, :words] + self.weight * whisper.log_softmax(-1)[:, :words]
        return fused

    # one clip (`_decode`): Whisper's decoder as a batch of one row
    def start(self, ex: Example) -> None:
        self.row = self.backbone.batch([self.prompt(ex)], [ex.audio])

    def fuse(self, logprobs: torch.Tensor) -> torch.Tensor:
        return self.mix(logprobs, self.row.last)

    def advance(self, token: int) -> None:
        self.row.step(self.backbone.embed_tokens(torch.tensor([token])))


class _Search:
    """One clip's beam search between decoder steps: its live beams (which the decoder holds as rows,
    in this order) and the hypotheses that have ended. Greedy is one beam; with a `temperature` one
    path is sampled instead, from a generator seeded per clip so runs repeat."""

    def __init__(self, model: SpeakerLM, ex: Example, setup: "_Setup", num_beams: int, repeat_limit: int,
                 temperature: float = 0.0):
        self.model, self.setup, self.repeat_limit = model, setup, repeat_limit
        self.sampler = torch.Generator().manual_seed(0) if temperature > 0 else None
        self.num_beams, self.temperature = (1 if self.sampler is not None else num_beams), temperature
        self.beams = [_first_beam(ex)]
        self.finished: list[tuple[float, Beam, bool]] = []  # (score, the ended beam, cut short by the loop guard)

    def advance(self, logprobs: torch.Tensor, last: torch.Tensor) -> Optional[list]:
        """One step from each live beam's next-token log-probabilities (beams, vocab) and hidden state
        (beams, d; the pointer reads it at a turn marker): the beams going on as (parent, next input,
        token or None for a speaker), or None when the search is over."""
        model, num_beams = self.model, self.num_beams
        backbone, setup = model.backbone, self.setup
        if num_beams > 1 and backbone.time_ids:  # a search over beams needs them (greedy: see _time_rule)
            _time_rule(backbone, logprobs, self.beams)
        # (score, parent beam, new beam or None when finished, the speaker's input or the ended beam or
        # None (the token's input, made for kept beams only), looped, token or None for a speaker)
        candidates = []
        for b, beam in enumerate(self.beams):
            if beam.at_marker:
                label, cls, n_anon = _choose_speaker(model, last[b : b + 1], setup.slot_embs, setup.names,
                                                     beam.n_anonymous, setup.presence)
                candidates.append((beam.score, b, replace(beam, turns=beam.turns + ((label, ()),), n_anonymous=n_anon, at_marker=False),
                                   model.speaker_input(cls, setup.slot_embs), False, None))
                continue
            # one more than the beams, so an ending never crowds out all; before the first turn only one
            # way on: whatever comes first opens a turn, so beams do not duplicate
            if self.sampler is None:
                top = logprobs[b].topk(num_beams + 1 if beam.turns else 1)
                choices = zip(top.values.tolist(), top.indices.tolist())
            else:
                token = int(torch.multinomial((logprobs[b] / self.temperature).softmax(-1), 1, generator=self.sampler))
                choices = [(float(logprobs[b, token]), token)]
            for lp, token in choices:
                grown, ended, looped = _extend(model, beam, beam.score + lp, token, self.repeat_limit)
                candidates.append((beam.score + lp, b, grown, ended, looped, token))
        candidates.sort(key=lambda c: -c[0])
        live = []
        for rank, c in enumerate(candidates):  # as HF: an ending counts only if it ranks among the beams
            if c[2] is None:
                if rank < num_beams:
                    self.finished.append((c[0], c[3], c[4]))
            elif len(live) < num_beams:
                live.append(c)
        if not live or _settled(self.finished, live, num_beams):
            return None
        self.beams = [c[2] for c in live]
        return [(c[1], _next_input(model, c[2], c[5]) if c[3] is None else c[3], c[5]) for c in live]

    def result(self) -> Decoded:
        pool = self.finished or [(beam.score, beam, False) for beam in self.beams]
        return _result(self.model.backbone, *max(pool, key=lambda f: f[0] / _length(f[1].turns)))  # length-normalised, as HF


def _decode(model: SpeakerLM, ex: Example, max_new_tokens: int, num_beams: int, repeat_limit: int,
            temperature: float = 0.0, fusion: Optional[WordFusion] = None) -> Decoded:
    from transformers import DynamicCache

    backbone = model.backbone
    setup = _Setup.of(model, ex, max_new_tokens)
    search = _Search(model, ex, setup, num_beams, repeat_limit, temperature)
    memory = None if setup.memory is None else setup.memory[None]
    cache = DynamicCache()
    hidden, cache = backbone.run(setup.prompt[None], torch.ones(1, len(setup.prompt), dtype=torch.long), memory, cache)
    last = hidden[:, -1]  # shape: (beams, d)
    suppressed = list(backbone.suppressed) + _banned(backbone, ex)
    if fusion is not None:
        assert search.num_beams == 1, "word fusion decodes greedily"
        fusion.start(ex)
    for _ in range(setup.budget):
        logprobs = model.logits(last).float()
        logprobs[:, suppressed] = float("-inf")
        logprobs = logprobs.log_softmax(-1)
        before = search.beams[0]
        if fusion is not None and _writing(before):
            logprobs = fusion.fuse(logprobs)
        live = search.advance(logprobs, last)
        if live is None:
            break
        token = live[0][2]
        if fusion is not None and token is not None and _words_or_time(backbone, before, token):
            fusion.advance(token)
        parents = [parent for parent, _, _ in live]
        if parents != list(range(len(last))):  # beams going on as themselves need no reordering
            cache.reorder_cache(torch.tensor(parents))
        embeds = torch.stack([x for _, x, _ in live])[:, None]
        past = cache.get_seq_length()
        mem = None if memory is None else memory.expand(len(live), -1, -1)
        hidden, cache = backbone.run(embeds, torch.ones(len(live), past + 1, dtype=torch.long), mem, cache)
        last = hidden[:, -1]
    return search.result()


def _time_rule(backbone, logprobs: torch.Tensor, beams: list[Beam]) -> None:
    """Times in a beam search, in place (Whisper's `ApplyTimestampRules` in spirit, in the model's turn
    format `words <|end|><|start|> [TURN]`): every time token's probability is given to the most
    probable one, so a beam is scored for writing *a* time where the model expects one, not for which
    of the ~1,500 it is; after a turn's end time only the next start (or the end of the answer) may
    follow, after that start only the turn marker. Why: scored token by token, a turn change costs two
    uncertain times besides its marker, and beams run turns together to save it (on `real`, "Ten of
    clubs" and the next speaker's sentence became one turn). Greedy decoding goes without: there the
    rule changed little and not for the better on `dev` (docs/results.md)."""
    times = _time_tensor(backbone.time_ids)
    for b, beam in enumerate(beams):
        if beam.at_marker:
            continue
        ids = beam.turns[-1][1] if beam.turns else ()
        if ids and ids[-1] in backbone.time_ids:
            if len(ids) >= 2 and ids[-2] in backbone.time_ids:  # the next turn's start: its marker next
                allowed = torch.tensor([backbone.turn_id, backbone.eos_id])
            else:  # a turn's end: the next start next
                allowed = torch.cat([times, torch.tensor([backbone.eos_id])])
            keep = logprobs[b, allowed].clone()
            logprobs[b] = float("-inf")
            logprobs[b, allowed] = keep
        row = logprobs[b, times]
        total, best = row.logsumexp(-1), row.argmax()
        logprobs[b, times] = float("-inf")
        logprobs[b, times[best]] = total


@functools.lru_cache(maxsize=4)
def _time_tensor(time_ids: range) -> torch.Tensor:
    return torch.tensor(time_ids)


def _extend(model: SpeakerLM, beam: Beam, score: float, token: int, repeat_limit: int):
    """A beam after writing `token`: (the grown beam, None, False), or (None, the ended beam, whether
    a loop guard ended it). The grown beam's next input is `_next_input`'s, made only for the beams
    kept."""
    backbone = model.backbone
    if token == backbone.eos_id:
        return None, beam, False
    if token in backbone.time_ids and not beam.turns:  # the first turn's start
        return replace(beam, score=score, lead=beam.lead + (token,)), None, False
    if token == backbone.turn_id or not beam.turns:  # text before any marker opens a turn too
        return replace(beam, score=score, at_marker=True), None, False
    label, ids = beam.turns[-1]
    grown = beam.turns[:-1] + ((label, ids + (token,)),)
    if _looping(ids + (token,), repeat_limit):
        return None, replace(beam, turns=grown), True
    return replace(beam, score=score, turns=grown), None, False


def _next_input(model: SpeakerLM, grown: Beam, token: int) -> torch.Tensor:
    """The decoder's next input after `_extend` grew a beam by `token`: the turn marker's embedding
    where it opened a turn (text before any marker opens one too), else the token's."""
    return model.turn_embedding if grown.at_marker else model.backbone.embed_tokens(torch.tensor([token]))[0]


def _writing(beam: Beam) -> bool:
    """Whether the beam's next token is one of a turn's words or times (not its speaker, nor the
    first turn's marker): the tokens word fusion mixes."""
    return not beam.at_marker and bool(beam.turns)


def _words_or_time(backbone, beam: Beam, token: int) -> bool:
    """Whether `token`, written after `beam`, is a word or time of the transcript (not a marker)."""
    if token in (backbone.eos_id, backbone.turn_id):
        return False
    return bool(beam.turns) or token in backbone.time_ids


def _result(backbone, score: float, best: Beam, looped: bool) -> Decoded:
    turns = best.turns
    out = [t for t in _turns(backbone, best.lead, turns) if t.text]
    kept = until_repeated(out)
    written = sum(len(ids) + 1 for _, ids in turns) + 1  # words, a marker per turn, the end
    return Decoded(kept, score / written, _compression_ratio(" ".join(t.text for t in out)),
                   looped or len(kept) < len(out))


def _turns(backbone, lead: tuple[int, ...], turns) -> list[Turn]:
    """The written turns; where the model writes times (`<|start|> [TURN] words <|end|><|start|> [TURN]
    …`), each turn's start is the last time written before its marker and its end the first written
    after its words, in seconds from the clip's start (an end before the start is taken as the start)."""
    times = backbone.time_ids
    if not times:
        return [Turn(label, backbone.decode_tokens(list(ids)).strip()) for label, ids in turns]
    out, before = [], [t for t in lead if t in times]
    for label, ids in turns:
        words = [t for t in ids if t not in times]
        first_word = next((i for i, t in enumerate(ids) if t not in times), len(ids))
        after = [t for t in ids[first_word:] if t in times]  # the end, then the next turn's start
        start = backbone.token_time(before[-1]) if before else None
        end = backbone.token_time(after[0]) if after else None
        if start is not None and end is not None:
            end = max(end, start)
        out.append(Turn(label, backbone.decode_tokens(words).strip(), start, end))
        before = after[1:] or after
    return out


def _compression_ratio(text: str) -> float:
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


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
    kept = sorted((score / _length(beam.turns) for score, beam, _ in finished), reverse=True)[:num_beams]
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
