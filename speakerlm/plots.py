"""Pictures: who spoke when, training curves, evaluation results, speaker counts. Each writes one PNG atomically."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from speakerlm.cache import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no screen here
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, dpi: int = 100) -> Path:
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    _pyplot().close(fig)
    return Path(path)


def plot_timeline(turns: Sequence, path: Path, title: str = "") -> Path:
    """Who speaks when: one row and colour per speaker; backchannels (simulator turns that have the
    flag) hatched. `turns`: anything with speaker, start and end (Turn, SupervisionSegment)."""
    plt = _pyplot()
    speakers = list(dict.fromkeys(t.speaker for t in turns))
    colours = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(12, 0.6 * len(speakers) + 1.2))
    for t in turns:
        row = speakers.index(t.speaker)
        ax.broken_barh([(t.start, t.end - t.start)], (row - 0.35, 0.7), facecolors=colours(row % 10),
                       edgecolor="black", linewidth=0.5, hatch="//" if getattr(t, "backchannel", False) else None)
    ax.set_yticks(range(len(speakers)), speakers)
    ax.invert_yaxis()
    ax.set_xlabel("time (s)")
    ax.set_title(title or f"{len(turns)} turns")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_training_curve(log_path: Path, png: Path) -> Path:
    """Training loss per step and, if the log has them, dev WER / cpWER / saWER."""
    plt = _pyplot()
    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    dev = [r for r in rows if "cpwer" in r]
    fig, axes = plt.subplots(1, 2 if dev else 1, figsize=(10 if dev else 5, 3.5), squeeze=False)
    axes = axes[0]
    if train:
        axes[0].plot(*zip(*train), lw=0.8)
    axes[0].set(xlabel="step", ylabel="training loss", yscale="log", title="loss")
    for key in ("wer", "cpwer", "sawer"):
        pts = [(r["step"], r[key]) for r in dev if r.get(key) is not None]
        if pts:
            axes[1].plot(*zip(*pts), marker="o", label=key)
    if dev:
        axes[1].set(xlabel="step", ylabel="%", title="dev")
        axes[1].legend()
    fig.tight_layout()
    return _save(fig, png)


def plot_error_rates(bars: Sequence[tuple[str, dict[str, Optional[float]]]], path: Path) -> Path:
    """Grouped bars: one group per (label, {metric name: %}), one bar per metric."""
    plt = _pyplot()
    metrics = list(dict.fromkeys(m for _, values in bars for m in values))
    width = 0.8 / max(1, len(metrics))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(bars)), 4))
    for i, metric in enumerate(metrics):
        points = [(k + (i - (len(metrics) - 1) / 2) * width, values.get(metric)) for k, (_, values) in enumerate(bars)]
        points = [(x, v) for x, v in points if v is not None and math.isfinite(v)]
        ax.bar([x for x, _ in points], [v for _, v in points], width, label=metric)
    ax.set_xticks(range(len(bars)), [label for label, _ in bars], fontsize=8)
    ax.set_ylabel("error rate (%)")
    ax.legend()
    ax.set_title("Speaker-attributed transcription")
    return _save(fig, path, dpi=120)


def plot_sweep(sweep: dict[str, dict[int, Optional[float]]], path: Path) -> Path:
    """saWER against N_ov per system, as the paper's Fig. 5."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for system, row in sweep.items():
        points = [(n, v) for n, v in row.items() if v is not None and math.isfinite(v)]
        ax.plot([n for n, _ in points], [v for _, v in points], marker="o", label=system)
    ax.set_xlabel("distractors enrolled, N_ov (0 = Match-Regist)")
    ax.set_ylabel("saWER (%)")
    ax.set_title("Over-Regist sweep")
    ax.legend()
    return _save(fig, path, dpi=120)


def plot_speaker_counts(counts: dict[str, list[tuple[int, int]]], path: Path) -> Path:
    """Estimated against true speaker count, one marker per recording and variant; the band is ±1."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    top = max(max(t, f) for pairs in counts.values() for t, f in pairs) + 1
    ax.fill_between([0, top], [-1, top - 1], [1, top + 1], color="0.9", label="within ±1")
    ax.plot([0, top], [0, top], color="0.6", lw=1)
    rng = np.random.default_rng(0)
    for (name, pairs), marker in zip(counts.items(), "ox^s"):
        t, f = np.array(pairs).T
        ax.scatter(t + rng.uniform(-0.15, 0.15, len(t)), f, marker=marker, alpha=0.7, label=name[:60])
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="true speakers", ylabel="speakers found",
           title="Speaker count per recording")
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)
