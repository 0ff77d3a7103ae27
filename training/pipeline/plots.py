"""Pictures of a run, next to its JSON reports: the training curves and the evaluation table.

``training_curves.png``: the loss over steps, then Recall@10 on held-out and on training phrasings over
steps, from the fine-tuning history.
``evaluation.png``: the model against dense and BM25 retrieval as grouped bars, overall and per
held-out query template.

The stages draw them through ``training.io.write_plot``: a drawing that fails is a warning, not a lost run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.eval.evaluate import SYSTEMS
from training.io import atomic_path

logger = logging.getLogger(__name__)

OVERALL_METRICS = ("recall@1", "recall@5", "recall@10", "ndcg@10", "mrr")
SYSTEM_LABELS = {"llm_semantic_id": "model (semantic IDs)", "dense_minilm": "dense (MiniLM)", "bm25": "BM25"}
# History keys of the training loop's recall watch.
CURVE_LABELS = {"heldout_recall@10": "held-out phrasings", "train_recall@10": "training phrasings"}


def _save(figure: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    try:
        with atomic_path(path) as partial:
            figure.savefig(partial, dpi=90)
    finally:
        plt.close(figure)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a training machine
    import matplotlib.pyplot as plt

    return plt


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """The steps where ``key`` was recorded, and its values."""
    rows = [row for row in history if row.get(key) is not None]
    return [int(row["step"]) for row in rows], [float(row[key]) for row in rows]


def _smoothed(steps: Sequence[int], values: Sequence[float]) -> tuple[Sequence[int], np.ndarray]:
    """A trailing mean over 1/50 of the run: per-step losses are too noisy to read a trend from."""
    window = max(1, len(values) // 50)
    return steps[window - 1 :], np.convolve(values, np.ones(window) / window, mode="valid")


def plot_training_curves(history: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Loss over steps, and Recall@10 over steps where the history has it."""
    if not history:
        raise ValueError("the training history is empty: nothing to draw")
    recall_keys = [key for key in CURVE_LABELS if any(row.get(key) is not None for row in history)]
    plt = _pyplot()
    figure, axes = plt.subplots(1 + bool(recall_keys), 1, figsize=(9, 3.4 * (1 + bool(recall_keys))))
    axes = np.atleast_1d(axes)
    steps, losses = _series(history, "loss")
    axes[0].plot(steps, losses, color="tab:blue", alpha=0.3, linewidth=0.8, label="training loss (per step)")
    axes[0].plot(*_smoothed(steps, losses), color="tab:blue", label="training loss (trailing mean)")
    axes[0].set(ylabel="loss", title="training loss")
    for key in recall_keys:
        key_steps, recalls = _series(history, key)
        axes[1].plot(key_steps, recalls, "o-", label=CURVE_LABELS[key])
    if recall_keys:
        axes[1].set(ylabel="Recall@10", ylim=(0, 1.02), title="Recall@10 during training")
    for axis in axes:
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
        axis.legend(loc="best", fontsize=8)
    _save(figure, path)


def _systems(evaluation: Mapping[str, Any]) -> list[str]:
    """The evaluated systems, the model and the two baselines first."""
    present = list(evaluation["systems"])
    return [s for s in SYSTEMS if s in present] + [s for s in present if s not in SYSTEMS]


def _grouped_bars(axis: Any, groups: Sequence[str], values: Mapping[str, Sequence[float]]) -> None:
    """One group of bars per entry of ``groups``, one bar per system, heights labelled."""
    width = 0.8 / max(1, len(values))
    positions = np.arange(len(groups))
    for index, (system, heights) in enumerate(values.items()):
        bars = axis.bar(positions + index * width, heights, width, label=SYSTEM_LABELS.get(system, system))
        axis.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
    axis.set_xticks(positions + width * (len(values) - 1) / 2, groups)
    axis.set_ylim(0, 1.22)  # headroom: the legend sits above the bars, never on them
    axis.set_yticks(np.linspace(0, 1, 6))
    axis.grid(axis="y", alpha=0.3)
    axis.legend(loc="upper center", ncols=len(values), fontsize=8, frameon=False)


def plot_evaluation(evaluation: Mapping[str, Any], path: Path) -> None:
    """The evaluation table as grouped bars: overall metrics, then Recall@10 per held-out template."""
    systems = _systems(evaluation)
    by_template: Mapping[str, Mapping[str, float]] = evaluation.get("recall@10_by_template", {})
    templates = sorted({name for system in systems for name in by_template.get(system, {})})
    plt = _pyplot()
    rows = 1 + bool(templates)
    figure, axes = plt.subplots(rows, 1, figsize=(max(9.0, 1.1 * len(templates)), 3.8 * rows))
    axes = np.atleast_1d(axes)
    overall = {s: [float(evaluation["systems"][s].get(m, np.nan)) for m in OVERALL_METRICS] for s in systems}
    _grouped_bars(axes[0], OVERALL_METRICS, overall)
    title = f"{evaluation.get('queries', '?')} held-out queries"
    seen = evaluation.get("llm_on_training_phrasings")
    if seen:
        title += f"; the model on training phrasings: Recall@10 {seen['recall@10']:.2f}"
    axes[0].set_title(title, fontsize=10)
    if templates:
        per_template = {s: [by_template.get(s, {}).get(t, np.nan) for t in templates] for s in systems}
        _grouped_bars(axes[1], templates, per_template)
        axes[1].set_ylabel("Recall@10")
        axes[1].set_title("Recall@10 per query template", fontsize=10)
        for label in axes[1].get_xticklabels():
            label.set(rotation=30, horizontalalignment="right", fontsize=8)
    _save(figure, path)
