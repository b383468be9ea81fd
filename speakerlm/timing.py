"""Turn times for a model that writes none (the paper's SpeakerLM emits text only).

A window's turns are laid over its detected speech in order. Without more information each turn gets
a share of the speech time in proportion to its length in characters. When the recording has been
diarized (the SpeakerLM engine's speaker discovery), the boundaries are moved to where the voices
change: a dynamic programme picks, for each turn, a contiguous stretch of speech that agrees as much as
possible with the diarization label of that turn's speaker, with a pull back towards the proportional
estimate (so turns of voices without a cluster keep sensible lengths). Written by hand: no library
aligns untimed speaker turns to a diarization.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from speakerlm.diarize import FRAMES_PER_SECOND
from speakerlm.turns import Turn
from speakerlm.vad import Region

GRID_PER_SECOND = 10  # alignment grid: points per second of speech
PULL_PER_SECOND = 2.0  # cost of moving a boundary 1 s from its proportional place, in grid frames of agreement


def time_turns(turns: list[Turn], regions: list[Region], frames: Optional[np.ndarray] = None,
               clusters: Optional[dict[str, int]] = None, frame_rate: int = FRAMES_PER_SECOND) -> list[Turn]:
    """Untimed turns of one window → the same turns with start/end inside `regions` (recording time).
    `frames`: per-frame diarization labels of the whole recording at `frame_rate` (-1 = no speech);
    `clusters`: turn speaker label → diarization label."""
    if not regions or not turns:
        return turns
    speech = np.cumsum([0.0] + [r.duration for r in regions])  # speech seconds before each region

    def at(speech_seconds: float) -> float:  # speech time → recording time
        i = int(np.clip(np.searchsorted(speech, speech_seconds, side="right") - 1, 0, len(regions) - 1))
        return float(regions[i].start + speech_seconds - speech[i])

    total, chars = float(speech[-1]), np.array([max(1, len(t.text)) for t in turns], float)
    bounds = total * np.concatenate([[0.0], np.cumsum(chars)]) / chars.sum()  # proportional estimate
    if frames is not None and clusters and any(t.speaker in clusters for t in turns):
        bounds = _align(turns, regions, frames, clusters, frame_rate, bounds, total)
    return [Turn(t.speaker, t.text, round(at(a), 3), round(at(max(a, b - 1e-6)), 3))
            for t, a, b in zip(turns, bounds[:-1], bounds[1:])]


def _align(turns, regions, frames, clusters, frame_rate, prior, total) -> np.ndarray:
    """Boundaries in speech seconds (n + 1) that maximise diarization agreement minus the pull."""
    labels = np.concatenate([frames[int(r.start * frame_rate) : int(np.ceil(r.end * frame_rate))] for r in regions])
    m = max(1, int(round(total * GRID_PER_SECOND)))
    grid = labels[np.minimum((np.arange(m) + 0.5) / GRID_PER_SECOND * frame_rate, len(labels) - 1).astype(int)] if len(labels) else np.full(m, -1)
    n = len(turns)
    if n > m:  # more turns than grid frames: nothing to gain
        return prior
    positions = np.arange(m + 1)
    score = np.where(positions == 0, 0.0, -np.inf)  # best score with turn i ending at boundary b
    back = np.zeros((n, m + 1), dtype=int)
    for i, turn in enumerate(turns):
        ones = (grid == clusters[turn.speaker]) if turn.speaker in clusters else np.zeros(m, bool)
        agree = np.concatenate([[0.0], np.cumsum(ones)])  # agree[b] - agree[a]: matching frames in [a, b)
        # best start a < b for each end b: running max of score[a] - agree[a], shifted by one
        cand = score - agree
        run_max = np.maximum.accumulate(cand)
        run_arg = _running_argmax(cand)
        new = np.full(m + 1, -np.inf)
        new[1:] = agree[1:] + run_max[:-1]
        back[i, 1:] = run_arg[:-1]
        if i < n - 1:  # a turn of a voice without a cluster has nothing to agree with: hold it in place
            known = turn.speaker in clusters and turns[i + 1].speaker in clusters
            new -= (1 if known else 10) * PULL_PER_SECOND * np.abs(positions / GRID_PER_SECOND - prior[i + 1])
        score = new
    b, out = m, [float(total)]
    for i in range(n - 1, 0, -1):
        b = back[i, b]
        out.append(b / GRID_PER_SECOND)
    out.append(0.0)
    return np.array(out[::-1])


def _running_argmax(x: np.ndarray) -> np.ndarray:
    """Index of the running maximum of x (the latest index on ties)."""
    idx = np.arange(len(x))
    best = np.where(x == np.maximum.accumulate(x), idx, 0)
    return np.maximum.accumulate(best)
