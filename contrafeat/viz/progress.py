"""Training progress of a run: the loss terms (raw and smoothed), the validation batch, the measures and the angles
moved, as one picture, and a one-line verdict on whether the run has settled."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

SMOOTHING_LINES = 10
"""Log lines in the moving mean drawn over the raw training loss."""
SETTLED_ANGLE = 2.0
"""Degrees: a run whose directions moved less than this on average at its last look has settled."""
SETTLED_SHARE = 0.1
"""A run whose validation contrast moved less than this share of its whole change over its last quarter has settled."""
NOT_LOSS_TERMS = ("step", "time", "images_per_s")


def read_log(path: Path) -> list[dict]:
    """The entries of a .jsonl log (missing file -> empty list)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def moving_mean(values: list[float], window: int = SMOOTHING_LINES) -> np.ndarray:
    """The mean of the last `window` values at each position (fewer at the start)."""
    sums = np.cumsum(np.asarray(values, dtype=np.float64))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    shifted = np.concatenate([np.zeros(window), sums])[: len(values)]
    return (sums - shifted) / counts


def _series(entries: list[dict], key: str) -> tuple[list[int], list[float]]:
    kept = [entry for entry in entries if key in entry]
    return [entry["step"] for entry in kept], [entry[key] for entry in kept]


def _stages(validation: list[dict]) -> list[str]:
    """The stage numbers with logged similarities, in order."""
    keys = {key.rsplit("_", 1)[1] for entry in validation for key in entry if key.startswith("validation_positive_")}
    return sorted(keys, key=int)


def write_progress_curves(log: list[dict], validation: list[dict], path: Path) -> Path | None:
    """Top row: each training loss term per log line (the mean of its steps) with its moving mean; bottom row: the
    validation contrast, each stage's similarity to the positive and the negatives, the measures, the angles moved."""
    terms = [key for key in (log[0] if log else {}) if key not in NOT_LOSS_TERMS]
    panels = _validation_panels(validation)
    if not terms and not panels:
        return None
    columns = max(len(terms), len(panels), 1)
    rows = (1 if terms else 0) + (1 if panels else 0)
    figure, axes = plt.subplots(rows, columns, figsize=(3.3 * columns, 2.7 * rows), squeeze=False)
    for axis in axes.flat:
        axis.set_visible(False)
    if terms:
        steps = [entry["step"] for entry in log]
        for axis, term in zip(axes[0], terms):
            values = [entry[term] for entry in log]
            axis.set_visible(True)
            axis.plot(steps, values, lw=0.6, color="0.7", label="per line")
            axis.plot(steps, moving_mean(values), lw=1.5, color="C0", label=f"mean of {SMOOTHING_LINES}")
            _label(axis, f"training {term}")
        axes[0][0].legend(fontsize=6)
    for axis, draw in zip(axes[rows - 1], panels):
        axis.set_visible(True)
        draw(axis)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _label(axis, title: str) -> None:
    axis.set_title(title, fontsize=9)
    axis.set_xlabel("step", fontsize=8)
    axis.tick_params(labelsize=7)


def _validation_panels(validation: list[dict]) -> list:
    """Drawing functions, one per panel of the validation row, for what the log holds."""
    panels = []
    if any("validation_contrast" in entry for entry in validation):

        def contrast(axis) -> None:
            axis.plot(*_series(validation, "validation_contrast"), marker=".", lw=1.2)
            _label(axis, "validation contrast (fixed batch)")

        panels.append(contrast)
    stages = _stages(validation)
    if stages:

        def similarities(axis) -> None:
            for number in stages:
                colour = f"C{int(number) % 10}"
                axis.plot(*_series(validation, f"validation_positive_{number}"), color=colour, lw=1.2, label=f"stage {number}")
                axis.plot(*_series(validation, f"validation_negative_{number}"), color=colour, lw=1.2, ls="--")
            axis.legend(fontsize=6, title="solid: positive, dashed: negative", title_fontsize=6)
            _label(axis, "validation similarity per stage")

        panels.append(similarities)
    measures = [key for key in ("score", "factor_score", "true_edit_cos") if any(key in entry for entry in validation)]
    if measures:

        def scores(axis) -> None:
            for key in measures:
                axis.plot(*_series(validation, key), marker=".", lw=1.2, label=key.replace("_", " "))
            axis.set_ylim(0, 1.02)
            axis.legend(fontsize=6)
            if any("found" in entry for entry in validation):
                found = axis.twinx()
                found.step(*_series(validation, "found"), where="post", color="0.5", lw=1, ls=":")
                found.set_ylabel("attributes found (dotted)", fontsize=7)
                found.tick_params(labelsize=7)
            _label(axis, "exact-factor measures")

        panels.append(scores)
    if any("angle_mean" in entry for entry in validation):

        def angles(axis) -> None:
            axis.semilogy(*_series(validation, "angle_mean"), marker=".", lw=1.2, label="mean")
            axis.semilogy(*_series(validation, "angle_max"), lw=1, ls="--", label="largest")
            axis.legend(fontsize=6)
            _label(axis, "degrees moved since the last look")

        panels.append(angles)
    return panels


def convergence_verdict(validation: list[dict]) -> str:
    """One sentence: has the run settled (its directions barely move and its validation contrast stopped changing)?"""
    steps, contrast = _series(validation, "validation_contrast")
    _, angles = _series(validation, "angle_mean")
    if len(contrast) < 4 or not angles:
        return "Too few looks at the validation batch to tell whether the run settled."
    quarter = max(1, len(contrast) // 4)
    whole = max(contrast) - min(contrast)
    late = max(contrast[-quarter - 1 :]) - min(contrast[-quarter - 1 :])
    share = late / whole if whole > 0 else 0.0
    settled = angles[-1] < SETTLED_ANGLE and share < SETTLED_SHARE
    state = "settled" if settled else "still moving"
    return (
        f"The run has {state}: at step {steps[-1]} the directions moved {angles[-1]:.2f} degrees on average since the last look "
        f"(settled below {SETTLED_ANGLE:g}), and the validation contrast moved {share:.0%} of its whole range over the last "
        f"{quarter + 1} looks (settled below {SETTLED_SHARE:.0%})."
    )
