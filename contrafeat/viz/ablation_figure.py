"""Figures of the ablation studies: one panel per metric, settings along x, one line (or bar group) per series."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from contrafeat.evaluation.tables import METRIC_LABELS  # noqa: E402

STUDY_METRICS = ("score_fixed", "found_fixed", "true_edit_cos")
MASK_METRICS = {"loss": "contrast loss (lower is better)", "correct": "share correctly ordered"}


def mean_and_std(value: tuple[float, float] | float | None) -> tuple[float, float]:
    """A table cell as (mean, std): a (mean, std) pair, or a single run's value with std 0."""
    if isinstance(value, tuple):
        return float(value[0]), float(value[1])
    return (float("nan"), 0.0) if value is None else (float(value), 0.0)


def _save(figure: plt.Figure, path: Path) -> Path:
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_study_figure(table: list[dict], path: Path, title: str) -> Path:
    """Score, attributes found and cosine to the true edits against the study's settings, mean +- std per series."""
    settings = list(dict.fromkeys(row["setting"] for row in table))
    series = list(dict.fromkeys(row["series"] for row in table))
    positions = {setting: index for index, setting in enumerate(settings)}
    figure, axes = plt.subplots(1, len(STUDY_METRICS), figsize=(4.0 * len(STUDY_METRICS), 3.4), squeeze=False)
    for axis, metric in zip(axes[0], STUDY_METRICS):
        for offset, name in enumerate(series):
            rows = [row for row in table if row["series"] == name]
            x = np.array([positions[row["setting"]] for row in rows], dtype=float) + (offset - (len(series) - 1) / 2) * 0.08
            means, stds = zip(*(mean_and_std(row.get(metric)) for row in rows))
            axis.errorbar(x, means, yerr=stds, marker="o", capsize=3, label=name)
        axis.set_xticks(range(len(settings)))
        axis.set_xticklabels(settings, rotation=30, ha="right", fontsize=8)
        axis.set_title(METRIC_LABELS[metric], fontsize=9)
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)


def write_mask_figure(table: list[dict], path: Path, title: str) -> Path:
    """Bars of the loss and of the share correctly ordered per setting and similarity; the paper's losses as markers."""
    settings = list(dict.fromkeys(row["setting"] for row in table))
    similarities = list(dict.fromkeys(row["similarity"] for row in table))
    width = 0.8 / len(similarities)
    figure, axes = plt.subplots(1, len(MASK_METRICS), figsize=(4.5 * len(MASK_METRICS), 3.4), squeeze=False)
    for axis, (metric, caption) in zip(axes[0], MASK_METRICS.items()):
        for offset, similarity in enumerate(similarities):
            rows = [next(row for row in table if row["setting"] == setting and row["similarity"] == similarity) for setting in settings]
            x = np.arange(len(settings)) + (offset - (len(similarities) - 1) / 2) * width
            means, stds = zip(*(mean_and_std(row[metric]) for row in rows))
            axis.bar(x, means, width, yerr=stds, capsize=3, label=similarity)
            if metric == "loss":
                axis.scatter(x, [row["paper loss"] for row in rows], marker="x", color="black", zorder=3, label="paper" if offset == 0 else None)
        axis.set_xticks(range(len(settings)))
        axis.set_xticklabels(settings)
        axis.set_title(caption, fontsize=9)
        axis.axhline(0.0, color="grey", linewidth=0.6)
        axis.grid(alpha=0.3, axis="y")
    axes[0][0].legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)
