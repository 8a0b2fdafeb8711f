"""Heat-maps of the row-normalised attribute-change matrices (fixed and calibrated strengths) of a run."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    peak = matrix.max(axis=1, keepdims=True)
    return np.divide(matrix, peak, out=np.zeros_like(matrix), where=peak > 0)


def write_attribute_matrices(panels: dict[str, np.ndarray], attributes: list[str], path: Path, title: str) -> Path:
    """One panel per matrix [K, A] (rows = directions, columns = attributes), each row scaled to max 1."""
    count = len(panels)
    rows, columns = next(iter(panels.values())).shape
    figure, axes = plt.subplots(1, count, figsize=(1.5 + count * (0.55 * columns + 1.0), 1.4 + 0.32 * rows), squeeze=False)
    for axis, (caption, matrix) in zip(axes[0], panels.items()):
        shown = normalise_rows(np.asarray(matrix, dtype=np.float64))
        axis.imshow(shown, cmap="magma", vmin=0.0, vmax=1.0, aspect="auto")
        axis.set_xticks(range(columns))
        axis.set_xticklabels(attributes, rotation=45, ha="right", fontsize=7)
        axis.set_yticks(range(rows))
        axis.set_ylabel("direction")
        axis.set_title(caption, fontsize=9)
        for row in range(rows):
            for column in range(columns):
                value = shown[row, column]
                axis.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=6, color="black" if value > 0.6 else "white")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
