"""Where attribution fails, for each engine side by side (speakerlm/attribution.py says how words are sorted).

    .venv/bin/python benchmarks/attribution.py data/ood data/real data/dev [--limit N] [--join-bounds]
        [--systems cascade,speakerlm] [--no-pointer] [--out runs/attribution]

Per data set and engine (No-Regist, no hints, as `speakerlm evaluate` runs them): WER, cpWER, the share
of correctly recognised words given to the wrong speaker, that share by reference context (overlap,
short turn, turn edge, mid turn), the split into segmentation and speaker-choice errors, and mixed
turns. Two bounds beside them:
- the voiceprint oracle: every reference turn labelled with the enrolled voice (the clip's own
  speakers, Match-Regist) nearest to its own audio, by the CAM++ encoder every engine uses; its saWER
  is pure attribution (the words are the reference's);
- the bundled model's pointer, teacher-forced: reference turns cut into windows of ≤ 20 s (the
  engine's window), the true words and earlier speakers given, the share of turns whose speaker the
  pointer picks right, No- and Match-Regist, by the window's speaker count;
- how far a join of words to speakers can go (`--join-bounds`): the cascade with the true speaker
  count, and the cascade's own words (faster-whisper, as it calls it) given the reference's speakers,
  by time (each word the speaker of the reference turn it overlaps most: the best any join by time
  can do with these words and times) and by text (the speaker who said the same word within 1.5 s,
  else by time: what knowing who said each word would give).
Engine runs resume from --out's logs (the same format as benchmarks/recognition.py's).
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Optional

import numpy as np

from speakerlm.attribution import CONTEXTS, AttributionCounts, attribution_counts
from speakerlm.audio import SAMPLE_RATE
from speakerlm.data.datasets import load_dataset
from speakerlm.evaluate import evaluate
from speakerlm.metrics import sawer
from speakerlm.turns import Turn

WINDOW_S = 20.0


def voiceprint_oracle(clips, encoder) -> dict:
    """Each reference turn named by the nearest enrolled voiceprint to its own audio."""
    from speakerlm.voiceprints import mean_voiceprint, unit_rows

    errors, words, right, turns = 0, 0, 0, 0
    for clip in clips:
        if not clip.enrolment:
            continue
        names = list(clip.enrolment)
        prints = unit_rows(np.stack([mean_voiceprint([s.load() for s in clip.enrolment[n]], embed=encoder.embed)
                                     for n in names]))
        wave = clip.audio.load()
        labelled = []
        for t in clip.reference:
            piece = wave[int(t.start * SAMPLE_RATE) : int(t.end * SAMPLE_RATE)]
            if piece.size < SAMPLE_RATE // 2:
                piece = np.pad(piece, (0, SAMPLE_RATE // 2 - piece.size))
            guess = names[int(np.argmax(prints @ encoder.embed(piece)))]
            labelled.append(Turn(guess, t.text, t.start, t.end))
            right, turns = right + (guess == t.speaker), turns + 1
        counts = sawer(clip.reference, labelled)
        errors, words = errors + counts.errors, words + counts.reference_length
    return {"turns right": 100.0 * right / turns if turns else None,
            "saWER": 100.0 * errors / words if words else None}


def reference_windows(reference: list[Turn], seconds: float = WINDOW_S) -> list[list[Turn]]:
    """Consecutive reference turns grouped so that each group spans ≤ `seconds` (a longer turn alone)."""
    groups: list[list[Turn]] = []
    for t in sorted(reference, key=lambda t: t.start):
        if groups and max(u.end for u in groups[-1] + [t]) - groups[-1][0].start <= seconds:
            groups[-1].append(t)
        else:
            groups.append([t])
    return groups


def pointer_accuracy(clips, model, encoder, seed: int = 0) -> dict:
    """Teacher-forced pointer accuracy (% of turns) by mode and by the window's speaker count."""
    import torch

    from speakerlm.features import frame_speaker_stream, log_mel_windows, n_frames
    from speakerlm.train import ClipInputs, make_example
    from speakerlm.voiceprints import mean_voiceprint

    rng = random.Random(seed)
    tally: dict[tuple[str, int], list[int]] = {}
    model.eval()
    for clip in clips:
        wave = clip.audio.load()
        prints = {n: torch.from_numpy(mean_voiceprint([s.load() for s in spans], embed=encoder.embed))
                  for n, spans in clip.enrolment.items()}
        for group in reference_windows(list(clip.reference)):
            a, b = max(0.0, group[0].start - 0.2), max(t.end for t in group) + 0.2
            piece = wave[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)]
            frames = n_frames(piece)
            with torch.inference_mode():
                audio = model.encode_audio(log_mel_windows(model.backbone.processor, piece), frames)
            stream = frame_speaker_stream(encoder, piece, frames)
            turns = [Turn(t.speaker, t.text, t.start - a, t.end - a) for t in group]
            speakers = {t.speaker for t in turns}
            inputs = ClipInputs(clip.id, audio, stream, turns, {s: prints[s] for s in speakers if s in prints}, {})
            for mode in ("no", "match"):
                chosen, target = model.teacher_forced_speakers(make_example(inputs, mode, rng))
                row = tally.setdefault((mode, len(speakers)), [0, 0])
                row[0] += sum(c == t for c, t in zip(chosen, target))
                row[1] += len(target)
    out = {}
    for (mode, n), (right, total) in sorted(tally.items()):
        out.setdefault(mode, {})[n] = {"turns": total, "right": 100.0 * right / total}
    return out


def engine_rows(name: str, clips, systems: list[str], log: Path) -> list[dict]:
    rows = []
    for run in evaluate(systems, clips, "no", log=log, progress=True):
        counts, by_n = AttributionCounts(), {}
        for c in run.clips:
            clip_counts = attribution_counts(next(x.reference for x in clips if x.id == c.clip), c.hypothesis)
            counts = counts + clip_counts
            by_n[c.num_speakers] = by_n.get(c.num_speakers, AttributionCounts()) + clip_counts
        agg = run.aggregate()
        rows.append({"data": name, "system": run.system.name, "wer": agg["wer"], "cpwer": agg["cpwer"],
                     **counts.summary(),
                     "misattributed by speakers": {n: v.summary()["misattributed"] for n, v in sorted(by_n.items())}})
    return rows


def _normal(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum() or ch == "'")


def _by_time(start: float, end: float, reference: list[Turn]) -> str:
    """The speaker of the reference turn overlapping [start, end] most (else the nearest one)."""
    def overlap(t: Turn) -> float:  # negative: how far apart they are
        shared = min(end, t.end) - max(start, t.start)
        return shared if shared > 0 else -min(abs(start - t.end), abs(t.start - end))

    return max(reference, key=overlap).speaker


def _by_text(word, reference: list[Turn], reach_s: float = 1.5) -> Optional[str]:
    """The speaker who said the same word nearest in time (within `reach_s`), reference words
    spread evenly over their turn; None when nobody did."""
    centre, target, best = (word.start + word.end) / 2, _normal(word.text), None
    for t in reference:
        said = t.text.split()
        for i, w in enumerate(said):
            at = t.start + (i + 0.5) * (t.end - t.start) / len(said)
            if _normal(w) == target and abs(at - centre) <= reach_s and (best is None or abs(at - centre) < best[0]):
                best = (abs(at - centre), t.speaker)
    return best[1] if best else None


def join_bounds(name: str, clips, log: Path) -> list[dict]:
    """The cascade with the true speaker count; the cascade's words with the reference's speakers."""
    from speakerlm.metrics import aggregate, score_clip
    from speakerlm.pretrained.fast_whisper import FastWhisper
    from speakerlm.word_speakers import words_to_turns

    rows = []
    for run in evaluate(["cascade"], clips, "no", num_speakers_oracle=True, log=log, progress=True):
        agg = run.aggregate()
        rows.append({"data": name, "join": "the cascade, true speaker count", "wer": agg["wer"], "cpwer": agg["cpwer"]})
    asr, scores = FastWhisper("tiny.en"), {"by time": [], "by text": []}
    for clip in clips:
        words = [w for s in asr.transcribe(clip.audio.load()) for w in s.words]
        reference = list(clip.reference)
        timed = [_by_time(w.start, w.end, reference) for w in words]
        told = [_by_text(w, reference) or t for w, t in zip(words, timed)]
        for key, speakers in (("by time", timed), ("by text", told)):
            scores[key].append(score_clip(reference, words_to_turns(words, speakers, 2.0), registered=False))
    for key, clip_scores in scores.items():
        agg = aggregate(clip_scores)
        rows.append({"data": name, "join": f"the cascade's words, reference speakers {key}", "wer": agg["wer"],
                     "cpwer": agg["cpwer"]})
    return rows


def markdown(rows: list[dict], oracles: dict, pointers: dict, bounds: list[dict] = ()) -> str:
    f = lambda v: "–" if v is None or v != v else f"{v:.1f}"  # noqa: E731
    head = ["data", "system", "WER", "cpWER", "misattributed"] + [f"{c} (share / mis.)" for c in CONTEXTS] + [
        "segmentation", "speaker choice", "mixed turns", "mis. by speakers"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for r in rows:
        cells = [r["data"], r["system"], f(r["wer"]), f(r["cpwer"]), f(r["misattributed"])]
        cells += [f"{f(r[c + ' share'])} / {f(r[c + ' misattributed'])}" for c in CONTEXTS]
        cells += [f(r["segmentation"]), f(r["speaker choice"]), f(r["mixed turns"]),
                  ", ".join(f"{n}: {f(v)}" for n, v in r["misattributed by speakers"].items())]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| data | voiceprint oracle: turns right | its saWER | pointer (teacher-forced) No-Regist | Match-Regist |",
              "|---|---:|---:|---|---|"]
    for name, o in oracles.items():
        p = pointers.get(name, {})
        fmt = lambda m: ", ".join(f"{n} spk: {f(v['right'])} ({v['turns']})" for n, v in p.get(m, {}).items()) or "–"  # noqa: E731
        lines.append(f"| {name} | {f(o['turns right'])} | {f(o['saWER'])} | {fmt('no')} | {fmt('match')} |")
    if bounds:
        lines += ["", "| data | join | WER | cpWER | Δcp |", "|---|---|---:|---:|---:|"]
        lines += [f"| {b['data']} | {b['join']} | {f(b['wer'])} | {f(b['cpwer'])} | {f(b['cpwer'] - b['wer'])} |"
                  for b in bounds]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("data", nargs="+", type=Path)
    p.add_argument("--systems", default="cascade,speakerlm")
    p.add_argument("--limit", type=int)
    p.add_argument("--no-pointer", action="store_true", help="skip the model's teacher-forced pointer")
    p.add_argument("--join-bounds", action="store_true", help="also the word-join bounds (one more ASR pass)")
    p.add_argument("--out", type=Path, default=Path("runs/attribution"))
    args = p.parse_args()
    from speakerlm.pretrained.speaker_encoder import load_speaker_encoder

    args.out.mkdir(parents=True, exist_ok=True)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    encoder, model = load_speaker_encoder("campp"), None
    rows, oracles, pointers, bounds = [], {}, {}, []
    for data in args.data:
        clips = load_dataset(data)[: args.limit] if args.limit else load_dataset(data)
        rows += engine_rows(data.name, clips, systems, args.out / f"{data.name}-engines.jsonl")
        oracles[data.name] = voiceprint_oracle(clips, encoder)
        if args.join_bounds:
            bounds += join_bounds(data.name, clips, args.out / f"{data.name}-oracle-count.jsonl")
        if not args.no_pointer:
            if model is None:
                from speakerlm.checkpoint import bundled_model, load_model

                model = load_model(bundled_model())
            pointers[data.name] = pointer_accuracy(clips, model, encoder)
    table = markdown(rows, oracles, pointers, bounds)
    (args.out / "attribution.md").write_text(table)
    (args.out / "attribution.json").write_text(json.dumps({"engines": rows, "oracle": oracles, "pointer": pointers,
                                                                 "join bounds": bounds}, indent=1))
    print(table)


if __name__ == "__main__":
    main()
